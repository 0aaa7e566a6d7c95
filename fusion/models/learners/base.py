"""The learner interface shared by logistic/ridge, XGBoost and MLP learners.

A learner maps one feature matrix to class probabilities (classification, always with
`n_classes` columns even when a class is absent from a training fold) or to a score
(regression). `fit` may take an `eval_set` for early stopping; `n_iter_` then records the
iteration it stopped at, so that a refit on all the training data can use the same amount
of training without seeing validation data again.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from features.base import Params, validate_params
from features.registry import ComponentRef, Registry
from fusion.data.sequences import available

LEARNERS: Registry[type] = Registry("learner", package="fusion.models.learners")
Task = Literal["classification", "regression"]


class Learner:
    """Base class: parameters validated on construction (scikit-learn style errors)."""

    Params: ClassVar[type[Params]] = Params
    #: True for learners that assume the classes are ordered (refused for nominal targets)
    ordered: ClassVar[bool] = False

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

    def embed(self, X: np.ndarray) -> np.ndarray | None:
        """(n, width) the learner's penultimate representation, or None (no hidden layer)."""
        return None

    def margin_parts(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The classifier's margins split into a reference and per-feature parts: (margins
        (n, d), reference (n, d), parts (n, features, d)) with margins = reference + parts
        summed over features, and `proba_from_margin(margins)` = `predict_proba(X)`. The
        reference is the margin of the average training sample (a linear model's training
        mean input, TreeSHAP's expected value). None when the learner has no such split."""
        return None

    def proba_from_margin(self, margin: np.ndarray) -> np.ndarray:
        """Class probabilities (n, n_classes) from margins as `margin_parts` gives them."""
        raise NotImplementedError

    def reference_input(self) -> np.ndarray | None:
        """The average training sample (the training means after imputation), when kept."""
        return getattr(self, "mean_", None)

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


class LearnerSpec(ComponentRef):
    """A learner by registered name with its parameters, checked when validated.

    `grid` lists values to choose from for some parameters (e.g. `{C: [0.001, 0.01, 0.1]}`):
    every combination is scored on the inner folds (grouped, inside the training data only)
    by `select` (log loss, or balanced accuracy = UAR), and the best is refitted; the choice
    is reported with each fold's fitted model.
    """

    registry = LEARNERS
    name: str = "logreg"
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    select: Literal["log_loss", "balanced_accuracy"] = "log_loss"

    @model_validator(mode="after")
    def _check_grid(self) -> LearnerSpec:
        params_model = getattr(self.registry.get(self.name), "Params", None)
        for combo in self.combinations():
            if params_model is not None:
                try:
                    params_model.model_validate({**self.params, **combo})
                except ValidationError as err:
                    errors = [{**e, "loc": ("grid", *e["loc"]) if e["loc"] and e["loc"][0] in combo
                               else ("params", *e["loc"])} for e in err.errors(include_url=False)]
                    raise PydanticCustomError(
                        "component_params", "invalid grid values for learner {name}: {details}",
                        {"name": repr(self.name), "details": str(err), "errors": errors,
                         "schema": params_model, "at": ()}) from None
        return self

    def combinations(self) -> list[dict[str, Any]]:
        """Every combination of the grid's values ([{}] without a grid)."""
        keys = list(self.grid)
        return [dict(zip(keys, values, strict=True)) for values in itertools.product(*self.grid.values())]

    def with_params(self, combo: dict[str, Any]) -> LearnerSpec:
        return LearnerSpec(name=self.name, params={**self.params, **combo})


def build_learner(spec: LearnerSpec) -> Learner:
    return spec.build()


def save_learner(learner: Learner, prefix: Path) -> dict[str, Any]:
    """The learner's own `save` output, with its registered name (what `load_learner` needs)."""
    return {"name": LEARNERS.name_of(learner), **learner.save(prefix)}


def load_learner(info: dict[str, Any], prefix: Path) -> Learner:
    return LEARNERS.get(info["name"]).load(info, prefix)


def cross_fit(spec: LearnerSpec, X: np.ndarray, y: np.ndarray, inner: Sequence[tuple[np.ndarray, np.ndarray]],
              task: Task, n_classes: int, seed: int) -> tuple[np.ndarray, Learner]:
    """Out-of-fold predictions over `inner` folds (early stopping on each validation fold),
    then a refit on every available row with the median number of rounds. With a grid, each
    combination is cross-fitted and the best by `spec.select` is kept (`final.chosen_`).

    Raises:
        ValueError: a grid without inner folds to choose on.
    """
    combos = spec.combinations()
    if len(combos) > 1 and not inner:
        raise ValueError(f"learner {spec.name!r} has a grid {spec.grid}, chosen on inner folds: set "
                         "cv.inner_splits to 2 or more")
    best = None
    for combo in combos:
        oof, rounds = _inner_predictions(spec.with_params(combo), X, y, inner, task, n_classes, seed)
        score = _selection_score(oof, y, task, spec.select) if len(combos) > 1 else 0.0
        if best is None or score > best[0]:
            best = (score, combo, oof, rounds)
    _, combo, oof, rounds = best
    avail = available(X)
    present = np.unique(y[avail]) if task == "classification" else None
    if present is not None and len(present) < 2:
        raise ValueError(f"the {int(avail.sum())} training samples with this input are all of class "
                         f"{present[0] if len(present) else '?'}: a learner needs two classes")
    final = build_learner(spec.with_params(combo)).fit(X[avail], y[avail], task=task, n_classes=n_classes,
                                                       seed=seed, n_iter=int(np.median(rounds)) if rounds else None)
    final.chosen_ = combo if len(combos) > 1 else None
    return oof, final


def _inner_predictions(spec: LearnerSpec, X: np.ndarray, y: np.ndarray, inner, task: Task, n_classes: int,
                       seed: int) -> tuple[np.ndarray, list[int]]:
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
    return oof, rounds


def _selection_score(oof: np.ndarray, y: np.ndarray, task: Task, select: str) -> float:
    """Higher is better: minus the log loss / mean squared error, or the balanced accuracy."""
    has = ~np.isnan(oof).any(1) if oof.ndim == 2 else ~np.isnan(oof)
    if not has.any():
        return -np.inf
    if task == "regression":
        return -float(np.mean((oof[has] - y[has]) ** 2))
    yy, pp = y[has].astype(int), oof[has]
    if select == "balanced_accuracy":
        pred = pp.argmax(1)
        return float(np.mean([(pred[yy == c] == c).mean() for c in np.unique(yy)]))
    return float(np.mean(np.log(np.clip(pp[np.arange(len(yy)), yy], 1e-12, 1))))
