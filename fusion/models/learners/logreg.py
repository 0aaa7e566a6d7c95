"""Standardised linear learners: logistic regression (classification) and ridge (regression).

Fitted with scikit-learn; predictions are computed from the fitted arrays (training medians,
means, scales, coefficients), which are also what a saved model stores — plain JSON.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field
from sklearn.linear_model import LogisticRegression, Ridge

from features.base import Params
from fusion.models.calibration import softmax
from fusion.models.learners.base import LEARNERS, Learner, expand_proba

ARRAYS = ("median_", "mean_", "scale_", "coef_", "intercept_", "classes_")


class LinearParams(Params):
    C: float = Field(1.0, gt=0)
    class_weight: Literal["balanced"] | None = "balanced"
    max_iter: int = Field(3000, ge=1)
    alpha: float = Field(1.0, gt=0)


@LEARNERS.register("logreg")
class LinearLearner(Learner):
    """Median imputation and z-scoring fitted on the training data, then L2 logistic
    regression (classification, multinomial) or ridge regression (regression).

    Args:
        C: inverse regularisation of the logistic regression.
        class_weight: "balanced" re-weights classes by inverse frequency.
        alpha: ridge penalty (regression).
    """

    Params = LinearParams

    def fit(self, X, y, *, task="classification", n_classes=2, seed=0, eval_set=None, n_iter=None):
        p = self.params
        self.task, self.n_classes = task, n_classes
        Z = self.fit_scaling(X)
        if task == "classification":
            model = LogisticRegression(C=p.C, class_weight=p.class_weight, max_iter=p.max_iter,
                                       random_state=seed).fit(Z, y)
            self.classes_ = model.classes_.astype(int)
        else:
            model = Ridge(alpha=p.alpha).fit(Z, y)
            self.classes_ = np.array([], dtype=int)
        self.coef_ = np.atleast_2d(model.coef_)
        self.intercept_ = np.atleast_1d(model.intercept_).astype(float)
        self.fitted_ = True
        return self

    def predict_proba(self, X):
        return self.proba_from_margin(self.standardise(X) @ self.coef_.T + self.intercept_)

    def proba_from_margin(self, margin):
        if self.coef_.shape[0] == 1:  # binary: the score of the second class
            p1 = 1 / (1 + np.exp(-margin[:, 0]))
            proba = np.column_stack([1 - p1, p1])
        else:
            proba = softmax(margin)
        return expand_proba(proba, self.classes_, self.n_classes)

    def margin_parts(self, X):
        """Exact for a linear model: coefficient × standardised deviation from the training mean."""
        if self.task != "classification":
            return None
        z = self.standardise(X)
        parts = z[:, :, None] * self.coef_.T[None, :, :]
        reference = np.broadcast_to(self.intercept_, (len(X), len(self.intercept_)))
        return reference + parts.sum(1), reference, parts

    def predict(self, X):
        return self.standardise(X) @ self.coef_[0] + self.intercept_[0]

    def save(self, prefix):
        return {"task": self.task, "n_classes": self.n_classes, "params": self.params.model_dump(),
                **{k: getattr(self, k).tolist() for k in ARRAYS}}

    @classmethod
    def load(cls, info, prefix):
        self = cls(**info["params"])
        self.task, self.n_classes = info["task"], info["n_classes"]
        for k in ARRAYS:
            setattr(self, k, np.array(info[k], dtype=int if k == "classes_" else float))
        self.fitted_ = True
        return self
