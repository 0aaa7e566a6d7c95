"""Context model for emotions of people in context (EMOTIC): per-stream layers over cached image
embeddings (body crop, whole image, face crop), fused by concatenation or attention over the
streams present, with a multi-label category head and a valence / arousal / dominance head
trained jointly (Kosti et al.: dynamically weighted categories, margin-L2 for VAD; or BCE and
smooth L1), and optionally a head of VAD-mixture soft labels (a distribution over emotions,
`fusion.datasets.vad_mixture`; soft-target cross-entropy). Early stopping on the given
validation data only; features standardised with the
training rows' statistics; per-category thresholds chosen on validation where precision equals
recall and kept with the model.

It keeps the one model contract (`fusion.models.base`): `fit(blocks, Targets.multilabel(labels,
continuous, distribution), val=(blocks, targets))`, `predict_proba(blocks)` → the category
probabilities, `predict(blocks)` → 0/1 decisions at the thresholds, `predict_heads(blocks)` →
every head's predictions, persistence through `fusion.persist`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from fusion.data.sequences import available, missing_like
from fusion.evaluation.multilabel import equal_pr_thresholds
from fusion.models.base import MODELS, FusionModel
from fusion.models.neural import Scaler, TrainingParams
from fusion.models.targets import Targets


class ContextParams(TrainingParams):
    hidden: int = Field(128, ge=4)
    dropout: float = Field(0.3, ge=0, lt=1)
    fusion: Literal["concat", "attention"] = "concat"
    category_loss: Literal["dynamic", "bce"] = "dynamic"
    dynamic_c: float = Field(1.2, gt=1.0)
    vad_loss: Literal["margin_l2", "smooth_l1"] = "margin_l2"
    vad_margin: float = Field(0.1, ge=0)
    vad_weight: float = Field(0.5, ge=0)
    mixture_weight: float = Field(0.5, gt=0)


class MultilabelModel(FusionModel):
    """What the multi-label models share: the category, VAD and VAD-mixture heads and their
    targets, the validation thresholds, and persistence of the network's weights in safetensors
    (no pickle). A subclass sets `Params`, builds its network in `_net()`, adds its own fitted
    state in `_state()` / `_restore()` and its inputs in `_forward()`."""

    Params = ContextParams
    heads = frozenset({"multilabel"})
    tag = "context"

    # --- what a subclass defines ---------------------------------------------------------------
    def _net(self):
        raise NotImplementedError

    def _state(self) -> dict[str, Any]:
        return {}

    def _restore(self, state: dict[str, Any]) -> None:
        """Set the fitted attributes `_net()` needs from `_state()`'s entries."""

    def _forward(self, inputs) -> tuple[dict, np.ndarray]:
        """The network's outputs {head: tensor} on `inputs` and (n,) whether any stream is present."""
        raise NotImplementedError

    def predict_proba(self, inputs, modalities: Sequence[str] | None = None) -> np.ndarray:
        """(n, k) category probabilities; NaN rows for samples with no stream."""
        return self._outputs(*self._forward(self._keep(inputs, modalities)))[0]

    def predict(self, inputs, modalities: Sequence[str] | None = None) -> np.ndarray:
        """(n, k) 0/1 decisions at the per-category validation thresholds."""
        return (self.thresholds_[None, :] <= self.predict_proba(inputs, modalities)).astype(int)

    def predict_heads(self, inputs) -> dict[str, np.ndarray | None]:
        """Every head's predictions: {"multilabel": (n, k) probabilities, "continuous": (n, 3)
        VAD or None, "distribution": (n, emotions) or None (no VAD-mixture head)}; NaN rows for
        samples with no stream."""
        import torch

        out, present = self._forward(inputs)
        P, V = self._outputs(out, present)
        M = None
        if self.n_mix_:
            M = torch.softmax(out["mix"].float(), 1).numpy().astype(float)
            M[~present] = np.nan
        return {"multilabel": P, "continuous": V, "distribution": M}

    def _keep(self, inputs, modalities: Sequence[str] | None):
        """The inputs with the streams outside `modalities` missing."""
        keep = self._selected(modalities)
        if len(keep) == len(self.modalities):
            return inputs
        return {s: b if s in keep else missing_like(b) for s, b in inputs.items()}

    # --- shared ----------------------------------------------------------------------------------
    def _start(self, streams: list[str], Y: np.ndarray, V: np.ndarray | None, M: np.ndarray | None = None,
               mixture: dict | None = None) -> None:
        self.streams_ = self.modalities = list(streams)
        self.task, self.n_labels_ = "multilabel", int(Y.shape[1])
        self.n_classes = self.n_labels_
        self.n_cont_ = 0 if V is None else int(V.shape[1])
        if M is not None and (M.ndim != 2 or len(M) != len(Y)):
            raise ValueError(f"mixture targets of shape {M.shape} for {len(Y)} samples")
        self.n_mix_ = 0 if M is None else int(M.shape[1])
        self.mixture_ = mixture if M is not None else None
        if V is not None:
            self.v_mean_ = np.nanmean(V, 0)
            self.v_sd_ = np.where(np.nanstd(V, 0) > 0, np.nanstd(V, 0), 1.0)

    def lit_heads(self) -> list:
        from fusion.lit import Head

        p = self.params
        heads = [Head("cat", "multilabel", self.n_labels_, loss=p.category_loss, dynamic_c=p.dynamic_c)]
        if self.n_cont_:
            heads.append(Head("vad", "regression", self.n_cont_, weight=p.vad_weight, loss=p.vad_loss,
                              margin=p.vad_margin))
        if self.n_mix_:
            heads.append(Head("mix", "distribution", self.n_mix_, weight=p.mixture_weight))
        return heads

    def _targets(self, Y: np.ndarray, V: np.ndarray | None, M: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Category targets, the continuous ones standardised, and the emotion distributions
        (NaN where unknown)."""
        out = {"cat": np.asarray(Y, np.float32)}
        if self.n_cont_:
            vv = np.full((len(Y), self.n_cont_), np.nan) if V is None else (V - self.v_mean_) / self.v_sd_
            out["vad"] = vv.astype(np.float32)
        if self.n_mix_:
            out["mix"] = (np.full((len(Y), self.n_mix_), np.nan) if M is None else M).astype(np.float32)
        return out

    def _train(self, train, val_loader, val, seed: int, build=None) -> None:
        """Fit the network (`build()`, default `_net()`, made after seeding) on the loaders
        (early stopping on validation), keep it, and choose the per-category thresholds on
        `val` where precision equals recall (0.5 without)."""
        import torch

        from fusion.lit import LitModule, fit_module

        p = self.params
        torch.manual_seed(seed)
        module = LitModule((build or self._net)(), self.lit_heads(), **p.module_kwargs())
        result = fit_module(module, train, val_loader, seed=seed, max_epochs=p.max_epochs, **p.trainer_kwargs())
        self.net_ = module.net.cpu().eval()
        self.best_epoch_ = result.best_epoch
        self.thresholds_ = np.full(self.n_labels_, 0.5)
        self.fitted_ = True
        if val is not None:
            P = self.predict_proba(val[0])
            known = ~np.isnan(val[1]).any(1)
            th = equal_pr_thresholds(val[1][known], P[known])
            self.thresholds_ = np.where(np.isnan(th), 0.5, th)

    def _outputs(self, out: dict, present: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Network outputs → probabilities and VAD in label units; NaN rows where no stream."""
        import torch

        P = torch.sigmoid(out["cat"].float()).numpy().astype(float)
        V = out["vad"].float().numpy().astype(float) * self.v_sd_ + self.v_mean_ if self.n_cont_ else None
        P[~present] = np.nan
        if V is not None:
            V[~present] = np.nan
        return P, V

    def summary(self) -> dict[str, Any]:
        return {"modalities": self.modalities, "best_epoch": getattr(self, "best_epoch_", None),
                "thresholds": self.thresholds_.tolist()}

    def save_state(self, folder: Path) -> dict[str, Any]:
        from safetensors.torch import save_file

        weights = f"{folder.name or 'model'}.net.safetensors"
        tmp = folder / (weights + ".tmp")
        save_file({k: v.contiguous() for k, v in self.net_.state_dict().items()}, str(tmp))
        tmp.replace(folder / weights)
        return {"net_file": weights, "n_labels": self.n_labels_, "n_cont": self.n_cont_,
                "thresholds": self.thresholds_.tolist(), "v_mean": getattr(self, "v_mean_", np.zeros(0)).tolist(),
                "v_sd": getattr(self, "v_sd_", np.zeros(0)).tolist(), "n_mix": self.n_mix_, "mixture": self.mixture_,
                **self._state()}

    def load_state(self, state: dict[str, Any], folder: Path) -> None:
        from safetensors.torch import load_file

        from fusion.persist import model_file

        self.streams_ = list(self.modalities)
        self.n_labels_, self.n_cont_ = int(state["n_labels"]), int(state["n_cont"])
        self.thresholds_ = np.array(state["thresholds"])
        self.v_mean_, self.v_sd_ = np.array(state["v_mean"]), np.array(state["v_sd"])
        self.n_mix_, self.mixture_ = int(state.get("n_mix", 0)), state.get("mixture")
        self._restore(state)
        net = self._net()
        net.load_state_dict(load_file(str(model_file(folder, state["net_file"]))))
        self.net_ = net.eval()


@MODELS.register("context-fusion")
class ContextFusion(MultilabelModel):
    """See the module docstring. Args are `ContextParams` (plus `TrainingParams`: lr,
    weight_decay, max_epochs, patience, batch_size, device, precision, …)."""

    Params = ContextParams

    def _net(self):
        from fusion.models.nets.context_fusion import ContextFusionNet

        p = self.params
        return ContextFusionNet(self.dims_, self.n_labels_, max(self.n_cont_, 1), hidden=p.hidden,
                                          dropout=p.dropout, fusion=p.fusion, n_mix=self.n_mix_)

    def _state(self) -> dict[str, Any]:
        return {"dims": self.dims_, "scalers": {s: sc.to_dict() for s, sc in self.scalers_.items()}}

    def _restore(self, state: dict[str, Any]) -> None:
        self.dims_ = state["dims"]
        self.scalers_ = {s: Scaler.from_dict(d) for s, d in state["scalers"].items()}

    def _tensors(self, blocks: dict[str, np.ndarray]) -> dict[str, dict]:
        import torch

        x, mask = {}, {}
        for s in self.streams_:
            z, m, _ = self.scalers_[s].transform(blocks[s])
            x[s], mask[s] = torch.as_tensor(z), torch.as_tensor(m)
        return {"x": x, "mask": mask}

    def _fit(self, blocks: dict[str, np.ndarray], targets: Targets, *, inner=(), seed: int = 0,
             val: tuple[dict[str, np.ndarray], Targets] | None = None) -> ContextFusion:
        """Fit on (n, d_s) stream blocks (NaN rows: the stream is missing) and multi-label
        targets: (n, k) 0/1 labels (NaN: unknown), optionally (n, 3) continuous values (VAD;
        NaN: unknown) and (n, emotions) distributions (VAD-mixture soft labels; NaN rows:
        unknown; `targets.mixture` describes them and is saved with the model); early stopping
        and the thresholds on `val`, never on the training rows.

        Raises:
            ValueError: no streams, shapes that disagree, or a training row with no stream.
        """
        Y, V, M, mixture = targets.labels, targets.continuous, targets.distribution, targets.mixture
        val = None if val is None else (val[0], val[1].labels, val[1].continuous, val[1].distribution)
        import torch

        from fusion.lit import TensorDictDataset, loaders

        if not blocks:
            raise ValueError("ContextFusion.fit needs at least one stream")
        n = len(Y)
        bad = [s for s, b in blocks.items() if len(b) != n]
        if bad:
            raise ValueError(f"streams {bad} have other row counts than the {n} labels")
        none = ~np.column_stack([available(b) for b in blocks.values()]).any(1)
        if none.any():
            raise ValueError(f"{int(none.sum())} training row(s) have no stream at all")
        self._start(list(blocks), Y, V, M, mixture)
        self.dims_ = {s: int(b.shape[1]) for s, b in blocks.items()}
        self.scalers_ = {s: Scaler.fit(b) for s, b in blocks.items()}

        def dataset(b, y, v, m=None):
            targets = {k: torch.as_tensor(t) for k, t in self._targets(y, v, m).items()}
            return TensorDictDataset(self._tensors(b), targets)

        train, vl = loaders(dataset(blocks, Y, V, M), dataset(*val) if val is not None else None,
                            self.params.batch_size, seed)
        self._train(train, vl, val, seed)
        return self

    def _forward(self, blocks: dict[str, np.ndarray]) -> tuple[dict, np.ndarray]:
        import torch

        missing = [s for s in self.streams_ if s not in blocks]
        if missing:
            raise ValueError(f"streams {missing} missing; the model was fitted on {self.streams_}")
        with torch.no_grad():
            out = self.net_(**self._tensors(blocks))
        present = np.column_stack([available(blocks[s]) for s in self.streams_]).any(1)
        return out, present
