"""Model folders: a fitted fusion model saved as `manifest.json` plus files in JSON or a
library's own safe format (XGBoost JSON, safetensors / weights-only torch state) — never a
pickle, so that a model folder is safe to open. Loading opens only files inside the folder.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from features.files import atomic_write_text
from fusion.models.base import MODELS, FusionModel

MANIFEST = "manifest.json"
FORMAT = 2


def save_model(model: FusionModel, folder: str | Path,
               columns: Mapping[str, Sequence[str]] | None = None, target: Mapping[str, Any] | None = None,
               inputs: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None) -> Path:
    """Write a fitted model (any registered fusion model) to `folder`.

    Args:
        columns: each modality's feature columns, in the model's order.
        target: what the model predicts (label, class names, kind).
        inputs: how each modality is computed from raw data (the feature sets' extractors,
            segmentation, pooling and normalisation), so that the model can be run on new
            recordings (`features.emotion`).
        extra: further JSON entries of the manifest (what the model was trained on, for reports).
    """
    model.check_fitted()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"format": FORMAT, "model": MODELS.name_of(model), "params": model.params.model_dump(),
                "task": model.task, "n_classes": model.n_classes, "modalities": list(model.modalities),
                "columns": {m: list(c) for m, c in (columns or {}).items()},
                "target": dict(target or {}), "inputs": dict(inputs or {}), **dict(extra or {}),
                "decision": getattr(model, "decision_", None), "state": model.save_state(folder)}
    atomic_write_text(json.dumps(manifest, indent=1), folder / MANIFEST)
    return folder


def load_model(folder: str | Path) -> FusionModel:
    """Rebuild a model written by `save_model`; its predictions equal the saved model's.

    Raises:
        FileNotFoundError: when the folder has no manifest.
        ValueError: for a manifest that is not one, or names files outside the folder.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    model = MODELS.get(manifest["model"])(**manifest["params"])
    model.task, model.n_classes = manifest["task"], manifest["n_classes"]
    model.modalities = list(manifest["modalities"])
    model.columns = manifest.get("columns", {})
    model.load_state(manifest["state"], folder)
    model.decision_ = _decision(manifest.get("decision"), model, folder)
    model.fitted_ = True
    return model


def _decision(entry: Any, model: FusionModel, folder: Path) -> dict[str, Any] | None:
    """The manifest's decision rule (`FusionModel.fit_decision`), checked: one finite offset per class."""
    if entry is None:
        return None
    from fusion.evaluation.decision import RULES

    offsets = entry.get("offsets") if isinstance(entry, dict) else None
    if (not isinstance(offsets, list) or len(offsets) != model.n_classes
            or not all(isinstance(v, int | float) and np.isfinite(v) for v in offsets)
            or entry.get("rule") not in RULES[1:]):
        raise ValueError(f"{Path(folder) / MANIFEST}: decision must name a rule ({', '.join(RULES[1:])}) and give "
                         f"one finite offset per class ({model.n_classes}), got {entry!r}")
    return dict(entry)


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no saved model here (expected the {MANIFEST} that "
                                "fusion.persist.save_model writes)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a valid model manifest ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "model" not in manifest:
        raise ValueError(f"{path}: not a model manifest of format {FORMAT}")
    return manifest


def model_file(folder: Path, name: Any) -> Path:
    """The file `name` of a saved model, refused unless it lies inside `folder`.

    A manifest is data: an entry such as `../../x` or an absolute path must not make loading
    open a file elsewhere.

    Raises:
        ValueError: naming the entry when it points outside the model folder.
    """
    if not isinstance(name, str) or not name or Path(name).is_absolute():
        raise ValueError(f"{Path(folder) / MANIFEST}: model file entry {name!r} must be a file name "
                         "inside the model folder")
    root = Path(folder).resolve()
    path = (root / name).resolve()
    if path.parent != root:
        raise ValueError(f"{Path(folder) / MANIFEST}: model file entry {name!r} points outside the "
                         f"model folder {root}")
    return path


class SavedRecogniser:
    """A classifier saved by `fusion train`, as the `emotion` extractor reads it
    (`features.emotion.Recogniser`): class names, input columns and recipes from its manifest,
    the model loaded when first used (and again in each worker process it is sent to)."""

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        target = manifest.get("target") or {}
        if manifest.get("task") != "classification" or not target.get("classes"):
            raise ValueError(f"{folder} is not a classifier saved with its class names (retrain it with this "
                             "version of `fusion train`)")
        self.folder = folder
        self.classes = [str(c) for c in target["classes"]]
        # the modalities the model reads (an `augment` model's copies are training inputs only)
        used = set(manifest.get("modalities") or manifest["columns"])
        self.columns = {m: c for m, c in manifest["columns"].items() if m in used}
        self.inputs = {m: r for m, r in (manifest.get("inputs") or {}).items() if m in used}
        self._model: FusionModel | None = None

    @property
    def model(self) -> FusionModel:
        if self._model is None:
            self._model = load_model(self.folder)
        return self._model

    def predict_proba(self, blocks):
        return self.model.predict_proba(self._dialogues(blocks))

    def embedding(self, blocks):
        return self.model.embedding(self._dialogues(blocks))

    def _dialogues(self, blocks):
        """Rows of a `dialogue` modality (one utterance with its turn columns) as dialogues of one
        turn at position 0; a row without any feature value is a missing sample."""
        from features.dialogue import TURN_COLUMNS
        from fusion.data.sequences import SequenceBlock

        out = dict(blocks)
        for m, recipes in self.inputs.items():
            if m in out and any(r.get("dialogue") for r in recipes) and not isinstance(out[m], SequenceBlock):
                values = np.array(out[m], dtype=np.float64)[:, None, :].copy()
                empty = np.isnan(values[:, 0, :values.shape[2] - len(TURN_COLUMNS)]).all(axis=1)
                values[empty] = np.nan
                n = len(values)
                out[m] = SequenceBlock(values, np.zeros((n, 1)), np.ones((n, 1)), np.ones(n, dtype=np.int64),
                                       tuple(self.columns[m]))
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None}  # reloaded in the worker that needs it


def open_recogniser(folder: str | Path) -> SavedRecogniser | None:
    """The `features.emotion` provider (entry point `affect_fusion.recognisers`): a model folder
    written by `save_model`, or None for a folder that has no manifest of this format.

    Raises:
        ValueError: a manifest of this format that does not describe a classifier.
    """
    folder = Path(folder)
    if not (folder / MANIFEST).exists():
        return None
    return SavedRecogniser(folder, read_manifest(folder))
