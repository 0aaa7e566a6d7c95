"""Probability calibration fitted on inner-validation predictions only (scikit-learn is imported
only by the isotonic and sigmoid methods).

`temperature` (one temperature for all classes, Guo et al. 2017), `isotonic` and `sigmoid`
(Platt) one-vs-rest with renormalisation, or `none`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.optimize import minimize_scalar

EPS = 1e-7
Method = Literal["temperature", "isotonic", "sigmoid", "none"]


def _log(p: np.ndarray) -> np.ndarray:
    return np.log(np.clip(p, EPS, 1.0))


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def nll(proba: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(_log(proba[np.arange(len(y)), y.astype(int)])))


class Calibrator:
    """Maps (n, K) probabilities to calibrated (n, K) probabilities."""

    def __init__(self, method: Method = "temperature") -> None:
        self.method = method

    def fit(self, proba: np.ndarray, y: np.ndarray) -> Calibrator:
        y = np.asarray(y, int)
        k = proba.shape[1]
        if self.method == "temperature":
            logits = _log(proba)
            res = minimize_scalar(lambda lt: nll(softmax(logits / np.exp(lt)), y),
                                  bounds=(np.log(0.05), np.log(20.0)), method="bounded")
            self.temperature_ = float(np.exp(res.x))
        elif self.method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            self.maps_ = [IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(proba[:, c], y == c)
                          for c in range(k)]
        elif self.method == "sigmoid":
            from sklearn.linear_model import LogisticRegression

            self.maps_ = []
            for c in range(k):
                target = (y == c).astype(int)
                if target.min() == target.max():  # class absent or alone: keep its probability
                    self.maps_.append(None)
                    continue
                x = (_log(proba[:, c]) - _log(1 - proba[:, c]))[:, None]
                self.maps_.append(LogisticRegression(C=1e4).fit(x, target))
        self.fitted_ = True
        return self

    def transform(self, proba: np.ndarray) -> np.ndarray:
        if self.method == "none":
            return proba
        if not getattr(self, "fitted_", False):
            raise RuntimeError("Calibrator is not fitted; call fit() on inner-validation predictions")
        if self.method == "temperature":
            return softmax(_log(proba) / self.temperature_)
        cols = []
        for c, m in enumerate(self.maps_):
            if m is None:
                cols.append(proba[:, c])
            elif self.method == "isotonic":
                cols.append(m.predict(proba[:, c]))
            else:
                x = (_log(proba[:, c]) - _log(1 - proba[:, c]))[:, None]
                cols.append(m.predict_proba(x)[:, 1])
        out = np.clip(np.column_stack(cols), EPS, None)
        return out / out.sum(1, keepdims=True)

    def to_dict(self) -> dict:
        """Everything needed to rebuild the fitted calibrator, as JSON-able values."""
        d: dict = {"method": self.method}
        if self.method == "temperature":
            d["temperature"] = self.temperature_
        elif self.method == "isotonic":
            d["maps"] = [{"x": m.X_thresholds_.tolist(), "y": m.y_thresholds_.tolist()} for m in self.maps_]
        elif self.method == "sigmoid":
            d["maps"] = [None if m is None else {"coef": float(m.coef_[0, 0]), "intercept": float(m.intercept_[0])}
                         for m in self.maps_]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Calibrator:
        self = cls(d["method"])
        if self.method == "temperature":
            self.temperature_ = d["temperature"]
        elif self.method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            self.maps_ = []
            for m in d["maps"]:
                iso = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1)
                iso.fit(m["x"], m["y"])
                self.maps_.append(iso)
        elif self.method == "sigmoid":
            from sklearn.linear_model import LogisticRegression

            self.maps_ = []
            for m in d["maps"]:
                if m is None:
                    self.maps_.append(None)
                    continue
                lr = LogisticRegression()
                lr.classes_, lr.coef_, lr.intercept_ = np.array([0, 1]), np.array([[m["coef"]]]), np.array(
                    [m["intercept"]])
                self.maps_.append(lr)
        self.fitted_ = True
        return self
