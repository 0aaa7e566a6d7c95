"""Model folders: a fitted fusion model saved as `manifest.json` plus files in JSON or a
library's own safe format (XGBoost JSON, safetensors / weights-only torch state) — never a
pickle, so that a model folder is safe to open. Loading opens only files inside the folder.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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
                "state": model.save_state(folder)}
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
    model.fitted_ = True
    return model


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
