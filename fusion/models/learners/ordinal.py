"""Ordinal regression for graded targets (severity classes): a ridge projection to one latent
severity score, then a proportional-odds (cumulative logit) model on that score.

P(y ≤ k | s) = σ(θ_k − a·s) with a > 0 and θ_1 < … < θ_{K−1}. The cut points and slope are
fitted on leave-one-out ridge scores of the training data (ridge's closed-form LOO), so they
are not fitted on in-sample predictions. Class probabilities are unimodal along the ordering,
which makes a product of such experts (log-linear late fusion) sharpen around the modalities'
consensus.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field
from scipy.optimize import minimize
from scipy.special import expit

from features.base import Params
from fusion.models.learners.base import LEARNERS, Learner, balanced_weights


class OrdinalParams(Params):
    alphas: list[float] = Field(default_factory=lambda: np.logspace(-1, 4, 16).tolist())
    class_weight: str | None = "balanced"


def ridge_loo(Z: np.ndarray, y: np.ndarray, alphas: list[float]) -> tuple[np.ndarray, float, float, np.ndarray]:
    """Ridge on centred `Z` with the penalty of least leave-one-out error.

    Uses the dual form: with K = Z Zᵀ = U S Uᵀ, the hat matrix is U diag(S/(S+α)) Uᵀ (+ 1/n for
    the intercept), so every α's leave-one-out predictions y_i − e_i / (1 − h_ii) cost one
    eigendecomposition.

    Returns:
        coefficients, intercept, the chosen α, and its leave-one-out predictions.
    """
    n = len(y)
    mu = y.mean()
    yc = y - mu
    s, U = np.linalg.eigh(Z @ Z.T)
    s = np.clip(s, 0, None)
    Uy = U.T @ yc
    best = None
    for a in alphas:
        shrink = s / (s + a)
        fitted = U @ (shrink * Uy)
        h = (U ** 2) @ shrink + 1.0 / n
        loo = y - (yc - fitted) / (1 - h)
        err = np.mean((loo - y) ** 2)
        if best is None or err < best[0]:
            best = (err, a, loo)
    _, alpha, loo = best
    dual = U @ (Uy / (s + alpha))
    return Z.T @ dual, float(mu), float(alpha), loo


def cumulative_proba(s: np.ndarray, slope: float, cuts: np.ndarray) -> np.ndarray:
    """Class probabilities of the proportional-odds model, shape (n, len(cuts) + 1)."""
    cdf = expit(cuts[None, :] - slope * s[:, None])
    cdf = np.column_stack([np.zeros(len(s)), cdf, np.ones(len(s))])
    return np.clip(np.diff(cdf, axis=1), 1e-9, 1.0)


@LEARNERS.register("ordinal")
class OrdinalLearner(Learner):
    """Ridge projection (penalty chosen by leave-one-out) + proportional-odds link.

    Args:
        alphas: ridge penalties to choose from.
        class_weight: "balanced" weights the proportional-odds fit by inverse class frequency.
    """

    Params = OrdinalParams
    ordered = True  # assumes ordered classes: refused for nominal targets

    def fit(self, X, y, *, task="classification", n_classes=2, seed=0, eval_set=None, n_iter=None):
        self.task, self.n_classes = task, n_classes
        Z = self.fit_scaling(X)
        target = np.asarray(y, dtype=float)
        self.coef_, self.intercept_, self.alpha_, loo = ridge_loo(Z, target, self.params.alphas)
        if task == "regression":
            self.fitted_ = True
            return self
        w = balanced_weights(y) if self.params.class_weight == "balanced" else np.ones(len(y))
        self.slope_, self.cuts_ = self._fit_link(loo, np.asarray(y, int), w, n_classes)
        self.fitted_ = True
        return self

    @staticmethod
    def _fit_link(s, y, w, k):
        sd = s.std() or 1.0

        def unpack(theta):
            slope = np.exp(theta[0])
            cuts = theta[1] + np.concatenate([[0.0], np.cumsum(np.exp(theta[2:]))])
            return slope, cuts

        def loss(theta):
            slope, cuts = unpack(theta)
            p = cumulative_proba(s, slope, cuts)
            return -np.sum(w * np.log(p[np.arange(len(y)), y])) / w.sum() + 1e-4 * theta @ theta

        centres = np.arange(k - 1) + 0.5
        theta0 = np.concatenate([[np.log(2.0 / sd)], [centres[0] * 2.0 / sd],
                                 np.log(np.full(k - 2, 2.0 / sd))])
        res = minimize(loss, theta0, method="L-BFGS-B")
        return unpack(res.x)

    def _score(self, X):
        return self.standardise(X) @ self.coef_ + self.intercept_

    def predict_proba(self, X):
        return cumulative_proba(self._score(X), self.slope_, self.cuts_)

    def proba_from_margin(self, margin):
        return cumulative_proba(margin[:, 0], self.slope_, self.cuts_)

    def margin_parts(self, X):
        """One margin, the latent severity score: its value at the training mean plus each
        feature's coefficient × standardised deviation."""
        if self.task != "classification":
            return None
        parts = (self.standardise(X) * self.coef_)[:, :, None]
        reference = np.full((len(X), 1), float(self.intercept_))
        return reference + parts.sum(1), reference, parts

    def predict(self, X):
        return self._score(X)

    def save(self, prefix):
        d = {"task": self.task, "n_classes": self.n_classes, "params": self.params.model_dump(),
             "median": self.median_.tolist(), "mean": self.mean_.tolist(), "scale": self.scale_.tolist(),
             "coef": self.coef_.tolist(), "intercept": self.intercept_, "alpha": self.alpha_}
        if self.task == "classification":
            d.update(slope=float(self.slope_), cuts=self.cuts_.tolist())
        return d

    @classmethod
    def load(cls, info, prefix):
        self = cls(**info["params"])
        self.task, self.n_classes = info["task"], info["n_classes"]
        self.median_, self.mean_, self.scale_, self.coef_ = (np.array(info[k]) for k in
                                                             ("median", "mean", "scale", "coef"))
        self.intercept_, self.alpha_ = info["intercept"], info["alpha"]
        if self.task == "classification":
            self.slope_, self.cuts_ = info["slope"], np.array(info["cuts"])
        self.fitted_ = True
        return self
