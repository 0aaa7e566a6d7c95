"""Gradient-boosted trees (XGBoost), with early stopping on a validation set when given."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from features.base import Params
from fusion.models.learners.base import LEARNERS, Learner, balanced_weights
from fusion.persist import model_file


class XGBParams(Params):
    n_estimators: int = Field(400, ge=1)
    learning_rate: float = Field(0.05, gt=0)
    max_depth: int = Field(3, ge=1)
    min_child_weight: float = Field(1.0, ge=0)
    subsample: float = Field(0.8, gt=0, le=1)
    colsample_bytree: float = Field(0.5, gt=0, le=1)
    reg_lambda: float = Field(1.0, ge=0)
    early_stopping_rounds: int = Field(30, ge=1)
    class_weight: str | None = "balanced"
    n_jobs: int = 2
    device: str = "auto"


def _device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def fit_all_classes(model, X: np.ndarray, y: np.ndarray, n_classes: int, fit_kw: dict) -> None:
    """Fit an XGBClassifier so that it knows all `n_classes` labels even if a training fold
    lacks some: each absent class gets one zero-weight copy of a row, which changes nothing
    the model learns but keeps its output columns aligned with the class indices."""
    missing = sorted(set(range(n_classes)) - set(np.unique(y).astype(int)))
    if missing:
        X = np.vstack([X, np.repeat(X[:1], len(missing), axis=0)])
        y = np.concatenate([y, missing])
        w = fit_kw.get("sample_weight")
        w = np.ones(len(y) - len(missing)) if w is None else w
        fit_kw = {**fit_kw, "sample_weight": np.concatenate([w, np.zeros(len(missing))])}
    model.fit(X, y, verbose=False, **fit_kw)


def _report_rounds():
    """An XGBoost callback passing each round's validation loss to a watcher (a sweep's pruner)."""
    import xgboost as xgb

    from fusion.evaluation.progress import report_progress

    class ReportRounds(xgb.callback.TrainingCallback):
        def after_iteration(self, model, epoch, evals_log) -> bool:
            if evals_log:
                history = next(iter(next(iter(evals_log.values())).values()))
                report_progress(float(history[-1] if not isinstance(history[-1], tuple) else history[-1][0]), epoch)
            return False

    return ReportRounds()


@LEARNERS.register("xgboost")
class XGBLearner(Learner):
    """XGBoost (hist) classifier or regressor; early stopping on `eval_set` when one is given,
    otherwise `n_iter` rounds (or `n_estimators`). GPU when present (`device: auto`)."""

    Params = XGBParams

    def fit(self, X, y, *, task="classification", n_classes=2, seed=0, eval_set=None, n_iter=None):
        import xgboost as xgb

        p = self.params
        self.task, self.n_classes = task, n_classes
        common = dict(n_estimators=n_iter or p.n_estimators, learning_rate=p.learning_rate,
                      max_depth=p.max_depth, min_child_weight=p.min_child_weight, subsample=p.subsample,
                      colsample_bytree=p.colsample_bytree, reg_lambda=p.reg_lambda, tree_method="hist",
                      random_state=seed, n_jobs=p.n_jobs, device=_device(p.device),
                      early_stopping_rounds=p.early_stopping_rounds if eval_set is not None else None)
        if eval_set is not None:
            from fusion.evaluation.progress import watching

            if watching():
                common["callbacks"] = [_report_rounds()]
        if task == "classification":
            obj = dict(objective="multi:softprob", num_class=n_classes) if n_classes > 2 else dict(
                objective="binary:logistic")
            self.model_ = xgb.XGBClassifier(**common, **obj, eval_metric="mlogloss" if n_classes > 2 else "logloss")
            weights = balanced_weights(y) if p.class_weight == "balanced" else None
            fit_kw = {"sample_weight": weights}
            if eval_set is not None:
                fit_kw["eval_set"] = [eval_set]
                if weights is not None:
                    fit_kw["sample_weight_eval_set"] = [balanced_weights(eval_set[1])]
            fit_all_classes(self.model_, X, y, n_classes, fit_kw)
        else:
            self.model_ = xgb.XGBRegressor(**common, objective="reg:squarederror")
            self.model_.fit(X, y, eval_set=[eval_set] if eval_set is not None else None, verbose=False)
        best = getattr(self.model_, "best_iteration", None)
        self.n_iter_ = int(best) + 1 if eval_set is not None and best is not None else common["n_estimators"]
        self.fitted_ = True
        return self

    def save(self, prefix):
        path = prefix.with_suffix(".xgb.json")
        self.model_.save_model(path)
        return {"task": self.task, "n_classes": self.n_classes, "params": self.params.model_dump(),
                "n_iter": self.n_iter_, "file": path.name}

    @classmethod
    def load(cls, info, prefix):
        import xgboost as xgb

        self = cls(**info["params"])
        self.task, self.n_classes, self.n_iter_ = info["task"], info["n_classes"], info["n_iter"]
        self.model_ = xgb.XGBClassifier() if self.task == "classification" else xgb.XGBRegressor()
        self.model_.load_model(model_file(prefix.parent, info["file"]))
        self.fitted_ = True
        return self

    def predict_proba(self, X):
        self.check_fitted()
        proba = self.model_.predict_proba(X)
        return proba if proba.shape[1] == self.n_classes else np.column_stack([1 - proba[:, 0], proba[:, 0]])

    def predict(self, X):
        self.check_fitted()
        return self.model_.predict(X)

    def margin_parts(self, X):
        """TreeSHAP (XGBoost's own `pred_contribs`): the expected margin and each feature's
        share of the difference, per class margin (one margin for a binary target)."""
        import xgboost as xgb

        if self.task != "classification":
            return None
        self.check_fitted()
        contrib = self.model_.get_booster().predict(xgb.DMatrix(X), pred_contribs=True,
                                                    iteration_range=(0, self.n_iter_ or 0))
        if contrib.ndim == 2:
            contrib = contrib[:, None, :]
        parts = np.transpose(contrib[:, :, :-1], (0, 2, 1))  # (n, margins, f) → (n, f, margins)
        reference = contrib[:, :, -1]
        return reference + parts.sum(1), reference, parts

    def proba_from_margin(self, margin):
        from fusion.models.calibration import softmax

        if margin.shape[1] == 1:
            p1 = 1 / (1 + np.exp(-margin[:, 0]))
            return np.column_stack([1 - p1, p1])
        return softmax(margin)

    def reference_input(self):
        return None
