"""Early fusion: the modalities' features concatenated into one learner (the usual baseline).

Calibrated like late fusion, on out-of-fold predictions over the inner folds. A missing
modality can only be imputed here (the learner's training medians, or XGBoost's missing-value
branches) — the weakness that late fusion's availability mask avoids.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from features.base import Params
from fusion.data.sequences import missing_like
from fusion.models.base import MODELS, Blocks, FusionModel, Inner
from fusion.models.calibration import Calibrator
from fusion.models.learners.base import LearnerSpec, cross_fit, load_learner, save_learner
from fusion.models.targets import Targets


class EarlyFusionParams(Params):
    learner: LearnerSpec = Field(default_factory=LearnerSpec)
    calibration: Literal["temperature", "isotonic", "sigmoid", "none"] = "temperature"


@MODELS.register("early-fusion")
class EarlyFusion(FusionModel):
    """Concatenate every modality's features, fit one learner, calibrate on inner-OOF output.

    Args:
        learner: {name, params} of the learner.
        calibration: "temperature", "isotonic", "sigmoid" or "none" (without inner folds the
            model is left uncalibrated).
    """

    Params = EarlyFusionParams
    tag = "early"

    def _concat(self, blocks: Blocks, modalities: Sequence[str] | None = None) -> np.ndarray:
        keep = self._selected(modalities)
        return np.hstack([blocks[m] if m in keep else missing_like(blocks[m]) for m in self.modalities])

    def _fit(self, blocks: Blocks, targets: Targets, *, inner: Inner, seed: int, val=None) -> EarlyFusion:
        y, task, n_classes = targets.main
        self._start_fit(blocks, task, n_classes)
        self.widths_ = {m: blocks[m].shape[1] for m in self.modalities}
        X = self._concat(blocks)
        y = np.asarray(y)
        oof, self.learner_ = cross_fit(self.params.learner, X, y, inner, task, n_classes, seed)
        self.oof_, self.y_fit_ = oof, y
        self.inner_ = [(np.asarray(a), np.asarray(b)) for a, b in inner]
        if task == "classification":
            has = ~np.isnan(oof).any(1)
            method = self.params.calibration if inner else "none"
            self.calibrator_ = Calibrator(method).fit(oof[has], y[has].astype(int)) if has.any() else \
                Calibrator("none")
        self.fitted_ = True
        return self

    def held_out(self) -> np.ndarray | None:
        """The learner's inner out-of-fold outputs, each calibrated by a calibrator fitted
        without the sample's inner fold (for conformal thresholds); NaN where no inner fold
        predicted the sample."""
        self.check_fitted()
        if not getattr(self, "inner_", None):
            return None
        if self.task != "classification":
            return np.asarray(self.oof_, float)
        out = np.full_like(self.oof_, np.nan)
        n = len(self.y_fit_)
        for _, va in self.inner_:
            fit = np.setdiff1d(np.arange(n), va)
            has_fit, has_va = ~np.isnan(self.oof_[fit]).any(1), ~np.isnan(self.oof_[va]).any(1)
            if not has_fit.any() or not has_va.any():
                continue
            cal = Calibrator(self.calibrator_.method).fit(self.oof_[fit][has_fit],
                                                          self.y_fit_[fit][has_fit].astype(int))
            out[va[has_va]] = cal.transform(self.oof_[va][has_va])
        return out

    def predict_proba(self, blocks: Blocks, modalities: Sequence[str] | None = None) -> np.ndarray:
        """Probabilities; modalities left out of `modalities` are imputed as missing."""
        self.check_fitted()
        return self.calibrator_.transform(self.learner_.predict_proba(self._concat(blocks, modalities)))

    def predict_score(self, blocks: Blocks, modalities: Sequence[str] | None = None) -> np.ndarray:
        self.check_fitted()
        return self.learner_.predict(self._concat(blocks, modalities))

    def embedding(self, blocks: Blocks) -> np.ndarray | None:
        self.check_fitted()
        return self.learner_.embed(self._concat(blocks))

    def uncalibrated_proba(self, blocks: Blocks) -> np.ndarray | None:
        if self.calibrator_.method == "none":
            return None
        return self.learner_.predict_proba(self._concat(blocks))

    def feature_contributions(self, blocks: Blocks) -> dict[str, np.ndarray | None]:
        """Per modality, (n, features, classes) contributions to the calibrated, class-centred
        log-probability of each class, relative to the average training sample
        (`fusion.models.attribution`); None for every modality when the learner has no exact split."""
        from fusion.models.attribution import decision_attributions

        def score(P):
            logp = np.log(np.clip(self.calibrator_.transform(P), 1e-12, 1))
            return logp - logp.mean(1, keepdims=True)

        got = decision_attributions(self.learner_, self._concat(blocks), score) if self.task == "classification" \
            else None
        if got is None:
            return dict.fromkeys(self.modalities)
        c, out, start = got[0], {}, 0
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
        if getattr(self.learner_, "chosen_", None):
            d["learner_chosen"] = self.learner_.chosen_
        if self.task == "classification":
            d["calibration"] = self.calibrator_.to_dict()
        return d

    def save_state(self, folder: Path) -> dict[str, Any]:
        state = {"learner": save_learner(self.learner_, folder / "learner"), "widths": self.widths_}
        if self.task == "classification":
            state["calibrator"] = self.calibrator_.to_dict()
        return state

    def load_state(self, state: dict[str, Any], folder: Path) -> None:
        self.learner_ = load_learner(state["learner"], folder / "learner")
        self.widths_ = dict(state["widths"])
        if self.task == "classification":
            self.calibrator_ = Calibrator.from_dict(state["calibrator"])
