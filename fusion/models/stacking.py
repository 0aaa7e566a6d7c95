"""Fusion layers fitted on per-modality (calibrated) out-of-fold outputs, with an availability
mask so that a missing modality adds no evidence:

- `log-linear`: z_k = b_k + Σ_m a_m w_m log p_mk with learned w_m ≥ 0 and class biases b (a
  product of experts; a_m = 0 drops a missing modality);
- `linear-pool`: Σ_m a_m v_m p_m / Σ_m a_m v_m with learned simplex weights v;
- `regression`: non-negative weights on per-modality scores, renormalised over the available
  ones, then a linear recalibration.

Each stacker's fitted state is plain numbers (`to_dict` / `stacker_from_dict`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import minimize, nnls

from features.registry import Registry
from fusion.models.calibration import EPS, softmax

STACKERS: Registry[type] = Registry("stacker")


class Stacker:
    """Base of the fusion layers: `fit(outputs, y)`, then `predict_proba` or `predict`."""

    #: fitted attributes, in the order `to_dict` writes them
    state: tuple[str, ...] = ("weights_",)

    def to_dict(self) -> dict[str, Any]:
        """The fitted stacker as JSON-able values (with its registered type)."""
        out: dict[str, Any] = {"type": STACKERS.name_of(self), **self.init_args()}
        for k in self.state:
            v = getattr(self, k)
            out[k] = v.tolist() if isinstance(v, np.ndarray) else (list(v) if isinstance(v, tuple) else v)
        return out

    def init_args(self) -> dict[str, Any]:
        return {}


def stacker_from_dict(d: dict[str, Any]) -> Stacker:
    """Rebuild a stacker written by `Stacker.to_dict`."""
    d = dict(d)
    cls = STACKERS.get(d.pop("type"))
    st = cls(**{k: d.pop(k) for k in list(d) if k not in cls.state})
    for k in cls.state:
        v = d[k]
        setattr(st, k, tuple(v) if k == "range_" else (np.array(v, dtype=float) if isinstance(v, list) else v))
    return st


@STACKERS.register("log-linear")
class LogLinearStacker(Stacker):
    """z_k = b_k + Σ_m a_m w_m log p_mk, w_m = softplus(θ_m) ≥ 0, fitted by penalised NLL."""

    state = ("weights_", "bias_")

    def __init__(self, l2: float = 1e-2) -> None:
        self.l2 = l2

    def init_args(self) -> dict[str, Any]:
        return {"l2": self.l2}

    @staticmethod
    def _logits(logp: np.ndarray, mask: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        return b[None, :] + np.einsum("nmk,nm,m->nk", logp, mask, w)

    def fit(self, probas: Sequence[np.ndarray], y: np.ndarray,
            start: LogLinearStacker | None = None) -> LogLinearStacker:
        """Fit by penalised NLL. With `start` (a fitted stacker of the same modalities, e.g.
        for bootstrap refits) the optimiser starts from its parameters and uses the analytic
        gradient of the same objective."""
        logp, mask = stack_log_probs(probas)
        keep = mask.any(1)
        logp, mask, y = logp[keep], mask[keep], np.asarray(y, int)[keep]
        m, k = logp.shape[1], logp.shape[2]

        def loss(theta):
            w = np.logaddexp(0, theta[:m])
            b = theta[m:]
            p = softmax(self._logits(logp, mask, w, b))
            return -np.mean(np.log(np.clip(p[np.arange(len(y)), y], EPS, 1))) + self.l2 * (b @ b)

        if start is None:
            theta0 = np.concatenate([np.full(m, np.log(np.e - 1)), np.zeros(k)])  # w = 1, b = 0
            res = minimize(loss, theta0, method="L-BFGS-B")
        else:
            masked = logp * mask[:, :, None]
            onehot = np.eye(k)[y]

            def loss_grad(theta):
                w, b = np.logaddexp(0, theta[:m]), theta[m:]
                p = softmax(b[None, :] + np.einsum("nmk,m->nk", masked, w))
                dz = (p - onehot) / len(y)
                grad_w = np.einsum("nk,nmk->m", dz, masked) / (1 + np.exp(-theta[:m]))
                value = -np.mean(np.log(np.clip(p[np.arange(len(y)), y], EPS, 1))) + self.l2 * (b @ b)
                return value, np.concatenate([grad_w, dz.sum(0) + 2 * self.l2 * b])

            w0 = np.maximum(start.weights_, 1e-8)
            theta0 = np.concatenate([w0 + np.log(-np.expm1(-w0)), start.bias_])  # softplus⁻¹(w)
            res = minimize(loss_grad, theta0, method="L-BFGS-B", jac=True)
        self.weights_ = np.logaddexp(0, res.x[:m])
        self.bias_ = res.x[m:]
        return self

    def predict_proba(self, probas: Sequence[np.ndarray]) -> np.ndarray:
        logp, mask = stack_log_probs(probas)
        return softmax(self._logits(logp, mask, self.weights_, self.bias_))

    def term(self, j: int, proba: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Modality `j`'s term in the fused logits, per class, centred over the classes:
        a_j w_j (log p_jk − mean_k' log p_jk'); `mask` is the (n, modalities) availability."""
        logp = np.log(np.clip(proba, EPS, 1))
        return (logp - logp.mean(1, keepdims=True)) * (mask[:, j] * self.weights_[j])[:, None]


@STACKERS.register("linear-pool")
class LinearPoolStacker(Stacker):
    """p = Σ_m a_m v_m p_m / Σ_m a_m v_m with v on the simplex (softmax of θ), fitted by NLL."""

    def fit(self, probas: Sequence[np.ndarray], y: np.ndarray) -> LinearPoolStacker:
        P, mask = stack_probs(probas)
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
        P, mask = stack_probs(probas)
        return self._pool(P, mask, self.weights_)

    def term(self, j: int, proba: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Modality `j`'s term in the pooled probabilities: its weight renormalised over the
        sample's available modalities × its probabilities; `mask` is the (n, modalities) availability."""
        w = mask * self.weights_[None, :]
        return proba * (w[:, j] / np.clip(w.sum(1), EPS, None))[:, None]

def stack_log_probs(probas: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    P, mask = stack_probs(probas)
    return np.log(np.clip(P, EPS, 1)), mask


def stack_probs(probas: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    P = np.stack(probas, axis=1)  # (n, m, k)
    mask = ~np.isnan(P).any(axis=2)
    return np.where(mask[:, :, None], P, 1.0 / P.shape[2]), mask.astype(float)


@STACKERS.register("regression")
class RegressionStacker(Stacker):
    """Non-negative weights on per-modality predictions (renormalised over the available ones),
    then an intercept and slope fitted on the pooled out-of-fold predictions."""

    state = ("weights_", "slope_", "intercept_", "range_")

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


