"""A trained emotion recogniser as a feature extractor: class posteriors (and the penultimate
embedding) of each segment, written into the feature store like any other feature set.

`fusion train` with `evaluation.save_model` saves, next to the fitted model, how each of its
inputs was computed: the feature set's extractor and parameters, its segmentation, pooling,
column selection and normalisation. This extractor recomputes exactly those inputs for every
segment of a new sample (a participant's turns, windows, or the whole recording), pools them
as in training, and runs the model:

    features:
      speech_emotion:
        extractor: {name: emotion, params: {model: models/ravdess_emotion/emotion}}
        segmentation: {level: turn, speaker: Participant}

Columns: `p_<class>` (the model's calibrated posteriors) and, for a model with a hidden layer,
`emb_<i>` (the input of its output layer). The parameter hash includes a digest of every file
of the model folder, so a retrained model never reuses another model's rows.

Limits, each a clear error when the extractor is built: the model must have been trained on
whole-sample features (utterances, clips: `segmentation.level: session`), pooled (not frame
sequences); dialogue-context inputs (the mean of earlier utterances) cannot be recomputed from
one sample. A model over `dialogue` inputs (`dialogue-context`) gets each segment as a dialogue
of one turn (its own speaker columns, no neighbours): it then predicts from the utterance alone,
as for a dialogue of one utterance in training. Speaker
normalisation is applied over the sample's own segments (one speaker per sample, e.g. the
participant's turns) and needs at least the model's `speaker_min_rows` of them.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from pydantic import Field

from features.base import BatchResult, ExtractionError, Extractor, Params, Sample, Segment, feature_frame
from features.registry import EXTRACTORS, build_extractor, exception_text


class EmotionParams(Params):
    model: str
    embedding: bool = True
    max_segments: int = Field(4096, ge=1)


def folder_digest(folder: Path) -> str:
    """A digest of every file under `folder` (names and bytes)."""
    h = hashlib.blake2b(digest_size=16)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


class RecipeError(ValueError):
    """A saved model's inputs cannot be recomputed by the emotion extractor."""


@runtime_checkable
class Recogniser(Protocol):
    """What the emotion extractor needs of a trained recogniser, whatever trained it: its class
    names, each modality's input columns and how they were computed (`inputs`: per modality, a
    list of {features, extractor: {name, params}, segmentation, pool, columns, normalise,
    speaker_min_rows, context}), and predictions on such inputs. A package provides recognisers
    through the entry-point group `RECOGNISERS` (affect-fusion's `fusion train` model folders:
    `fusion.persist.open_recogniser`); `features` itself imports no trainer."""

    classes: list[str]
    columns: dict[str, list[str]]
    inputs: dict[str, list[dict[str, Any]]]

    def predict_proba(self, blocks: dict[str, np.ndarray]) -> np.ndarray: ...

    def embedding(self, blocks: dict[str, np.ndarray]) -> np.ndarray | None: ...


RECOGNISERS = "affect_fusion.recognisers"


def open_recogniser(folder: Path) -> Recogniser:
    """The recogniser saved in `folder`, opened by the first installed provider that reads it
    (each returns None for a folder that is not its format).

    Raises:
        ValueError: no provider reads the folder, naming it.
    """
    from importlib.metadata import entry_points

    if not Path(folder).is_dir():
        raise ValueError(f"{folder}: no such model folder")
    providers = sorted(entry_points(group=RECOGNISERS), key=lambda ep: ep.name)
    for ep in providers:
        recogniser = ep.load()(folder)
        if recogniser is not None:
            return recogniser
    names = ", ".join(ep.name for ep in providers) or "none installed"
    raise ValueError(f"{folder}: no saved recogniser here (no installed provider reads this folder: {names}; "
                     "`fusion train` writes one with evaluation.save_model: true)")


@EXTRACTORS.register("emotion")
class EmotionExtractor(Extractor):
    """Class posteriors and embedding of a model saved by `fusion train`, per segment.

    Args:
        model: the model folder (the one holding `manifest.json`).
        embedding: also write the model's penultimate representation, when it has one.
        max_segments: segments predicted at once.
    """

    name = "emotion"
    version = "1"
    modality = "emotion"
    Params = EmotionParams

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.folder = Path(self.params.model)
        try:
            self.model = open_recogniser(self.folder)
        except ValueError as err:  # no such folder, no provider reads it, not a classifier
            raise ValueError(f"emotion extractor: {err}") from None
        except Exception as err:  # noqa: BLE001 - a damaged manifest: named, with what was wrong
            raise self._damaged(err) from None
        try:
            self._read(self.model)
        except RecipeError:
            raise
        except Exception as err:  # noqa: BLE001 - a damaged or edited folder: named, with what was wrong
            raise self._damaged(err) from None

    def _damaged(self, err: BaseException) -> RecipeError:
        return RecipeError(f"emotion extractor: model folder {self.folder} cannot be used as a recogniser "
                           f"({exception_text(err)}); its manifest.json and files must be as `fusion train` "
                           "saved them (train and save it again)")

    def _read(self, model: Recogniser) -> None:
        if not model.inputs:
            raise RecipeError(f"emotion extractor: {self.folder} does not say how its inputs were computed "
                              "(retrain it with this version of `fusion train`)")
        self.classes = [str(c) for c in model.classes]
        self.columns: dict[str, list[str]] = dict(model.columns)
        self.recipes = self._check(model.inputs)
        self.digest = folder_digest(self.folder)
        self.inputs = {(m, i): build_extractor(r["extractor"]["name"], r["extractor"].get("params", {}))
                       for m, rs in self.recipes.items() for i, r in enumerate(rs)}
        self.media = tuple(dict.fromkeys(role for e in self.inputs.values() for role in e.media))
        # batch as the inputs do (the sentence encoder: large chunks, encoded together)
        self.chunk_size = max((e.chunk_size for e in self.inputs.values() if e.chunk_size), default=None)
        self._width: int | None = None
        missing = [m for m in self.recipes if not isinstance(self.columns.get(m), list)]
        if missing:
            raise KeyError(f"columns of modality {missing[0]!r}")
        # a first prediction now: a damaged model is named when the extractor is built
        emb = model.embedding({m: np.zeros((1, len(cols))) for m, cols in self.columns.items()})
        if self.params.embedding and emb is not None:
            self._width = int(emb.shape[1])

    def _check(self, recipes: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
        for modality, inputs in recipes.items():
            for r in inputs:
                where = f"emotion extractor: model {self.folder}, input {r['features']!r} of {modality!r}"
                if r["extractor"]["name"] == "emotion":
                    raise RecipeError(f"{where}: is itself an emotion recogniser's output")
                if r["segmentation"].get("level", "session") != "session":
                    raise RecipeError(f"{where}: was computed per {r['segmentation']['level']} and pooled per "
                                      "sample; only models trained on whole-sample features (utterances, clips) "
                                      "can be applied to new segments")
                if r.get("context"):
                    raise RecipeError(f"{where}: uses the dialogue context, which one sample's segments "
                                      "cannot provide")
                if r.get("pool") == "sequence":
                    raise RecipeError(f"{where}: is a sequence of frames; the emotion extractor applies "
                                      "models on pooled inputs (functionals, embeddings) only")
        return recipes

    # --- the extractor interface ------------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        names = [f"p_{c}" for c in self.classes]
        if self._width:
            names += [f"emb_{i:03d}" for i in range(self._width)]
        return names

    def get_params(self) -> dict[str, Any]:
        return {"model_digest": self.digest, "embedding": self.params.embedding, "classes": self.classes}

    def library_versions(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for e in self.inputs.values():
            out.update(e.library_versions())
        return out

    def source_files(self, sample: Sample) -> dict[str, Path]:
        files: dict[str, Path] = {}
        for e in self.inputs.values():
            files.update(e.source_files(sample))  # raises MissingMediaError naming what is missing
        return files

    def source_payload(self, sample: Sample) -> str | None:
        parts = [e.source_payload(sample) for e in self.inputs.values()]
        parts = [p for p in parts if p is not None]
        return "\n".join(parts) if parts else None

    def process_sample(self, sample: Sample, segments: Sequence[Segment] | None) -> pd.DataFrame:
        return self.sample_from_batch(sample, segments)

    def process_samples(self, items) -> BatchResult:
        """Each input extractor runs once over the whole batch (batched where it batches, as the
        sentence encoder does); the model then predicts every kept segment of the batch at once."""
        result = BatchResult(None, {}, {})
        outputs = {key: ext.process_samples(items) for key, ext in self.inputs.items()}
        rows: list[tuple[str, pd.Index, dict[str, np.ndarray]]] = []
        for sample, segments in items:
            sid = sample.sample_id
            warnings = result.warnings.setdefault(sid, [])
            failed = next((b.errors[sid] for b in outputs.values() if sid in b.errors), None)
            if failed is not None:
                result.errors[sid] = failed
                continue
            try:
                for b in outputs.values():
                    warnings += b.warnings.get(sid, [])
                keep, X = self._blocks(sample, segments, {k: b.frame.loc[[sid]] for k, b in outputs.items()},
                                       warnings)
            except Exception as err:  # noqa: BLE001 - returned in the sample's place
                result.errors[sid] = err
                continue
            rows.append((sid, keep, X))
        if not rows:
            return result
        X = {m: np.concatenate([x[m] for _, _, x in rows]) for m in self.columns}
        n = len(next(iter(X.values())))
        proba, emb = [], []
        step = self.params.max_segments
        for a in range(0, n, step):
            part = {m: v[a:a + step] for m, v in X.items()}
            proba.append(self.model.predict_proba(part))
            if self._width:
                emb.append(self.model.embedding(part))
        values = np.concatenate(proba)
        if self._width:
            values = np.hstack([values, np.concatenate(emb)])
        frames, at = [], 0
        for sid, keep, _ in rows:
            frames.append(feature_frame(sid, [(float(s), float(e)) for s, e in keep], values[at:at + len(keep)],
                                        self.feature_names))
            at += len(keep)
        result.frame = pd.concat(frames) if len(frames) > 1 else frames[0]
        return result

    def _blocks(self, sample: Sample, segments: Sequence[Segment] | None, frames: dict[tuple[str, int], pd.DataFrame],
                warnings: list[str]) -> tuple[pd.Index, dict[str, np.ndarray]]:
        """One sample's model input: each modality's recomputed rows per segment, columns as in
        training, on the segments every modality has."""
        blocks, keep = {}, None
        for m, recipes in self.recipes.items():
            parts = [self._input(sample, segments, frames[(m, i)], m, i, r) for i, r in enumerate(recipes)]
            block = pd.concat(parts, axis=1, join="outer")
            missing = [c for c in self.columns[m] if c not in block.columns]
            if missing:
                raise ExtractionError(f"sample {sample.sample_id!r}: the recomputed {m!r} input lacks "
                                      f"{len(missing)} of the model's columns, e.g. {missing[:3]}")
            blocks[m] = block[self.columns[m]]
            keep = blocks[m].index if keep is None else keep.intersection(blocks[m].index)
        if keep is None or not len(keep):
            raise ExtractionError(f"sample {sample.sample_id!r}: no segment has every input of the model")
        keep = keep.sort_values()
        X = {m: b.loc[keep].to_numpy(dtype=np.float64) for m, b in blocks.items()}
        informative = np.column_stack([~np.isnan(x).all(axis=1) for x in X.values()]).any(axis=1)
        if not informative.all():  # e.g. turns shorter than an analysis frame: no prediction at all
            warnings.append(f"sample {sample.sample_id!r}: {int((~informative).sum())} segment(s) without any "
                            "input value (too short to analyse) get no emotion row")
            if not informative.any():
                raise ExtractionError(f"sample {sample.sample_id!r}: no segment has any input value")
            keep, X = keep[informative], {m: x[informative] for m, x in X.items()}
        return keep, X

    def _input(self, sample: Sample, segments: Sequence[Segment] | None, frame: pd.DataFrame, modality: str,
               i: int, recipe: dict[str, Any]) -> pd.DataFrame:
        """One input's rows per segment, indexed by (start, end), columns named as in training."""
        extractor = self.inputs[(modality, i)]
        if segments is not None:
            frame = extractor.segments_as_samples(frame)
        frame = frame.droplevel("sample_id")
        if recipe.get("columns"):
            keep = [c for c in frame.columns if any(fnmatch.fnmatchcase(c, p) for p in recipe["columns"])]
            frame = frame[keep]
        if recipe.get("normalise") == "speaker":
            n = len(frame)
            if n < recipe.get("speaker_min_rows", 5):
                raise ExtractionError(f"sample {sample.sample_id!r}: the model normalises {recipe['features']!r} "
                                      f"per speaker, from at least {recipe.get('speaker_min_rows', 5)} segments; "
                                      f"this sample has {n}")
            mean, sd = frame.mean(), frame.std(ddof=0)
            frame = (frame - mean) / sd.where(sd > 0, 1.0)
        stats = recipe["pool"]
        parts = []
        for stat in stats:
            # one row per segment: its spread is zero, as for a one-row training sample
            pooled = frame * 0.0 if stat == "std" else frame.copy()
            if len(stats) > 1:
                pooled = pooled.add_suffix(f"__{stat}")
            parts.append(pooled.add_prefix(f"{recipe['features']}/"))
        out = pd.concat(parts, axis=1)
        if recipe.get("dialogue"):  # one utterance alone: a dialogue of one turn
            from features.dialogue import TURN_COLUMNS, single_turn

            out = pd.concat([out, pd.DataFrame(np.tile(single_turn(), (len(out), 1)), index=out.index,
                                               columns=list(TURN_COLUMNS))], axis=1)
        out.index = pd.MultiIndex.from_arrays([out.index.get_level_values("start").astype(float),
                                               out.index.get_level_values("end").astype(float)])
        return out
