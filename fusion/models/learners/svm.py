"""An RBF-kernel support vector machine (classification; epsilon-SVR for a score), with optional
feature selection.

Median imputation and z-scoring are fitted on the training data; with `select: k` the k
features of largest ANOVA F statistic on that training data are kept (so inside whatever fold
the learner is fitted on — inner folds included — never on held-out rows). scikit-learn's SVC
(libsvm, one-vs-one) is fitted; its decision values are turned into class scores as
scikit-learn's one-vs-rest shape does (votes plus bounded confidences) and into probabilities
by a softmax (`scale` sharpens it; the fusion's calibration fits the temperature). The saved
learner is its arrays (support vectors, dual coefficients, intercepts, kernel width, the kept
features): plain JSON, no pickle.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
from pydantic import Field

from features.base import Params
from fusion.models.calibration import softmax
from fusion.models.learners.base import LEARNERS, Learner, expand_proba

ARRAYS = ("median_", "mean_", "scale_", "keep_", "support_vectors_", "dual_coef_", "intercept_", "n_support_",
          "classes_")


class SVMParams(Params):
    C: float = Field(1.0, gt=0)
    gamma: Literal["scale"] | float = "scale"
    class_weight: Literal["balanced"] | None = "balanced"
    select: int | None = Field(None, ge=1)
    scale: float = Field(1.0, gt=0)
    epsilon: float = Field(0.1, ge=0)


def ovr_scores(dec: np.ndarray, n: int) -> np.ndarray:
    """One-vs-one decision values (samples, n(n-1)/2; pairs (i, j), i < j, in order) → (samples, n)
    scores: each class's votes plus its summed confidence squashed into (-1/3, 1/3), as
    scikit-learn's `decision_function_shape='ovr'`."""
    votes, conf = np.zeros((len(dec), n)), np.zeros((len(dec), n))
    k = 0
    for i in range(n):
        for j in range(i + 1, n):
            votes[:, i] += dec[:, k] > 0
            votes[:, j] += dec[:, k] <= 0
            conf[:, i] += dec[:, k]
            conf[:, j] -= dec[:, k]
            k += 1
    return votes + conf / (3 * (np.abs(conf) + 1))


@LEARNERS.register("svm")
class SVMLearner(Learner):
    """RBF support vector classifier on z-scored (optionally ANOVA-selected) features.

    Args:
        C: inverse regularisation.
        gamma: kernel width, "scale" (1 / (features × variance), as scikit-learn) or a number.
        class_weight: "balanced" re-weights classes by inverse frequency.
        select: keep this many features (ANOVA F on the training rows); None keeps all.
        scale: multiplies the one-vs-rest scores before the softmax.
        epsilon: the insensitive zone of the regression (epsilon-SVR on the z-scored target).
    """

    Params = SVMParams

    def fit(self, X, y, *, task="classification", n_classes=2, seed=0, eval_set=None, n_iter=None):
        from sklearn.feature_selection import f_classif
        from sklearn.svm import SVC

        p = self.params
        self.task, self.n_classes = task, n_classes
        Z = self.fit_scaling(X)
        self.keep_ = np.arange(Z.shape[1])
        if task == "regression":
            from sklearn.feature_selection import f_regression
            from sklearn.svm import SVR

            y = np.asarray(y, dtype=float)
            self.y_mean_, self.y_sd_ = float(y.mean()), float(y.std() or 1.0)
            if p.select is not None and p.select < Z.shape[1]:
                with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    F, _ = f_regression(Z, y)
                self.keep_ = np.sort(np.argsort(-np.nan_to_num(F, nan=-1.0), kind="stable")[:p.select])
            model = SVR(C=p.C, kernel="rbf", gamma=p.gamma, epsilon=p.epsilon).fit(
                Z[:, self.keep_], (y - self.y_mean_) / self.y_sd_)
            self.gamma_ = float(model._gamma)
            self.support_vectors_, self.dual_coef_ = model.support_vectors_, model.dual_coef_
            self.intercept_ = model.intercept_
            self.n_support_ = np.array([len(model.support_vectors_)])
            self.classes_ = np.array([], dtype=int)
            self.fitted_ = True
            return self
        if p.select is not None and p.select < Z.shape[1]:
            with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # a constant feature: F is NaN, ranked last
                F, _ = f_classif(Z, y)
            self.keep_ = np.sort(np.argsort(-np.nan_to_num(F, nan=-1.0), kind="stable")[:p.select])
        Z = Z[:, self.keep_]
        model = SVC(C=p.C, kernel="rbf", gamma=p.gamma, class_weight=p.class_weight, random_state=seed).fit(Z, y)
        self.gamma_ = float(model._gamma)
        self.support_vectors_ = model.support_vectors_
        self.dual_coef_ = model.dual_coef_
        self.intercept_ = model.intercept_
        self.n_support_ = model.n_support_.astype(int)
        self.classes_ = model.classes_.astype(int)
        self.fitted_ = True
        return self

    def decision(self, X: np.ndarray) -> np.ndarray:
        """One-vs-one decision values (libsvm's layout), computed from the stored arrays."""
        K = self._kernel(X)
        start = np.r_[0, np.cumsum(self.n_support_)]
        n = len(self.classes_)
        out, k = np.zeros((len(K), n * (n - 1) // 2)), 0
        for i in range(n):
            for j in range(i + 1, n):
                si, sj = slice(start[i], start[i + 1]), slice(start[j], start[j + 1])
                out[:, k] = (K[:, si] @ self.dual_coef_[j - 1, si] + K[:, sj] @ self.dual_coef_[i, sj]
                             + self.intercept_[k])
                k += 1
        return out

    def predict_proba(self, X):
        n = len(self.classes_)
        if n == 1:
            return expand_proba(np.ones((len(X), 1)), self.classes_, self.n_classes)
        dec = self.decision(X)
        scores = np.column_stack([dec[:, 0], -dec[:, 0]])[:, ::-1] if n == 2 else ovr_scores(dec, n)
        return expand_proba(softmax(self.params.scale * scores), self.classes_, self.n_classes)

    def _kernel(self, X: np.ndarray) -> np.ndarray:
        Z = self.standardise(X)[:, self.keep_]
        sv = self.support_vectors_
        sq = (Z ** 2).sum(1)[:, None] + (sv ** 2).sum(1)[None, :] - 2 * Z @ sv.T
        return np.exp(-self.gamma_ * np.maximum(sq, 0.0))

    def predict(self, X):
        if self.task == "regression":
            z = self._kernel(X) @ self.dual_coef_[0] + self.intercept_[0]
            return z * self.y_sd_ + self.y_mean_
        return self.classes_[self.predict_proba(X)[:, self.classes_].argmax(1)]

    def save(self, prefix):
        out = {"task": self.task, "n_classes": self.n_classes, "params": self.params.model_dump(),
               "gamma_": self.gamma_, **{k: np.asarray(getattr(self, k)).tolist() for k in ARRAYS}}
        if self.task == "regression":
            out.update(y_mean_=self.y_mean_, y_sd_=self.y_sd_)
        return out

    @classmethod
    def load(cls, info, prefix):
        self = cls(**info["params"])
        self.task, self.n_classes, self.gamma_ = info["task"], info["n_classes"], float(info["gamma_"])
        for k in ARRAYS:
            setattr(self, k, np.array(info[k], dtype=int if k in ("classes_", "keep_", "n_support_") else float))
        self.dual_coef_ = np.atleast_2d(self.dual_coef_)
        self.support_vectors_ = self.support_vectors_.reshape(-1, len(self.keep_))
        if self.task == "regression":
            self.y_mean_, self.y_sd_ = float(info["y_mean_"]), float(info["y_sd_"])
        self.fitted_ = True
        return self
