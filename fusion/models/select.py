"""Choosing among candidate models inside the training data: nested selection as a model.

    model:
      name: select
      params:
        metric: uar
        candidates:
          - {name: late-fusion, params: {...}}
          - {name: late-fusion, params: {learner: {name: svm, ...}}}

Given the inner folds of its training data, every candidate is cross-fitted over them: for
inner fold i it is fitted on the other folds (its own inner folds being their validation parts)
and predicts fold i. The candidate whose out-of-fold predictions score best on `metric` is then
fitted on all the training data with all the inner folds, and it is the model. Fitted inside
each outer fold by the protocol, the choice never sees that fold's test samples: the outer
figure is that of the selection procedure, not of the choice that happened to do best on the
figure's own samples. The scores of every candidate are in the summary (`fitted_per_fold.json`).

Needs at least 3 inner folds (a candidate fitted on inner folds needs inner folds of its own).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from features.base import Params
from fusion.evaluation.metrics import multiclass_metrics
from fusion.models.base import MODELS, Blocks, FusionModel, Inner
from fusion.models.pooled import ModelRef
from fusion.models.targets import Targets

Metric = Literal["uar", "f1_weighted", "f1_macro", "accuracy", "log_loss"]


class SelectParams(Params):
    candidates: list[ModelRef] = Field(default_factory=lambda: [ModelRef(name="late-fusion"),
                                                                 ModelRef(name="early-fusion")], min_length=1)
    metric: Metric = "uar"


def take(blocks: Blocks, rows: np.ndarray) -> dict[str, Any]:
    return {m: b[rows] for m, b in blocks.items()}


def score(y: np.ndarray, proba: np.ndarray, metric: Metric) -> float:
    """Higher is better (log loss is negated)."""
    if metric == "log_loss":
        return float(np.mean(np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, None))))
    return float(multiclass_metrics(y, proba, "nominal")[metric])


def nested_inner(inner: Inner, fold: int) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """The training rows of inner fold `fold` and, in positions within them, the inner folds of
    a model fitted there: the other folds' validation parts, each against the rest."""
    train = np.sort(np.asarray(inner[fold][0]))
    where = {int(r): i for i, r in enumerate(train)}
    parts = [np.asarray(va) for j, (_, va) in enumerate(inner) if j != fold]
    sub = []
    for k, va in enumerate(parts):
        rest = np.concatenate([p for j, p in enumerate(parts) if j != k])
        if not set(va.tolist()) <= set(where) or not set(rest.tolist()) <= set(where):
            raise ValueError("select: the inner folds must partition the training rows (grouped k-fold)")
        sub.append((np.array([where[int(r)] for r in rest]), np.array([where[int(r)] for r in va])))
    return train, sub


@MODELS.register("select")
class SelectModel(FusionModel):
    """The candidate whose inner out-of-fold predictions score best, refitted on all the data.

    Args:
        candidates: the models to choose among ({name, params} each; by default late and early
            fusion with their default learners).
        metric: what the choice maximises on the inner folds' pooled out-of-fold predictions:
            uar, f1_weighted, f1_macro, accuracy or log_loss (the mean log-likelihood); for a
            score target, the root mean squared error is minimised.
    """

    Params = SelectParams
    tag = "select"
    needs_inner = True
    heads = frozenset({"classes", "ordinal", "score"})
    inputs = frozenset({"pooled"})

    def _fit(self, blocks: Blocks, targets: Targets, *, inner: Inner, seed: int, val=None) -> SelectModel:
        y, task, n_classes = targets.main
        if len(inner) < 3:
            raise ValueError(f"select needs at least 3 inner folds (cv.inner_splits ≥ 3), got {len(inner)}: each "
                             "candidate is fitted on inner folds with inner folds of its own")
        self._start_fit(blocks, task, n_classes)
        classify = task == "classification"
        y = np.asarray(y).astype(int) if classify else np.asarray(y, dtype=float)
        metric = self.params.metric if classify else "neg_rmse"
        self.scores_: list[dict[str, Any]] = []
        for c, ref in enumerate(self.params.candidates):
            oof = np.full((len(y), n_classes) if classify else (len(y), 1), np.nan)
            for i, (_, va) in enumerate(inner):
                train, sub = nested_inner(inner, i)
                model = ref.build().fit(take(blocks, train), targets.rows(train), inner=sub, seed=seed)
                held = take(blocks, np.asarray(va))
                oof[va] = model.predict_proba(held) if classify else model.predict_score(held)[:, None]
            done = ~np.isnan(oof).any(axis=1)
            value = (score(y[done], oof[done], metric) if classify
                     else -float(np.sqrt(np.mean((oof[done, 0] - y[done]) ** 2))))
            self.scores_.append({"candidate": c, "name": ref.name, metric: value, "n": int(done.sum())})
        values = [s[metric] for s in self.scores_]
        self.chosen_ = int(np.nanargmax(values))  # the first of equals: candidates in the given order
        self.model_ = self.params.candidates[self.chosen_].build().fit(blocks, targets, inner=inner, seed=seed)
        # the modalities the chosen model reads (an `augment` model's copies are not among them)
        self.modalities = list(self.model_.modalities)
        self.fitted_ = True
        return self

    # --- everything else is the chosen model's -------------------------------------------------
    def predict_proba(self, blocks: Blocks, modalities: Sequence[str] | None = None) -> np.ndarray:
        self.check_fitted()
        return self.model_.predict_proba(blocks, modalities)

    def predict_score(self, blocks: Blocks, modalities: Sequence[str] | None = None) -> np.ndarray:
        self.check_fitted()
        return self.model_.predict_score(blocks, modalities)

    def scores_jointly(self) -> bool:
        return self.model_.scores_jointly()

    def uncalibrated_proba(self, blocks: Blocks) -> np.ndarray | None:
        return self.model_.uncalibrated_proba(blocks)

    def modality_contributions(self, blocks: Blocks) -> np.ndarray | None:
        return self.model_.modality_contributions(blocks)

    def feature_contributions(self, blocks: Blocks) -> dict[str, np.ndarray | None]:
        return self.model_.feature_contributions(blocks)

    def embedding(self, blocks: Blocks) -> np.ndarray | None:
        return self.model_.embedding(blocks)

    def held_out(self) -> np.ndarray | None:
        return self.model_.held_out()

    def inner_predictions(self) -> np.ndarray | None:
        return self.model_.inner_predictions()

    def summary(self) -> dict[str, Any]:
        chosen = self.params.candidates[self.chosen_]
        return {"modalities": list(self.modalities), "chosen": self.chosen_, "chosen_model": chosen.name,
                "candidate_scores": self.scores_, "chosen_summary": self.model_.summary()}

    def save_state(self, folder: Path) -> dict[str, Any]:
        return {"chosen": self.chosen_, "scores": self.scores_, "inner": self.model_.save_state(folder)}

    def load_state(self, state: dict[str, Any], folder: Path) -> None:
        self.chosen_, self.scores_ = int(state["chosen"]), list(state["scores"])
        if not 0 <= self.chosen_ < len(self.params.candidates):
            raise ValueError(f"select: saved choice {self.chosen_} is not one of the "
                             f"{len(self.params.candidates)} candidates")
        self.model_ = self._load_wrapped(self.params.candidates[self.chosen_].build(), state["inner"], folder)


