"""Any pooled-input fusion model over per-turn sequences: each sequence modality is reduced to
one row per sample (statistics over its present segments), then the wrapped model is fitted.

This is how a sequence model is compared with, say, the calibrated late fusion of the same
per-turn features on the same folds (`ATEI`'s `late-fusion` baseline):

    model: {name: pooled, params: {model: {name: late-fusion}, stats: [mean, sd]}}

A sample without any present segment of a modality has an all-NaN row (the modality is
missing for it, as everywhere else).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from features.base import Params
from features.registry import ComponentRef
from fusion.data.sequences import SequenceBlock
from fusion.models.base import MODELS, Blocks, FusionModel, Inner
from fusion.models.targets import Targets

Stat = Literal["mean", "sd", "min", "max"]


class ModelRef(ComponentRef):
    """A registered fusion model named inside another model's parameters."""

    registry = MODELS


class PooledParams(Params):
    model: ModelRef = Field(default_factory=lambda: ModelRef(name="late-fusion"))
    stats: list[Stat] = Field(default_factory=lambda: ["mean", "sd"], min_length=1)


def pool_sequence(X: SequenceBlock, stats: Sequence[Stat]) -> np.ndarray:
    """(n, d × len(stats)): each statistic over the present segments, NaN rows where none is."""
    fns = {"mean": np.nanmean, "sd": np.nanstd, "min": np.nanmin, "max": np.nanmax}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a sample without segments: NaN row
        return np.concatenate([fns[s](X.values, axis=1) for s in stats], axis=1)


@MODELS.register("pooled")
class PooledSequences(FusionModel):
    """Sequence modalities pooled by `stats`, then the wrapped pooled-input `model`.

    Args:
        model: the fusion model fitted on the pooled rows ({name, params}; default late-fusion).
        stats: the statistics over each sample's present segments (mean, sd, min, max).
    """

    Params = PooledParams
    inputs = frozenset({"pooled", "sequence"})
    needs_inner = True

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.inner_model = self.params.model.build()
        if "pooled" not in type(self.inner_model).inputs:
            raise ValueError(f"pooled: model {self.params.model.name!r} does not take pooled inputs")
        self.tag = f"pooled-{self.inner_model.tag}"
        self.heads = self.inner_model.heads
        self.drops_modalities = self.inner_model.drops_modalities

    def _pool(self, blocks: Blocks) -> dict[str, np.ndarray]:
        return {m: pool_sequence(b, self.params.stats) if isinstance(b, SequenceBlock) else b
                for m, b in blocks.items()}

    def _fit(self, blocks: Blocks, targets: Targets, *, inner: Inner, seed: int, val=None) -> PooledSequences:
        _, task, n_classes = targets.main
        self._start_fit(blocks, task, n_classes)
        self.inner_model.fit(self._pool(blocks), targets, inner=inner, seed=seed)
        self.fitted_ = True
        return self

    def predict_proba(self, blocks: Blocks, modalities: Sequence[str] | None = None) -> np.ndarray:
        self.check_fitted()
        return self.inner_model.predict_proba(self._pool(blocks), self._selected(modalities))

    def predict_score(self, blocks: Blocks, modalities: Sequence[str] | None = None) -> np.ndarray:
        self.check_fitted()
        return self.inner_model.predict_score(self._pool(blocks), self._selected(modalities))

    def uncalibrated_proba(self, blocks: Blocks) -> np.ndarray | None:
        return self.inner_model.uncalibrated_proba(self._pool(blocks))

    def modality_contributions(self, blocks: Blocks) -> np.ndarray | None:
        return self.inner_model.modality_contributions(self._pool(blocks))

    def held_out(self) -> np.ndarray | None:
        return self.inner_model.held_out()

    def inner_predictions(self) -> np.ndarray | None:
        return self.inner_model.inner_predictions()

    def summary(self) -> dict[str, Any]:
        return {**self.inner_model.summary(), "modalities": list(self.modalities), "pooled_by": self.params.stats}

    def save_state(self, folder: Path) -> dict[str, Any]:
        return {"inner": self.inner_model.save_state(folder)}

    def load_state(self, state: dict[str, Any], folder: Path) -> None:
        self._load_wrapped(self.inner_model, state["inner"], folder)
