"""Calibrated late fusion: one learner per modality, calibrated and stacked on inner-validation
predictions only, with an availability mask so that a missing modality is left out.

For each modality the learner is cross-fitted over the inner folds of the training data (with
early stopping on each inner validation fold), giving out-of-fold probabilities for every
training sample; a calibrator is fitted on those; the learner is then refitted on all the
training data (for as many rounds as the inner folds chose). The fusion layer is fitted on the
calibrated out-of-fold probabilities:

- `stack`: log-linear pooling z_k = b_k + Σ_m a_m w_m log p_mk with learned w_m ≥ 0 and class
  biases b (a product of experts; a_m = 0 drops a missing modality, which then simply adds no
  evidence);
- `mean`: a linear pool Σ_m a_m v_m p_m / Σ_m a_m v_m with learned simplex weights v.

The regression head (e.g. the PHQ-8 score) fuses per-modality predictions by non-negative
weights fitted on the out-of-fold predictions, renormalised over the available modalities,
followed by a linear recalibration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.optimize import minimize, nnls

from features.base import Params, validate_params
from fusion.models.calibration import EPS, Calibrator, softmax
from fusion.models.learners import LEARNERS, Learner, Task
from fusion.registry import MODELS

Blocks = Mapping[str, np.ndarray]


class LearnerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "logreg"
    params: dict[str, Any] = Field(default_factory=dict)


def build_learner(spec: LearnerSpec) -> Learner:
    return LEARNERS.get(spec.name)(**spec.params)


def available(X: np.ndarray) -> np.ndarray:
    """Rows where the modality exists (a missing modality is an all-NaN row)."""
    return ~np.isnan(X).all(axis=1)


def cross_fit(spec: LearnerSpec, X: np.ndarray, y: np.ndarray, inner: Sequence[tuple[np.ndarray, np.ndarray]],
              task: Task, n_classes: int, seed: int) -> tuple[np.ndarray, Learner]:
    """Out-of-fold predictions over `inner` folds (early stopping on each validation fold),
    then a refit on every available row with the median number of rounds."""
    avail = available(X)
    n = len(y)
    oof = np.full((n, n_classes), np.nan) if task == "classification" else np.full(n, np.nan)
    rounds = []
    for i, (tr, va) in enumerate(inner):
        tr, va = tr[avail[tr]], va[avail[va]]
        if not len(va) or not len(tr) or (task == "classification" and len(np.unique(y[tr])) < 2):
            continue
        learner = build_learner(spec).fit(X[tr], y[tr], task=task, n_classes=n_classes, seed=seed + i,
                                          eval_set=(X[va], y[va]))
        oof[va] = learner.predict_proba(X[va]) if task == "classification" else learner.predict(X[va])
        if learner.n_iter_ is not None:
            rounds.append(learner.n_iter_)
    final = build_learner(spec).fit(X[avail], y[avail], task=task, n_classes=n_classes, seed=seed,
                                    n_iter=int(np.median(rounds)) if rounds else None)
    return oof, final


class LogLinearStacker:
    """z_k = b_k + Σ_m a_m w_m log p_mk, w_m = softplus(θ_m) ≥ 0, fitted by penalised NLL."""

    def __init__(self, l2: float = 1e-2) -> None:
        self.l2 = l2

    @staticmethod
    def _logits(logp: np.ndarray, mask: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        return b[None, :] + np.einsum("nmk,nm,m->nk", logp, mask, w)

    def fit(self, probas: Sequence[np.ndarray], y: np.ndarray) -> LogLinearStacker:
        logp, mask = _stack_inputs(probas)
        keep = mask.any(1)
        logp, mask, y = logp[keep], mask[keep], np.asarray(y, int)[keep]
        m, k = logp.shape[1], logp.shape[2]

        def loss(theta):
            w = np.logaddexp(0, theta[:m])
            b = theta[m:]
            p = softmax(self._logits(logp, mask, w, b))
            return -np.mean(np.log(np.clip(p[np.arange(len(y)), y], EPS, 1))) + self.l2 * (b @ b)

        theta0 = np.concatenate([np.full(m, np.log(np.e - 1)), np.zeros(k)])  # w = 1, b = 0
        res = minimize(loss, theta0, method="L-BFGS-B")
        self.weights_ = np.logaddexp(0, res.x[:m])
        self.bias_ = res.x[m:]
        return self

    def predict_proba(self, probas: Sequence[np.ndarray]) -> np.ndarray:
        logp, mask = _stack_inputs(probas)
        return softmax(self._logits(logp, mask, self.weights_, self.bias_))

    def contributions(self, probas: Sequence[np.ndarray], cls: np.ndarray) -> np.ndarray:
        """Each modality's share of the margin of class `cls`: a_m w_m (log p_m,cls − mean_k log p_mk)."""
        logp, mask = _stack_inputs(probas)
        centred = logp - logp.mean(axis=2, keepdims=True)
        picked = centred[np.arange(len(cls)), :, cls]
        return picked * mask * self.weights_[None, :]


class LinearPoolStacker:
    """p = Σ_m a_m v_m p_m / Σ_m a_m v_m with v on the simplex (softmax of θ), fitted by NLL."""

    def fit(self, probas: Sequence[np.ndarray], y: np.ndarray) -> LinearPoolStacker:
        P, mask = _stack_probs(probas)
        keep = mask.any(1)
        P, mask, y = P[keep], mask[keep], np.asarray(y, int)[keep]

        def loss(theta):
            v = softmax(theta[None, :])[0]
            p = self._pool(P, mask, v)
            return -np.mean(np.log(np.clip(p[np.arange(len(y)), y], EPS, 1)))

        res = minimize(loss, np.zeros(P.shape[1]), method="L-BFGS-B")
        self.weights_ = softmax(res.x[None, :])[0]
        return self

    @staticmethod
    def _pool(P, mask, v):
        w = mask * v[None, :]
        return np.einsum("nmk,nm->nk", P, w) / np.clip(w.sum(1, keepdims=True), EPS, None)

    def predict_proba(self, probas):
        P, mask = _stack_probs(probas)
        return self._pool(P, mask, self.weights_)

    def contributions(self, probas, cls):
        P, mask = _stack_probs(probas)
        w = mask * self.weights_[None, :]
        w = w / np.clip(w.sum(1, keepdims=True), EPS, None)
        return P[np.arange(len(cls)), :, cls] * w


def _stack_inputs(probas: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    P, mask = _stack_probs(probas)
    return np.log(np.clip(P, EPS, 1)), mask


def _stack_probs(probas: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    P = np.stack(probas, axis=1)  # (n, m, k)
    mask = ~np.isnan(P).any(axis=2)
    return np.where(mask[:, :, None], P, 1.0 / P.shape[2]), mask.astype(float)


class RegressionStacker:
    """Non-negative weights on per-modality predictions (renormalised over the available ones),
    then an intercept and slope fitted on the pooled out-of-fold predictions."""

    def fit(self, preds: Sequence[np.ndarray], y: np.ndarray) -> RegressionStacker:
        P = np.column_stack(preds)
        full = ~np.isnan(P).any(1)
        w = np.ones(P.shape[1])
        if full.sum() >= P.shape[1]:
            w, _ = nnls(P[full] - P[full].mean(0), y[full] - y[full].mean())
        self.weights_ = w if w.sum() > 0 else np.ones(P.shape[1])
        pooled = self._pool(P)
        ok = ~np.isnan(pooled)
        slope, intercept = np.polyfit(pooled[ok], y[ok], 1) if ok.sum() > 2 else (1.0, 0.0)
        self.slope_, self.intercept_ = float(slope), float(intercept)
        self.range_ = (float(np.min(y)), float(np.max(y)))
        return self

    def _pool(self, P):
        mask = ~np.isnan(P)
        w = mask * self.weights_[None, :]
        with np.errstate(invalid="ignore"):
            return np.nansum(np.where(mask, P, 0) * w, axis=1) / w.sum(1)

    def predict(self, preds: Sequence[np.ndarray]) -> np.ndarray:
        pooled = self._pool(np.column_stack(preds))
        return np.clip(self.intercept_ + self.slope_ * pooled, *self.range_)


class LateFusionParams(Params):
    learner: LearnerSpec = Field(default_factory=LearnerSpec)
    learners: dict[str, LearnerSpec] = Field(default_factory=dict)
    calibration: Literal["temperature", "isotonic", "sigmoid", "none"] = "temperature"
    fusion: Literal["stack", "mean"] = "stack"
    stack_l2: float = Field(1e-2, ge=0)


@MODELS.register("late-fusion")
class LateCalibratedFusion:
    """One calibrated learner per modality and a fusion layer fitted on inner-validation
    predictions; missing modalities are masked out, never zero-filled.

    Args:
        learner: the default per-modality learner ({name, params}).
        learners: per-modality overrides, by modality name.
        calibration: "temperature", "isotonic", "sigmoid" or "none".
        fusion: "stack" (log-linear, learned weights and biases) or "mean" (learned linear pool).
    """

    Params = LateFusionParams

    def __init__(self, **params: Any) -> None:
        self.params = validate_params(type(self).__name__, self.Params, params)

    def fit(self, blocks: Blocks, y: np.ndarray, *, task: Task, n_classes: int,
            inner: Sequence[tuple[np.ndarray, np.ndarray]], seed: int = 0) -> LateCalibratedFusion:
        if not inner:
            raise ValueError("late fusion needs inner folds (cv.inner_splits ≥ 2) to calibrate and stack "
                             "on inner-validation data")
        p = self.params
        self.task, self.n_classes, self.modalities = task, n_classes, list(blocks)
        self.learners_, self.calibrators_, self.oof_, self.oof_raw_ = {}, {}, {}, {}
        y = np.asarray(y)
        for m in self.modalities:
            spec = p.learners.get(m, p.learner)
            oof, self.learners_[m] = cross_fit(spec, blocks[m], y, inner, task, n_classes, seed)
            self.oof_raw_[m] = oof
            if task == "classification":
                has = ~np.isnan(oof).any(1)
                cal = Calibrator(p.calibration).fit(oof[has], y[has].astype(int))
                self.calibrators_[m] = cal
                out = np.full_like(oof, np.nan)
                out[has] = cal.transform(oof[has])
                self.oof_[m] = out
            else:
                self.oof_[m] = oof
        self.y_fit_ = y
        self._stackers: dict[tuple[str, ...], Any] = {}
        self.fitted_ = True
        return self

    def stacker(self, modalities: Sequence[str]):
        """The fusion layer for a subset of modalities, fitted on the stored inner-OOF outputs."""
        key = tuple(m for m in self.modalities if m in modalities)
        if key not in self._stackers:
            inputs = [self.oof_[m] for m in key]
            if self.task == "regression":
                st = RegressionStacker().fit(inputs, self.y_fit_)
            elif self.params.fusion == "stack":
                st = LogLinearStacker(self.params.stack_l2).fit(inputs, self.y_fit_)
            else:
                st = LinearPoolStacker().fit(inputs, self.y_fit_)
            self._stackers[key] = st
        return self._stackers[key]

    def modality_outputs(self, blocks: Blocks, calibrated: bool = True) -> dict[str, np.ndarray]:
        """Per-modality (calibrated) probabilities or predictions; NaN rows where missing."""
        out = {}
        for m in self.modalities:
            X = blocks[m]
            avail = available(X)
            learner = self.learners_[m]
            if self.task == "classification":
                res = np.full((len(X), self.n_classes), np.nan)
                if avail.any():
                    raw = learner.predict_proba(X[avail])
                    res[avail] = self.calibrators_[m].transform(raw) if calibrated else raw
            else:
                res = np.full(len(X), np.nan)
                if avail.any():
                    res[avail] = learner.predict(X[avail])
            out[m] = res
        return out

    def predict_proba(self, blocks: Blocks, modalities: Sequence[str] | None = None) -> np.ndarray:
        mods = list(modalities or self.modalities)
        outs = self.modality_outputs(blocks)
        return self.stacker(mods).predict_proba([outs[m] for m in self.modalities if m in mods])

    def predict(self, blocks: Blocks, modalities: Sequence[str] | None = None) -> np.ndarray:
        if self.task == "classification":
            return self.predict_proba(blocks, modalities).argmax(1)
        mods = list(modalities or self.modalities)
        outs = self.modality_outputs(blocks)
        return self.stacker(mods).predict([outs[m] for m in self.modalities if m in mods])

    def uncalibrated_proba(self, blocks: Blocks) -> np.ndarray:
        """Equal-weight mean of the raw (uncalibrated) per-modality probabilities."""
        P, mask = _stack_probs([v for v in self.modality_outputs(blocks, calibrated=False).values()])
        return np.einsum("nmk,nm->nk", P, mask) / np.clip(mask.sum(1, keepdims=True), 1, None)

    def modality_contributions(self, blocks: Blocks) -> np.ndarray:
        """(n, modalities) shares of the predicted class's margin (classification only)."""
        outs = self.modality_outputs(blocks)
        probas = [outs[m] for m in self.modalities]
        st = self.stacker(self.modalities)
        return st.contributions(probas, st.predict_proba(probas).argmax(1))

    def feature_contributions(self, blocks: Blocks) -> dict[str, np.ndarray | None]:
        """Per modality, (n, features, classes) contributions of its learner (None if unavailable)."""
        out = {}
        for m in self.modalities:
            X = blocks[m]
            avail = available(X)
            c = self.learners_[m].contributions(X[avail]) if avail.any() else None
            if c is not None:
                full = np.full((len(X), *c.shape[1:]), np.nan)
                full[avail] = c
                c = full
            out[m] = c
        return out

    def summary(self) -> dict[str, Any]:
        """Fitted calibration and fusion parameters (for tracking)."""
        st = self.stacker(self.modalities)
        d: dict[str, Any] = {"modalities": self.modalities}
        if self.task == "classification":
            d["calibration"] = {m: c.to_dict() for m, c in self.calibrators_.items()}
        d["fusion_weights"] = dict(zip(self.modalities, map(float, st.weights_), strict=True))
        return d
