"""Early fusion: the modalities' features concatenated into one learner (the usual baseline).

Calibrated like late fusion, on out-of-fold predictions over the inner folds. A missing
modality can only be imputed here (the learner's training medians, or XGBoost's missing-value
branches) — the weakness that late fusion's availability mask avoids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field

from features.base import Params, validate_params
from fusion.models.calibration import Calibrator
from fusion.models.late_fusion import Blocks, LearnerSpec, cross_fit
from fusion.models.learners import Task
from fusion.registry import MODELS


class EarlyFusionParams(Params):
    learner: LearnerSpec = Field(default_factory=LearnerSpec)
    calibration: Literal["temperature", "isotonic", "sigmoid", "none"] = "temperature"


@MODELS.register("early-fusion")
class EarlyFusion:
    """Concatenate every modality's features, fit one learner, calibrate on inner-OOF output.

    Args:
        learner: {name, params} of the learner.
        calibration: "temperature", "isotonic", "sigmoid" or "none".
    """

    Params = EarlyFusionParams

    def __init__(self, **params: Any) -> None:
        self.params = validate_params(type(self).__name__, self.Params, params)

    def _concat(self, blocks: Blocks, modalities: Sequence[str] | None = None) -> np.ndarray:
        parts = []
        for m in self.modalities:
            X = blocks[m]
            parts.append(X if modalities is None or m in modalities else np.full_like(X, np.nan))
        return np.hstack(parts)

    def fit(self, blocks: Blocks, y: np.ndarray, *, task: Task, n_classes: int,
            inner: Sequence[tuple[np.ndarray, np.ndarray]], seed: int = 0) -> EarlyFusion:
        self.task, self.n_classes, self.modalities = task, n_classes, list(blocks)
        self.widths_ = {m: blocks[m].shape[1] for m in self.modalities}
        X = self._concat(blocks)
        y = np.asarray(y)
        oof, self.learner_ = cross_fit(self.params.learner, X, y, inner, task, n_classes, seed)
        self.oof_raw_ = oof
        if task == "classification":
            has = ~np.isnan(oof).any(1)
            method = self.params.calibration if inner else "none"
            self.calibrator_ = Calibrator(method).fit(oof[has], y[has].astype(int)) if has.any() else \
                Calibrator("none")
        self.fitted_ = True
        return self

    def predict_proba(self, blocks: Blocks, modalities: Sequence[str] | None = None) -> np.ndarray:
        """Probabilities; modalities left out of `modalities` are imputed as missing."""
        return self.calibrator_.transform(self.learner_.predict_proba(self._concat(blocks, modalities)))

    def uncalibrated_proba(self, blocks: Blocks) -> np.ndarray:
        return self.learner_.predict_proba(self._concat(blocks))

    def predict(self, blocks: Blocks, modalities: Sequence[str] | None = None) -> np.ndarray:
        if self.task == "classification":
            return self.predict_proba(blocks, modalities).argmax(1)
        return self.learner_.predict(self._concat(blocks, modalities))

    def feature_contributions(self, blocks: Blocks) -> dict[str, np.ndarray | None]:
        c = self.learner_.contributions(self._concat(blocks))
        if c is None:
            return dict.fromkeys(self.modalities)
        out, start = {}, 0
        for m in self.modalities:
            out[m] = c[:, start:start + self.widths_[m]]
            start += self.widths_[m]
        return out

    def modality_contributions(self, blocks: Blocks) -> np.ndarray | None:
        """Sum of each modality's feature contributions to the predicted class (when exact)."""
        feats = self.feature_contributions(blocks)
        if any(v is None for v in feats.values()):
            return None
        pred = self.predict_proba(blocks).argmax(1)
        idx = np.arange(len(pred))
        return np.column_stack([np.nansum(feats[m][idx, :, pred], axis=1) for m in self.modalities])

    def summary(self) -> dict[str, Any]:
        d: dict[str, Any] = {"modalities": self.modalities}
        if self.task == "classification":
            d["calibration"] = self.calibrator_.to_dict()
        return d
