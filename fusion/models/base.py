"""The contract every fusion model keeps, and the registry of fusion models.

A fusion model maps modality blocks — pooled (n, d) arrays or `SequenceBlock`s of
(n, T, d) segments — to predictions. Cross-validation, ablation, robustness, attributions and
persistence use a model only through this contract: they never branch on a model's name nor
read another model's parameters. Each model validates its own parameters on construction.

Missing data: a sample without a modality has an all-NaN row (pooled) or no present segment
(sequence), and the model decides what that means (a mask, never a silent zero). In
`predict_proba(blocks, modalities)` the modalities left out of `modalities` play no part. A
model whose `drops_modalities` is True predicts from any subset without refitting what it
learned per modality (late fusion refits only its fusion layer on its stored inner
predictions; the neural models mask), so the evaluator scores modality subsets by prediction;
other models (early fusion imputes the left-out features) are refitted on each subset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from features.base import Params, validate_params
from features.registry import Registry
from fusion.data.sequences import Block
from fusion.models.targets import Targets, Task

MODELS: Registry[type] = Registry("model", package="fusion.models")
Blocks = Mapping[str, Block]
Inner = Sequence[tuple[np.ndarray, np.ndarray]]


class FusionModel:
    """Base class of every registered fusion model.

    Class attributes a model sets:
        Params: its parameter model (unknown parameters are errors).
        tag: the short name of its ablation variants ("late", "early", …).
        drops_modalities: True when `predict_proba(blocks, modalities)` on a subset is a model of
            that subset (no refit needed for the ablation).
        inputs: the block kinds it takes: "pooled" (n, d) and/or "sequence" (n, T, d), or
            "tokens" (one (n, L) block of token ids, NaN past the text's end).
        needs_inner: True when it cannot be fitted without inner folds (calibration,
            stacking or early stopping on inner-validation data).
        heads: the kinds of target it can be fitted on as its main output
            (`fusion.models.targets`): "classes" (and "ordinal") and "score" for the
            single-label models, "multilabel" with "continuous" and "distribution" for the
            multi-label ones; targets of another kind are refused, naming them.
        auxiliary: the auxiliary heads it trains jointly with the classes when the targets
            carry them: "score" (the target's score, e.g. PHQ-8; NaN where unknown) and "binary"
            (0/1, the target's positive classes). A model that takes "score" predicts it with
            `predict_score` after a classification fit, so the evaluator does not fit a separate
            regression model.
    """

    Params: ClassVar[type[Params]] = Params
    tag: ClassVar[str] = "model"
    drops_modalities: ClassVar[bool] = False
    inputs: ClassVar[frozenset[str]] = frozenset({"pooled"})
    needs_inner: ClassVar[bool] = False
    heads: ClassVar[frozenset[str]] = frozenset({"classes", "ordinal", "score"})
    auxiliary: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, **params: Any) -> None:
        self.params = validate_params(type(self).__name__, self.Params, params)

    # --- the contract ------------------------------------------------------------------------
    def fit(self, blocks: Blocks, targets: Targets, *, inner: Inner = (), seed: int = 0,
            val: tuple[Blocks, Targets] | None = None) -> FusionModel:
        """Fit on `blocks` (modality → block) and `targets` (`fusion.models.targets.Targets`:
        class indices, a score, or multi-label heads). `inner` are (train, validation) index
        pairs into these rows for whatever the model fits on held-out data (calibration,
        stacking, early stopping); `val` a separate validation set (blocks and targets) for a
        protocol that has one (an official split's).

        Raises:
            ValueError: targets of a kind the model does not train (its `heads`), or data the
                model cannot be fitted on, naming what.
        """
        kinds = {h.kind for h in targets.heads[:1]}
        wrong = kinds - set(self.heads)
        if wrong:
            raise ValueError(f"{type(self).__name__} trains {', '.join(sorted(self.heads))} heads, not "
                             f"{', '.join(sorted(wrong))}")
        return self._fit(blocks, targets, inner=inner, seed=seed, val=val)

    def _fit(self, blocks: Blocks, targets: Targets, *, inner: Inner, seed: int,
             val: tuple[Blocks, Targets] | None) -> FusionModel:
        """The model's own fitting (`fit` has checked the targets' kinds)."""
        raise NotImplementedError

    def predict_proba(self, blocks: Blocks, modalities: Sequence[str] | None = None) -> np.ndarray:
        """(n, n_classes) probabilities; modalities not in `modalities` are treated as missing."""
        raise NotImplementedError

    def predict(self, blocks: Blocks, modalities: Sequence[str] | None = None) -> np.ndarray:
        """Class indices (classification: the most probable class, or the class its decision
        rule names, `fit_decision`) or scores (regression)."""
        self.check_fitted()
        if self.task == "classification":
            from fusion.evaluation.decision import decide

            return decide(self.predict_proba(blocks, modalities), self.decision_offsets())
        return self.predict_score(blocks, modalities)

    # --- the decision rule (`fusion.evaluation.decision`) ----------------------------------------
    def fit_decision(self, y: np.ndarray, rule: str) -> dict[str, float]:
        """Fit the decision rule `rule` (a metric to maximise: `f1_weighted`, `f1_macro`,
        `uar`; `argmax` for the most probable class) on this fitted classifier's
        `inner_predictions` of its training samples, whose classes are `y`; return what was
        measured there (the metric before and after, and the number of samples).

        Raises:
            ValueError: the model keeps no predictions of training samples it was not fitted on,
                or too few of them.
        """
        from fusion.evaluation.decision import fit_offsets

        self.check_fitted()
        if rule == "argmax":
            self.decision_ = None
            return {}
        inner = self.inner_predictions()
        if inner is None:
            raise ValueError(f"decision rule {rule}: {type(self).__name__} keeps no predictions of training samples "
                             "it was not fitted on (give it inner folds: cv.inner_splits ≥ 2), so no rule can be "
                             "fitted without scoring it on the samples it chose on")
        offsets, measured = fit_offsets(y, np.asarray(inner, float).reshape(len(y), -1), rule)
        self.decision_ = {"rule": rule, "offsets": [float(v) for v in offsets], **measured}
        return measured

    def decision_offsets(self) -> np.ndarray | None:
        """The decision rule's per-class log-probability offsets, or None (the most probable class)."""
        d = getattr(self, "decision_", None)
        return np.asarray(d["offsets"], float) if d else None

    def predict_score(self, blocks: Blocks, modalities: Sequence[str] | None = None) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} has no regression head")

    # --- optional ----------------------------------------------------------------------------
    def uncalibrated_proba(self, blocks: Blocks) -> np.ndarray | None:
        """The model's probabilities before calibration, when it calibrates (None otherwise)."""
        return None

    def modality_contributions(self, blocks: Blocks) -> np.ndarray | None:
        """(n, modalities) each modality's share of the predicted class's margin, or None."""
        return None

    def feature_contributions(self, blocks: Blocks) -> dict[str, np.ndarray | None]:
        """Per modality, exact (n, features, classes) contributions, or None for a modality
        without exact attributions (the evaluator then uses permutation importance)."""
        return dict.fromkeys(self.modalities)

    def turn_contributions(self, blocks: Blocks) -> dict[str, np.ndarray] | None:
        """Per modality, (n, T) each segment's (turn's) attribution to the predicted class's
        logit ((n,) for a pooled modality), for a sequence model; None otherwise."""
        return None

    def bootstrap_predictions(self, blocks: Blocks, n_draws: int = 200, seed: int = 0) -> np.ndarray | None:
        """(n_draws, n, n_classes) probabilities, or (n_draws, n) scores for a regression
        model, of the model refitted on bootstrap resamples of what it fitted its last stage
        on (its uncertainty for these samples), or None when the model cannot resample."""
        return None

    def embedding(self, blocks: Blocks) -> np.ndarray | None:
        """(n, width) the representation the model's output layer reads (a network's
        penultimate layer), or None for a model without one (a linear learner)."""
        return None

    def window_proba(self, blocks: Blocks) -> np.ndarray | None:
        """(n, T, n_classes) probabilities of each window (segment) of each sample, NaN for
        windows the sample lacks, for a model that predicts windows; None otherwise."""
        return None

    def held_out(self) -> np.ndarray | None:
        """The training samples' own predictions from models that did not see them — (n_train,
        n_classes) probabilities, or (n_train,) scores for a regression model, NaN where there is
        none — for conformal thresholds (`fusion.evaluation.conformal`); None for a model that
        keeps no such predictions (the evaluator then calibrates the sets on a held-out fold)."""
        return None

    def inner_predictions(self) -> np.ndarray | None:
        """Predictions of training samples by models not fitted on them, in the shape of
        `held_out` (NaN where there is none), for a fusion layer over whole models
        (`fusion.models.ensemble`). Looser than `held_out`: a network's inner-validation
        predictions count, though it was early-stopped and calibrated on them. By default the
        model's `held_out`."""
        return self.held_out()

    def scores_jointly(self) -> bool:
        """True when this fitted classification model predicts the target's score with
        `predict_score` from a head trained jointly (no separate regression model is needed)."""
        return False

    def baselines(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Other registered models this one is compared with in the ablation: variant tag →
        (model name, params)."""
        return {}

    def summary(self) -> dict[str, Any]:
        """Fitted quantities worth tracking (JSON-able)."""
        return {"modalities": list(self.modalities)}

    # --- persistence (see `fusion.persist`) ------------------------------------------------------
    def save_state(self, folder: Path) -> dict[str, Any]:
        """Write the fitted state's files into `folder`; return the JSON part of the state."""
        raise NotImplementedError

    def load_state(self, state: dict[str, Any], folder: Path) -> None:
        """Restore what `save_state` wrote (opening files only through `fusion.persist.model_file`)."""
        raise NotImplementedError

    # --- helpers -----------------------------------------------------------------------------
    def _load_wrapped(self, model: FusionModel, state: dict[str, Any], folder: Path,
                      modalities: Sequence[str] | None = None) -> FusionModel:
        """Restore `model`, a model this one wraps (a selection's choice, an ensemble's member),
        from its saved `state`: this model's task and classes, `modalities` (by default this
        model's) and their columns."""
        model.task, model.n_classes = self.task, self.n_classes
        model.modalities = list(self.modalities if modalities is None else modalities)
        model.columns = {m: c for m, c in getattr(self, "columns", {}).items() if m in model.modalities}
        model.load_state(state, folder)
        model.fitted_ = True
        return model

    def _start_fit(self, blocks: Blocks, task: Task, n_classes: int) -> None:
        if task not in ("classification", "regression", "multilabel"):
            raise ValueError(f"task must be 'classification', 'regression' or 'multilabel', got {task!r}")
        if not blocks:
            raise ValueError(f"{type(self).__name__}.fit needs at least one modality block")
        self.task, self.n_classes, self.modalities = task, n_classes, list(blocks)

    def _selected(self, modalities: Sequence[str] | None) -> list[str]:
        """The model's modalities that `modalities` keeps (all when None), checked."""
        if modalities is None:
            return list(self.modalities)
        unknown = [m for m in modalities if m not in self.modalities]
        if unknown:
            raise ValueError(f"unknown modality(ies) {unknown}; the model was fitted on {self.modalities}")
        return [m for m in self.modalities if m in modalities]

    def check_fitted(self) -> None:
        if not getattr(self, "fitted_", False):
            raise RuntimeError(f"{type(self).__name__} is not fitted yet; call fit() first")
