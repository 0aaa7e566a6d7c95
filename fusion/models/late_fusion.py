"""Calibrated late fusion: one learner per modality, calibrated and stacked on inner-validation
predictions only, with an availability mask so that a missing modality is left out.

For each modality the learner is cross-fitted over the inner folds of the training data (with
early stopping on each inner validation fold), giving out-of-fold probabilities for every
training sample; a calibrator is fitted on those; the learner is then refitted on all the
training data (for as many rounds as the inner folds chose). The fusion layer
(`fusion.models.stacking`) is fitted on the calibrated out-of-fold probabilities: `stack`
(log-linear pooling, a product of experts with learned weights) or `mean` (a learned linear
pool). A subset of modalities gets its own fusion layer, fitted on the same out-of-fold
outputs, so the model predicts for samples lacking a modality without refitting.

The regression head (e.g. the PHQ-8 score) fuses per-modality predictions by non-negative
weights fitted on the out-of-fold predictions, renormalised over the available modalities,
followed by a linear recalibration.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from features.base import Params
from fusion.data.sequences import available
from fusion.models.base import MODELS, Blocks, FusionModel, Inner
from fusion.models.calibration import Calibrator
from fusion.models.learners.base import LearnerSpec, cross_fit, load_learner, save_learner
from fusion.models.stacking import (
    LinearPoolStacker,
    LogLinearStacker,
    RegressionStacker,
    Stacker,
    stack_probs,
    stacker_from_dict,
)
from fusion.models.targets import Targets


class LateFusionParams(Params):
    learner: LearnerSpec = Field(default_factory=LearnerSpec)
    learners: dict[str, LearnerSpec] = Field(default_factory=dict)
    calibration: Literal["temperature", "isotonic", "sigmoid", "none"] = "temperature"
    fusion: Literal["stack", "mean"] = "stack"
    stack_l2: float = Field(1e-2, ge=0)


@MODELS.register("late-fusion")
class LateCalibratedFusion(FusionModel):
    """One calibrated learner per modality and a fusion layer fitted on inner-validation
    predictions; missing modalities are masked out, never zero-filled.

    Args:
        learner: the default per-modality learner ({name, params}).
        learners: per-modality overrides, by modality name.
        calibration: "temperature", "isotonic", "sigmoid" or "none".
        fusion: "stack" (log-linear, learned weights and biases) or "mean" (learned linear pool).
        stack_l2: L2 penalty on the log-linear stacker's class biases.
    """

    Params = LateFusionParams
    tag = "late"
    drops_modalities = True
    needs_inner = True

    def _fit(self, blocks: Blocks, targets: Targets, *, inner: Inner, seed: int, val=None) -> LateCalibratedFusion:
        y, task, n_classes = targets.main
        if not inner:
            raise ValueError("late fusion needs inner folds (cv.inner_splits ≥ 2) to calibrate and stack "
                             "on inner-validation data")
        self._start_fit(blocks, task, n_classes)
        p = self.params
        self.learners_, self.calibrators_, self.oof_, self.raw_oof_ = {}, {}, {}, {}
        self.inner_ = [(np.asarray(a), np.asarray(b)) for a, b in inner]
        y = np.asarray(y)
        for m in self.modalities:
            spec = p.learners.get(m, p.learner)
            try:
                oof, self.learners_[m] = cross_fit(spec, blocks[m], y, inner, task, n_classes, seed)
            except ValueError as err:
                raise ValueError(f"modality {m!r}: {err}") from None
            if task == "classification":
                has = ~np.isnan(oof).any(1)
                # no inner-validation prediction at all (too few samples with this modality to
                # fit one inner fold): nothing to calibrate on, and the fusion layer gives it no weight
                cal = Calibrator(p.calibration if has.any() else "none").fit(oof[has], y[has].astype(int))
                self.calibrators_[m] = cal
                self.raw_oof_[m] = oof
                out = np.full_like(oof, np.nan)
                out[has] = cal.transform(oof[has])
                self.oof_[m] = out
            else:
                self.oof_[m] = oof
        self.y_fit_ = y
        self._stackers: dict[tuple[str, ...], Stacker] = {}
        self.fitted_ = True
        return self

    def held_out(self) -> np.ndarray | None:
        """The training samples' fused predictions, each by calibrators and a fusion layer
        fitted without the sample's inner fold on the learners' inner out-of-fold outputs (which
        are themselves held out): the model's own cross-fitted predictions, for conformal
        thresholds. NaN for samples no inner fold predicted."""
        self.check_fitted()
        if not getattr(self, "inner_", None):
            return None
        n, y = len(self.y_fit_), self.y_fit_
        classes = self.task == "classification"
        out = np.full((n, self.n_classes), np.nan) if classes else np.full(n, np.nan)
        for _, va in self.inner_:
            fit = np.setdiff1d(np.arange(n), va)
            inputs_fit, inputs_va = [], []
            for m in self.modalities:
                if not classes:
                    inputs_fit.append(self.oof_[m][fit])
                    inputs_va.append(self.oof_[m][va])
                    continue
                raw = self.raw_oof_[m]
                has_fit, has_va = ~np.isnan(raw[fit]).any(1), ~np.isnan(raw[va]).any(1)
                cal = Calibrator(self.params.calibration if has_fit.any() else "none")
                if has_fit.any():
                    cal.fit(raw[fit][has_fit], y[fit][has_fit].astype(int))
                part_fit, part_va = np.full_like(raw[fit], np.nan), np.full_like(raw[va], np.nan)
                part_fit[has_fit] = cal.transform(raw[fit][has_fit]) if has_fit.any() else np.nan
                if has_fit.any() and has_va.any():
                    part_va[has_va] = cal.transform(raw[va][has_va])
                inputs_fit.append(part_fit)
                inputs_va.append(part_va)
            present = np.column_stack([~np.isnan(np.atleast_2d(v.T).T).any(1) for v in inputs_va]).any(1)
            if present.any():
                st = self._fit_stacker(inputs_fit, y[fit])
                rows = va[present]
                pieces = [v[present] for v in inputs_va]
                out[rows] = st.predict_proba(pieces) if classes else st.predict(pieces)
        return out

    def baselines(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Early fusion of the same learner and calibration: what late fusion must beat."""
        return {"early": ("early-fusion", {"learner": self.params.learner.model_dump(),
                                           "calibration": self.params.calibration})}

    def stacker(self, modalities: Sequence[str]) -> Stacker:
        """The fusion layer for a subset of modalities, fitted on the stored inner-OOF outputs."""
        key = tuple(self._selected(modalities))
        if key not in self._stackers:
            self._stackers[key] = self._fit_stacker([self.oof_[m] for m in key], self.y_fit_)
        return self._stackers[key]

    def _fit_stacker(self, inputs: list[np.ndarray], y: np.ndarray) -> Stacker:
        """The fusion layer fitted on per-modality held-out outputs (NaN rows: missing)."""
        if self.task == "regression":
            st = RegressionStacker().fit(inputs, y)
        elif self.params.fusion == "stack":
            st = LogLinearStacker(self.params.stack_l2).fit(inputs, y)
        else:
            st = LinearPoolStacker().fit(inputs, y)
        unseen = [j for j, v in enumerate(inputs) if not np.isfinite(v).any()]
        if unseen and len(unseen) < len(inputs):  # no held-out evidence of how to weigh them: weight 0
            st.weights_ = st.weights_.copy()
            st.weights_[unseen] = 0.0
            if isinstance(st, LinearPoolStacker):
                st.weights_ = st.weights_ / st.weights_.sum()
        return st

    def modality_outputs(self, blocks: Blocks, calibrated: bool = True,
                         modalities: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Per-modality (calibrated) probabilities or predictions; NaN rows where missing."""
        self.check_fitted()
        out = {}
        for m in self._selected(modalities):
            X = blocks[m]
            avail = available(X)
            learner = self.learners_[m]
            if self.task == "classification":
                res = np.full((len(X), self.n_classes), np.nan)
                if avail.any():
                    raw = learner.predict_proba(X[avail])
                    res[avail] = self.calibrators_[m].transform(raw) if calibrated else raw
            else:
                res = np.full(len(X), np.nan)
                if avail.any():
                    res[avail] = learner.predict(X[avail])
            out[m] = res
        return out

    def predict_proba(self, blocks: Blocks, modalities: Sequence[str] | None = None) -> np.ndarray:
        outs = self.modality_outputs(blocks, modalities=modalities)
        return self.stacker(list(outs)).predict_proba(list(outs.values()))

    def predict_score(self, blocks: Blocks, modalities: Sequence[str] | None = None) -> np.ndarray:
        outs = self.modality_outputs(blocks, modalities=modalities)
        return self.stacker(list(outs)).predict(list(outs.values()))

    def bootstrap_predictions(self, blocks: Blocks, n_draws: int = 200, seed: int = 0) -> np.ndarray:
        """The fusion layer refitted on `n_draws` bootstrap resamples of the stored inner
        out-of-fold outputs (the per-modality learners and calibrators kept as fitted): the
        uncertainty of how the modalities are weighted and combined, for each sample's own
        subset of available modalities. (n_draws, n, k) probabilities or (n_draws, n) scores."""
        outs = self.modality_outputs(blocks)
        avail = np.column_stack([~np.isnan(np.atleast_2d(o.T).T).any(1) for o in outs.values()])
        rng = np.random.default_rng(seed)
        draws = [rng.integers(0, len(self.y_fit_), len(self.y_fit_)) for _ in range(n_draws)]
        shape = (n_draws, len(avail), self.n_classes) if self.task == "classification" else (n_draws, len(avail))
        res = np.full(shape, np.nan)
        for pattern in {tuple(row) for row in avail if row.any()}:
            rows = np.flatnonzero((avail == pattern).all(1))
            mods = [m for m, keep in zip(self.modalities, pattern, strict=True) if keep]
            inputs = [outs[m][rows] for m in mods]
            for b, idx in enumerate(draws):
                oof = [self.oof_[m][idx] for m in mods]
                if self.task == "regression":
                    res[b, rows] = RegressionStacker().fit(oof, self.y_fit_[idx]).predict(inputs)
                    continue
                if self.params.fusion == "stack":
                    st = LogLinearStacker(self.params.stack_l2).fit(oof, self.y_fit_[idx], start=self.stacker(mods))
                else:
                    st = LinearPoolStacker().fit(oof, self.y_fit_[idx])
                res[b, rows] = st.predict_proba(inputs)
        return res

    def uncalibrated_proba(self, blocks: Blocks) -> np.ndarray:
        """Equal-weight mean of the raw (uncalibrated) per-modality probabilities."""
        P, mask = stack_probs(list(self.modality_outputs(blocks, calibrated=False).values()))
        return np.einsum("nmk,nm->nk", P, mask) / np.clip(mask.sum(1, keepdims=True), 1, None)

    def decision_parts(self, blocks: Blocks) -> dict[str, tuple[np.ndarray | None, np.ndarray]]:
        """Per modality: its features' contributions to the fused logit of each class (n,
        features, classes; None without an exact split) and its own contribution (n, classes),
        both relative to the average training sample (`fusion.models.attribution`); NaN rows
        where the modality is missing. The features of a modality add up to its contribution."""
        from fusion.models.attribution import decision_attributions, reference_total

        outs = self.modality_outputs(blocks)
        st = self.stacker(self.modalities)
        _, mask = stack_probs([outs[m] for m in self.modalities])
        parts: dict[str, tuple[np.ndarray | None, np.ndarray]] = {}
        for j, m in enumerate(self.modalities):
            X = blocks[m]
            avail = available(X)
            total = np.full((len(X), self.n_classes), np.nan)
            features = None
            if avail.any():
                def score(P, _j=j, _mask=mask[avail], _cal=self.calibrators_[m]):
                    return st.term(_j, _cal.transform(P), _mask)

                got = decision_attributions(self.learners_[m], X[avail], score)
                if got is not None:
                    features = np.full((len(X), X.shape[1], self.n_classes), np.nan)
                    features[avail], total[avail] = got
                else:
                    diff = reference_total(self.learners_[m], X[avail], score)
                    if diff is not None:
                        total[avail] = diff
            parts[m] = (features, total)
        return parts

    def modality_contributions(self, blocks: Blocks) -> np.ndarray:
        """(n, modalities) each modality's contribution to the fused logit of the predicted
        class, relative to the average training sample (NaN where it is missing); equal to the
        sum of its features' contributions (`feature_contributions`)."""
        pred = self.predict_proba(blocks).argmax(1)
        parts = self.decision_parts(blocks)
        return np.column_stack([parts[m][1][np.arange(len(pred)), pred] for m in self.modalities])

    def feature_contributions(self, blocks: Blocks) -> dict[str, np.ndarray | None]:
        """Per modality, (n, features, classes) contributions to the fused logit of each class
        (None when its learner has no exact split)."""
        return {m: f for m, (f, _) in self.decision_parts(blocks).items()}

    def summary(self) -> dict[str, Any]:
        """Fitted calibration and fusion parameters (for tracking)."""
        st = self.stacker(self.modalities)
        d: dict[str, Any] = {"modalities": self.modalities}
        if self.task == "classification":
            d["calibration"] = {m: c.to_dict() for m, c in self.calibrators_.items()}
        d["fusion_weights"] = dict(zip(self.modalities, map(float, st.weights_), strict=True))
        chosen = {m: lr.chosen_ for m, lr in self.learners_.items() if getattr(lr, "chosen_", None)}
        if chosen:
            d["learner_chosen"] = chosen
        return d

    def save_state(self, folder: Path) -> dict[str, Any]:
        # The inner out-of-fold outputs are kept so that a loaded model fits the fusion layer of
        # any modality subset exactly as the original does.
        return {"learners": {m: save_learner(lr, folder / f"learner_{m}") for m, lr in self.learners_.items()},
                "calibrators": {m: c.to_dict() for m, c in self.calibrators_.items()},
                "stacker": self.stacker(self.modalities).to_dict(),
                "oof": {m: np.where(np.isnan(v), None, v).tolist() for m, v in self.oof_.items()},
                "y_fit": self.y_fit_.tolist()}

    def load_state(self, state: dict[str, Any], folder: Path) -> None:
        self.learners_ = {m: load_learner(info, folder / f"learner_{m}") for m, info in state["learners"].items()}
        self.calibrators_ = {m: Calibrator.from_dict(d) for m, d in state["calibrators"].items()}
        self.oof_ = {m: np.array(v, dtype=float) for m, v in state["oof"].items()}
        self.y_fit_ = np.array(state["y_fit"])
        self._stackers = {tuple(self.modalities): stacker_from_dict(state["stacker"])}
