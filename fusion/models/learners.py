"""The learner interface shared by logistic/ridge, XGBoost and MLP learners.

A learner maps one feature matrix to class probabilities (classification, always with
`n_classes` columns even when a class is absent from a training fold) or to a score
(regression). `fit` may take an `eval_set` for early stopping; `n_iter_` then records the
iteration it stopped at, so that a refit on all the training data can use the same amount
of training without seeing validation data again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from features.base import Params, validate_params
from features.registry import Registry

LEARNERS: Registry[type] = Registry("learner")
Task = Literal["classification", "regression"]


class Learner:
    """Base class: parameters validated on construction (scikit-learn style errors)."""

    Params: ClassVar[type[Params]] = Params

    def __init__(self, **params: Any) -> None:
        self.params = validate_params(type(self).__name__, self.Params, params)
        self.n_iter_: int | None = None

    def fit(self, X: np.ndarray, y: np.ndarray, *, task: Task = "classification", n_classes: int = 2,
            seed: int = 0, eval_set: tuple[np.ndarray, np.ndarray] | None = None,
            n_iter: int | None = None) -> Learner:
        raise NotImplementedError

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def save(self, prefix: Path) -> dict[str, Any]:
        """Write the fitted learner next to `prefix` (JSON or the library's own format) and
        return what `load` needs. Never pickle: a saved model must be safe to open."""
        raise NotImplementedError

    @classmethod
    def load(cls, info: dict[str, Any], prefix: Path) -> Learner:
        raise NotImplementedError

    def contributions(self, X: np.ndarray) -> np.ndarray | None:
        """Per-feature contributions to each class's margin, shape (n, features, classes), or
        None when the learner has no exact attribution (permutation importance is used then)."""
        return None

    def fit_scaling(self, X: np.ndarray) -> np.ndarray:
        """Learn median imputation and z-scoring on training data; return it standardised."""
        med = np.nanmedian(X, axis=0) if len(X) else np.zeros(X.shape[1])
        self.median_ = np.where(np.isnan(med), 0.0, med)
        filled = np.where(np.isnan(X), self.median_, X)
        self.mean_ = filled.mean(0)
        sd = filled.std(0)
        self.scale_ = np.where(sd > 0, sd, 1.0)
        return (filled - self.mean_) / self.scale_

    def standardise(self, X: np.ndarray) -> np.ndarray:
        """Impute and z-score with the training statistics."""
        self.check_fitted()
        return (np.where(np.isnan(X), self.median_, X) - self.mean_) / self.scale_

    def check_fitted(self) -> None:
        if not getattr(self, "fitted_", False):
            raise RuntimeError(f"{type(self).__name__} is not fitted yet; call fit() first")


def balanced_weights(y: np.ndarray) -> np.ndarray:
    """Sample weights giving every present class the same total weight."""
    classes, counts = np.unique(y, return_counts=True)
    w = {c: len(y) / (len(classes) * n) for c, n in zip(classes, counts, strict=True)}
    return np.array([w[v] for v in y], dtype=float)


def expand_proba(proba: np.ndarray, classes: np.ndarray, n_classes: int, eps: float = 1e-6) -> np.ndarray:
    """Columns for every class 0..n_classes-1 (absent ones get `eps`), rows renormalised."""
    out = np.full((len(proba), n_classes), eps)
    out[:, classes.astype(int)] = np.maximum(proba, eps)
    return out / out.sum(1, keepdims=True)
