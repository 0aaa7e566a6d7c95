"""Baselines on pooled per-sample features: standardised logistic regression."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from features.base import Params, validate_params
from fusion.registry import MODELS


class LogRegParams(Params):
    C: float = Field(1.0, gt=0)
    class_weight: Literal["balanced"] | None = "balanced"
    max_iter: int = Field(2000, ge=1)


@MODELS.register("logreg")
class StandardisedLogReg:
    """Median imputation (fitted on the training fold) → z-scoring → L2 logistic regression.

    Args:
        C: inverse regularisation strength.
        class_weight: "balanced" re-weights classes by inverse frequency; None does not.
    """

    Params = LogRegParams

    def __init__(self, **params) -> None:
        self.params = validate_params(type(self).__name__, self.Params, params)

    def fit(self, X: np.ndarray, y: np.ndarray, seed: int = 0) -> StandardisedLogReg:
        p = self.params
        self.pipeline_ = Pipeline([
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
            ("clf", LogisticRegression(C=p.C, class_weight=p.class_weight, max_iter=p.max_iter,
                                       random_state=seed)),
        ])
        self.pipeline_.fit(X, y)
        self.classes_ = self.pipeline_.classes_
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if not hasattr(self, "pipeline_"):
            raise RuntimeError("StandardisedLogReg is not fitted yet; call fit() first")
        return self.pipeline_.predict_proba(X)
