"""Training on augmented audio without ever scoring on it: a wrapper model.

    modalities:
      egemaps: [{features: egemaps, normalise: speaker}]
      egemaps_speed09: [{features: egemaps_speed09, normalise: speaker}]   # the same set on perturbed audio
    model:
      name: augment
      params:
        model: {name: late-fusion, params: {...}}
        copies:
          - {egemaps: egemaps_speed09}
          - {egemaps: egemaps_noise20}

Each entry of `copies` is one augmented copy of every training sample: the modalities it names
are replaced by their features on perturbed audio (feature sets of their own, extracted with the
audio extractors' `augment` parameter), the others kept. The copies are added to the rows the
wrapped model is fitted on, with the sample's labels, and to the training part of every inner
fold that trains on the sample — never to an inner validation part, so early stopping,
calibration and selection see clean audio only. Prediction uses the clean modalities only: the
copy modalities are never read for a sample that is scored, so no test sample's prediction comes
from augmented audio. A copy whose replaced modalities are all missing for a sample adds no row.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from features.base import Params
from fusion.data.sequences import SequenceBlock, available
from fusion.models.base import MODELS, Blocks, FusionModel, Inner
from fusion.models.pooled import ModelRef
from fusion.models.targets import Targets


class AugmentParams(Params):
    model: ModelRef = Field(default_factory=lambda: ModelRef(name="late-fusion"))
    copies: list[dict[str, str]] = Field(default_factory=list)
    use_copies: bool = True

    @model_validator(mode="after")
    def _copies_are_other_modalities(self) -> AugmentParams:
        for i, copy in enumerate(self.copies):
            if not copy:
                raise ValueError(f"copies[{i}] names no modality")
            for clean, aug in copy.items():
                if clean == aug:
                    raise ValueError(f"copies[{i}]: modality {clean!r} cannot be its own copy")
        clean = {m for c in self.copies for m in c}
        both = clean & {a for c in self.copies for a in c.values()}
        if both:
            raise ValueError(f"modality(ies) {sorted(both)} are both clean and a copy")
        return self


@MODELS.register("augment")
class AugmentedTraining(FusionModel):
    """The wrapped `model` fitted on the samples and their augmented copies, scored on clean inputs.

    Args:
        model: the fusion model ({name, params}).
        copies: one mapping per augmented copy: clean modality → the modality holding its
            features on perturbed audio.
        use_copies: False fits the wrapped model on the clean rows only (the copy modalities
            still left out): the same model without augmentation, e.g. as a `select` candidate.
    """

    Params = AugmentParams
    needs_inner = True

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.inner_model = self.params.model.build()
        if "sequence" in type(self.inner_model).inputs and "pooled" not in type(self.inner_model).inputs:
            raise ValueError("augment: the wrapped model must take pooled inputs")
        self.tag = f"augmented-{self.inner_model.tag}"
        self.heads = self.inner_model.heads
        self.inputs = frozenset({"pooled"})
        self.copy_modalities = {a for c in self.params.copies for a in c.values()}

    def _clean(self, blocks: Blocks) -> dict[str, Any]:
        return {m: b for m, b in blocks.items() if m not in self.copy_modalities}

    def augmented_rows(self, blocks: Blocks, n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The clean blocks with every copy's rows appended below them, and for every row the
        index of the sample it comes from (the clean rows first, in order)."""
        missing = sorted({m for c in self.params.copies for pair in c.items() for m in pair} - set(blocks))
        if missing:
            raise ValueError(f"augment: modality(ies) {missing} named in `copies` are not among the configured "
                             f"modalities {list(blocks)}")
        clean = self._clean(blocks)
        for m, b in blocks.items():
            if isinstance(b, SequenceBlock):
                raise ValueError(f"augment: modality {m!r} is a sequence; augmented copies are for pooled inputs")
        parts = {m: [np.asarray(b)] for m, b in clean.items()}
        source = [np.arange(n)]
        for copy in self.params.copies if self.params.use_copies else []:
            has = np.zeros(n, dtype=bool)
            for aug in copy.values():
                has |= available(np.asarray(blocks[aug]))
            rows = np.flatnonzero(has)
            for m in clean:
                values = np.asarray(blocks[copy[m]] if m in copy else clean[m])
                if values.shape[1:] != np.asarray(clean[m]).shape[1:]:
                    raise ValueError(f"augment: copy {copy[m]!r} of {m!r} has {values.shape[1]} features, the clean "
                                     f"modality {np.asarray(clean[m]).shape[1]}; a copy is the same feature set on "
                                     "perturbed audio")
                parts[m].append(values[rows])
            source.append(rows)
        return {m: np.concatenate(p) for m, p in parts.items()}, np.concatenate(source)

    def _fit(self, blocks: Blocks, targets: Targets, *, inner: Inner, seed: int, val=None) -> AugmentedTraining:
        _, task, n_classes = targets.main
        n = len(targets)
        self.all_modalities_ = list(blocks)
        stacked, source = self.augmented_rows(blocks, n)
        self._start_fit(stacked, task, n_classes)
        copy_rows = np.arange(n, len(source))

        def widen(train: np.ndarray) -> np.ndarray:
            return np.concatenate([train, copy_rows[np.isin(source[n:], train)]])

        wide = [(widen(np.asarray(a)), np.asarray(b)) for a, b in inner]
        self.n_copies_ = int(len(source) - n)
        self.inner_model.fit(stacked, targets.rows(source), inner=wide, seed=seed)
        self.drops_modalities = self.inner_model.drops_modalities
        self.fitted_ = True
        return self

    def _keep(self, modalities: Sequence[str] | None) -> list[str] | None:
        return None if modalities is None else [m for m in modalities if m not in self.copy_modalities]

    def predict_proba(self, blocks: Blocks, modalities: Sequence[str] | None = None) -> np.ndarray:
        self.check_fitted()
        return self.inner_model.predict_proba(self._clean(blocks), self._keep(modalities))

    def predict_score(self, blocks: Blocks, modalities: Sequence[str] | None = None) -> np.ndarray:
        self.check_fitted()
        return self.inner_model.predict_score(self._clean(blocks), self._keep(modalities))

    def scores_jointly(self) -> bool:
        return self.inner_model.scores_jointly()

    def uncalibrated_proba(self, blocks: Blocks) -> np.ndarray | None:
        return self.inner_model.uncalibrated_proba(self._clean(blocks))

    def modality_contributions(self, blocks: Blocks) -> np.ndarray | None:
        c = self.inner_model.modality_contributions(self._clean(blocks))
        if c is None or not hasattr(self, "all_modalities_"):
            return c
        out = np.full((len(c), len(self.all_modalities_)), np.nan)  # copies contribute nothing
        for j, m in enumerate(self.modalities):
            out[:, self.all_modalities_.index(m)] = c[:, j]
        return out

    def feature_contributions(self, blocks: Blocks) -> dict[str, np.ndarray | None]:
        return self.inner_model.feature_contributions(self._clean(blocks))

    def embedding(self, blocks: Blocks) -> np.ndarray | None:
        return self.inner_model.embedding(self._clean(blocks))

    def held_out(self) -> np.ndarray | None:
        return self._clean_rows(self.inner_model.held_out())

    def inner_predictions(self) -> np.ndarray | None:
        return self._clean_rows(self.inner_model.inner_predictions())

    def _clean_rows(self, held: np.ndarray | None) -> np.ndarray | None:
        """The clean samples' own rows (the copies follow them)."""
        return None if held is None else held[:len(held) - self.n_copies_]

    def summary(self) -> dict[str, Any]:
        return {**self.inner_model.summary(), "modalities": list(self.modalities),
                "augmented_rows": self.n_copies_, "copies": len(self.params.copies)}

    def save_state(self, folder: Path) -> dict[str, Any]:
        return {"inner": self.inner_model.save_state(folder), "n_copies": self.n_copies_}

    def load_state(self, state: dict[str, Any], folder: Path) -> None:
        m = self._load_wrapped(self.inner_model, state["inner"], folder)
        self.n_copies_ = int(state["n_copies"])
        self.drops_modalities = m.drops_modalities
