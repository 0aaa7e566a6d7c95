"""Stacking whole models: members of any registered kind, each over its own modalities, fused
by a layer fitted on their predictions of training samples they were not fitted on.

    modalities:
      tokens: [{features: tokens_context}]          # token ids, for a fine-tuned encoder
      dialogue: [{features: text, dialogue: 10}]    # the utterance's dialogue as turns
      text: [{features: text}]                      # the utterance's own embedding
    model:
      name: ensemble
      params:
        fusion: log-linear
        members:
          - {model: {name: early-fusion, params: {...}}, modalities: [text]}
          - {model: {name: dialogue-context, params: {...}}, modalities: [dialogue]}
          - {model: {name: text-finetune, params: {...}}, modalities: [tokens]}

Each member is fitted on all the training data with all the inner folds, as it would be alone.
Its predictions of training samples that it was not fitted on (`inner_predictions`: a linear
model's cross-fitted inner out-of-fold outputs; a network's inner-validation predictions, made by
the network early-stopped on them) are the fusion layer's inputs: the layer
(`fusion.models.stacking`: `log-linear` — non-negative weights on the members' log
probabilities and class biases —, or `linear-pool`; for a score, non-negative weights on the
members' scores and a linear recalibration) is fitted on the training samples that every member
predicted so. No member costs more than it does alone, and the layer never sees a test sample.

The layer's own inner figure: it is cross-fitted over 5 parts of those samples, and the
ensemble's and every member's weighted F1 / UAR / accuracy on them are in the summary
(`inner_validation`), so members and fusions are compared without the test split.

A member left out of `predict_proba(blocks, modalities)` (none of its modalities kept) adds no
evidence; one with some of them kept predicts from those.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from features.base import Params
from fusion.models.base import MODELS, Blocks, FusionModel, Inner
from fusion.models.neural import inner_scores
from fusion.models.pooled import ModelRef
from fusion.models.stacking import RegressionStacker, stacker_from_dict
from fusion.models.targets import Targets

#: parts of the stacking rows over which the fusion layer is cross-fitted for its inner figure
LAYER_FOLDS = 5


class Member(Params):
    """One member: a registered model and the modalities it reads (all of them when None)."""

    model: ModelRef
    modalities: list[str] | None = Field(None, min_length=1)


class EnsembleParams(Params):
    members: list[Member] = Field(
        default_factory=lambda: [Member(model=ModelRef(name="pooled", params={"model": {"name": name}}))
                                 for name in ("late-fusion", "early-fusion")], min_length=2)
    fusion: Literal["log-linear", "linear-pool"] = "log-linear"
    l2: float = Field(1e-2, ge=0)


@MODELS.register("ensemble")
class Ensemble(FusionModel):
    """Members' predictions fused by a layer fitted on their inner predictions (module docstring).

    Args:
        members: [{model: {name, params}, modalities: [...]}] (at least two; by default late and
            early fusion, sequences pooled by their mean and sd).
        fusion: the layer over the members' class probabilities: log-linear or linear-pool
            (a score target uses the regression layer).
        l2: the log-linear layer's penalty on its class biases.
    """

    Params = EnsembleParams
    tag = "ensemble"
    needs_inner = True
    drops_modalities = True
    heads = frozenset({"classes", "ordinal", "score"})
    inputs = frozenset({"pooled", "sequence", "tokens"})

    def _member_modalities(self, i: int) -> list[str]:
        mods = self.params.members[i].modalities
        return list(self.modalities) if mods is None else list(mods)

    def _fit(self, blocks: Blocks, targets: Targets, *, inner: Inner, seed: int, val=None) -> Ensemble:
        y, task, n_classes = targets.main
        if not inner:
            raise ValueError("ensemble fits its fusion layer on the members' inner predictions: it needs inner "
                             "folds (cv.inner_splits ≥ 2)")
        self._start_fit(blocks, task, n_classes)
        classify = task == "classification"
        y = np.asarray(y).astype(int) if classify else np.asarray(y, dtype=float)
        for i, member in enumerate(self.params.members):
            unknown = [m for m in (member.modalities or []) if m not in blocks]
            if unknown:
                raise ValueError(f"ensemble: member {i} ({member.model.name}) reads modality(ies) {unknown}, which "
                                 f"the configuration does not give (modalities: {list(blocks)})")
        read = {m for i in range(len(self.params.members)) for m in self._member_modalities(i)}
        unread = [m for m in blocks if m not in read]
        if unread:
            raise ValueError(f"ensemble: modality(ies) {unread} are read by no member (give them to a member's "
                             "`modalities`, or leave them out of the configuration's modalities)")
        self.members_: list[FusionModel] = []
        held = []
        for i, member in enumerate(self.params.members):
            mods = self._member_modalities(i)
            model = member.model.build().fit({m: blocks[m] for m in mods}, targets, inner=inner, seed=seed)
            out = model.inner_predictions()
            if out is None:
                raise ValueError(f"ensemble: member {i} ({member.model.name}) keeps no predictions of training "
                                 "samples it was not fitted on, so no fusion layer can be fitted on it")
            out = np.asarray(out, float).reshape(len(y), -1)
            self.members_.append(model)
            held.append(out)
        rows = np.flatnonzero(np.all([~np.isnan(h).any(1) for h in held], axis=0))
        if len(rows) < 2 * LAYER_FOLDS:
            raise ValueError(f"ensemble: only {len(rows)} training samples have inner predictions of every member; "
                             "the fusion layer needs at least 10 (give the members common inner folds)")
        inputs = [h[rows] if classify else h[rows, 0] for h in held]
        self.layer_ = self._layer().fit(inputs, y[rows])
        self.rows_, self.y_rows_ = rows, y[rows]
        self.crossfit_ = self._crossfit(inputs, y[rows], seed)
        self.strict_ = all(m.held_out() is not None for m in self.members_)
        self.inner_scores_ = None
        if classify:
            self.inner_scores_ = {"ensemble": inner_scores(y[rows], self.crossfit_, n_classes),
                                  "members": [inner_scores(y[rows], h, n_classes) for h in inputs]}
        self.n_fit_ = len(y)
        self.fitted_ = True
        return self

    def _layer(self):
        if self.task != "classification":
            return RegressionStacker()
        from fusion.models.stacking import STACKERS

        cls = STACKERS.get(self.params.fusion)
        return cls(l2=self.params.l2) if self.params.fusion == "log-linear" else cls()

    def _crossfit(self, inputs: list[np.ndarray], y: np.ndarray, seed: int) -> np.ndarray:
        """The layer's predictions of its own rows, each by a layer fitted without its part."""
        n = len(y)
        parts = np.random.default_rng(seed).permutation(n) % LAYER_FOLDS
        out = np.full((n, self.n_classes) if self.task == "classification" else n, np.nan)
        for k in range(LAYER_FOLDS):
            te, tr = parts == k, parts != k
            layer = self._layer().fit([x[tr] for x in inputs], y[tr])
            part = [x[te] for x in inputs]
            out[te] = layer.predict_proba(part) if self.task == "classification" else layer.predict(part)
        return out

    # --- prediction ----------------------------------------------------------------------------
    def _member_outputs(self, blocks: Blocks, modalities: Sequence[str] | None) -> list[np.ndarray]:
        keep = self._selected(modalities)
        n = len(blocks[self.modalities[0]])
        outs = []
        for i, model in enumerate(self.members_):
            mods = self._member_modalities(i)
            kept = [m for m in mods if m in keep]
            if not kept:  # the member is left out: no evidence
                outs.append(np.full((n, self.n_classes) if self.task == "classification" else n, np.nan))
                continue
            sub = {m: blocks[m] for m in mods}
            subset = None if len(kept) == len(mods) else kept
            outs.append(model.predict_proba(sub, subset) if self.task == "classification"
                        else model.predict_score(sub, subset))
        return outs

    def predict_proba(self, blocks: Blocks, modalities: Sequence[str] | None = None) -> np.ndarray:
        self.check_fitted()
        return self.layer_.predict_proba(self._member_outputs(blocks, modalities))

    def predict_score(self, blocks: Blocks, modalities: Sequence[str] | None = None) -> np.ndarray:
        self.check_fitted()
        return self.layer_.predict(self._member_outputs(blocks, modalities))

    def _on_training_rows(self) -> np.ndarray:
        shape = (self.n_fit_, self.n_classes) if self.task == "classification" else self.n_fit_
        out = np.full(shape, np.nan)
        out[self.rows_] = self.crossfit_
        return out

    def inner_predictions(self) -> np.ndarray | None:
        self.check_fitted()
        return self._on_training_rows() if hasattr(self, "crossfit_") else None

    def held_out(self) -> np.ndarray | None:
        """The cross-fitted layer's predictions of its rows when every member's inputs there were
        held out in the strict sense (no member early-stopped or calibrated on them); else None."""
        self.check_fitted()
        return self._on_training_rows() if getattr(self, "strict_", False) else None

    def summary(self) -> dict[str, Any]:
        d: dict[str, Any] = {"modalities": list(self.modalities), "layer": self.layer_.to_dict(),
                             "members": [{"name": m.name, "modalities": self._member_modalities(i),
                                          "summary": self.members_[i].summary()}
                                         for i, m in enumerate(p.model for p in self.params.members)]}
        if getattr(self, "inner_scores_", None):
            d["inner_validation"] = {**self.inner_scores_, "n": int(len(self.rows_))}
        return d

    # --- persistence: each member in a folder of its own ------------------------------------------
    def save_state(self, folder: Path) -> dict[str, Any]:
        states = []
        for i, model in enumerate(self.members_):
            sub = Path(folder) / f"member{i}"
            sub.mkdir(parents=True, exist_ok=True)
            states.append(model.save_state(sub))
        return {"members": states, "layer": self.layer_.to_dict()}

    def load_state(self, state: dict[str, Any], folder: Path) -> None:
        if len(state["members"]) != len(self.params.members):
            raise ValueError(f"ensemble: the saved state has {len(state['members'])} members, the parameters "
                             f"{len(self.params.members)}")
        self.members_ = [self._load_wrapped(member.model.build(), st, Path(folder) / f"member{i}",
                                            self._member_modalities(i))
                         for i, (member, st) in enumerate(zip(self.params.members, state["members"], strict=True))]
        self.layer_ = stacker_from_dict(state["layer"])
