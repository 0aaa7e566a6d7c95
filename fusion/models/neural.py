"""What every neural fusion model shares: training settings, input scaling, cross-fitting over
the inner folds, calibration and persistence. Networks are in `fusion.models.nets`; training
goes through `fusion.lit`. torch and Lightning are imported when a model is fitted or loaded,
not when it is registered.

Fitting (`NeuralFusionModel.fit`): for each inner fold the network is trained on the inner
training part with early stopping and checkpointing on the inner validation part; its
predictions on that validation part, for every subset of modalities (the others masked as
missing), are kept. A temperature per subset is fitted on those out-of-fold predictions (the
calibration of the fused output). The final network is trained on all the training data for
the median best number of epochs (`refit`), or is the first inner fold's network.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from features.base import Params
from fusion.data.sequences import SequenceBlock, available
from fusion.models.base import Blocks, FusionModel, Inner
from fusion.models.calibration import Calibrator, softmax
from fusion.models.targets import Targets


class TrainingParams(Params):
    """Optimisation and Trainer settings shared by every neural model and the MLP learner."""

    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    batch_size: int = Field(64, ge=1)
    max_epochs: int = Field(200, ge=1)
    patience: int = Field(15, ge=1)
    warmup_epochs: float = Field(0.0, ge=0)
    schedule: Literal["constant", "cosine"] = "constant"
    gradient_clip: float | None = Field(None, gt=0)
    device: str = "auto"
    precision: str = "auto"
    strategy: str = "auto"
    devices: int | str = 1
    engine: Literal["auto", "lightning", "loop"] = "auto"

    def trainer_kwargs(self) -> dict[str, Any]:
        """The `fusion.lit.fit_module` settings among these parameters."""
        return {"patience": self.patience, "device": self.device, "precision": self.precision,
                "strategy": self.strategy, "devices": self.devices, "gradient_clip": self.gradient_clip,
                "engine": self.engine}

    def module_kwargs(self) -> dict[str, Any]:
        """The `fusion.lit.LitModule` optimisation settings among these parameters."""
        return {"lr": self.lr, "weight_decay": self.weight_decay, "warmup_epochs": self.warmup_epochs,
                "schedule": self.schedule}


class NeuralParams(TrainingParams):
    """`class_weight`: "balanced" weights the classification loss by inverse class frequency
    (what unweighted recall rewards); None trains on the plain loss (what accuracy and weighted
    F1 reward)."""

    hidden: int = Field(64, ge=1)
    class_weight: Literal["balanced"] | None = "balanced"
    dropout: float = Field(0.2, ge=0, lt=1)
    modality_dropout: float = Field(0.2, ge=0, lt=1)
    calibration: Literal["temperature", "none"] = "temperature"
    refit: bool = True
    max_inner: int | None = Field(None, ge=1)


class AttentionParams(NeuralParams):
    """Settings of the models built on Transformer encoders over segments."""

    layers: int = Field(1, ge=0)
    heads: int = Field(4, ge=1)
    time_scale: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> AttentionParams:
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        return self


class Scaler:
    """Per-feature mean and sd of one modality over the training rows (pooled) or the present
    segments (sequences); standardised values with NaN set to 0 and a presence mask."""

    def __init__(self, mean: np.ndarray, sd: np.ndarray) -> None:
        self.mean, self.sd = mean, sd

    @classmethod
    def fit(cls, X: np.ndarray | SequenceBlock) -> Scaler:
        values = X.values.reshape(-1, X.values.shape[2]) if isinstance(X, SequenceBlock) else X
        nan = np.isnan(values)
        if not nan.any():  # the common case: plain mean and sd, the same figures, much faster
            if not len(values):
                return cls(np.zeros(values.shape[1]), np.ones(values.shape[1]))
            mean, sd = values.mean(axis=0), values.std(axis=0)
            return cls(mean, np.where(sd > 0, sd, 1.0))
        rows = values[~nan.all(axis=1)]
        if not len(rows):
            return cls(np.zeros(values.shape[1]), np.ones(values.shape[1]))
        mean = np.nan_to_num(np.nanmean(rows, axis=0))
        sd = np.nan_to_num(np.nanstd(rows, axis=0))
        return cls(mean, np.where(sd > 0, sd, 1.0))

    def transform(self, X: np.ndarray | SequenceBlock) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(standardised values, presence mask, segment start times or None)."""
        if isinstance(X, SequenceBlock):
            mask = X.mask
            z = (X.values - self.mean) / self.sd
            return np.nan_to_num(z).astype(np.float32), mask, np.nan_to_num(X.starts).astype(np.float32)
        mask = available(X)
        z = (X - self.mean) / self.sd
        if not np.isfinite(z).all():  # NaN (a missing modality or value) → 0, masked by `mask`
            z = np.nan_to_num(z)
        return z.astype(np.float32), mask, None

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "sd": self.sd.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, list[float]]) -> Scaler:
        return cls(np.array(d["mean"], dtype=float), np.array(d["sd"], dtype=float))


class capture_input:
    """Collect the (float) input of a torch module on every call inside the `with` block."""

    def __init__(self, module) -> None:
        self.module, self.captured = module, []

    def __enter__(self) -> list[np.ndarray]:
        self.handle = self.module.register_forward_hook(
            lambda _m, args, _out: self.captured.append(args[0].detach().float().cpu().numpy()))
        return self.captured

    def __exit__(self, *exc) -> None:
        self.handle.remove()


def balanced_weights(y: np.ndarray, n_classes: int) -> tuple[float, ...]:
    """Per-class loss weights inversely proportional to the class counts (1 for an absent class)."""
    counts = np.bincount(np.asarray(y).astype(int), minlength=n_classes).astype(float)
    present = counts > 0
    w = np.where(present, len(y) / (present.sum() * np.maximum(counts, 1)), 1.0)
    return tuple(float(v) for v in w)


def inner_scores(y: np.ndarray, proba: np.ndarray, n_classes: int) -> dict[str, float]:
    """Weighted F1, UAR and accuracy of inner-validation predictions: what a model's training data
    says of it (for choosing among configurations without the test split)."""
    from fusion.evaluation.metrics import f1_scores

    pred = proba.argmax(1)
    recalls = [(pred[y == c] == c).mean() for c in range(n_classes) if (y == c).any()]
    return {"n": int(len(y)), "f1_weighted": round(f1_scores(y, pred, n_classes)[0], 4),
            "uar": round(float(np.mean(recalls)), 4), "accuracy": round(float((pred == y).mean()), 4)}


def nonempty_subsets(items: Sequence[str]) -> list[tuple[str, ...]]:
    return [c for r in range(1, len(items) + 1) for c in itertools.combinations(items, r)]


class NeuralFusionModel(FusionModel):
    """Base of the neural fusion models (see the module docstring for how they are fitted).

    Subclasses implement `build_net` (their network, from `fusion.models.nets`); they may add
    auxiliary heads.
    """

    Params = NeuralParams
    drops_modalities = True
    needs_inner = True

    # --- what a subclass defines --------------------------------------------------------------
    def _prepare(self, blocks: Blocks, y: np.ndarray) -> None:
        """Anything fitted from all the training data before the networks (nothing by default)."""
    def build_net(self, dims: dict[str, int], sequence: list[str], n_out: int):
        """The model's network (an `nn.Module`) for modalities of `dims` features (`sequence`:
        those given as segments) and `n_out` outputs of the main head."""
        raise NotImplementedError

    def lit_heads(self, n_out: int) -> list:
        """The network's output heads as `fusion.lit` trains them (the main one, "y", by default)."""
        from fusion.lit import Head

        task = "multiclass" if self.task == "classification" else "regression"
        return [Head("y", task, n_out, class_weights=self._class_weights)]

    def head_targets(self, y: np.ndarray, masks: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
        """Each head's targets for the training `rows` (`y` already encoded for the main head;
        `masks`: each modality's presence per row)."""
        return {"y": y}

    # --- fitting ------------------------------------------------------------------------------
    def _fit(self, blocks: Blocks, targets: Targets, *, inner: Inner, seed: int, val=None) -> NeuralFusionModel:
        """See `FusionModel.fit`: the auxiliary heads the model declares in `auxiliary` (e.g.
        "score", "binary") are trained jointly when the targets carry them."""
        y, task, n_classes = targets.main
        aux = targets.auxiliary(self.auxiliary)
        if not inner:
            raise ValueError(f"{type(self).__name__} early-stops and calibrates on inner-validation data: "
                             "it needs inner folds (cv.inner_splits ≥ 2)")
        self._start_fit(blocks, task, n_classes)
        p = self.params
        y = np.asarray(y)
        self._aux = {k: np.asarray(v) for k, v in (aux or {}).items() if k in self.auxiliary}
        self.sequence_ = [m for m in self.modalities if isinstance(blocks[m], SequenceBlock)]
        self.dims_ = {m: int(blocks[m].shape[-1]) for m in self.modalities}
        self.n_out_ = n_classes if task == "classification" else 1
        if task == "regression":
            self.y_mean_, self.y_sd_ = float(np.mean(y)), float(np.std(y) or 1.0)
        self._prepare(blocks, y)
        self._class_weights = (balanced_weights(y, n_classes)
                               if task == "classification" and p.class_weight == "balanced" else None)
        subsets = nonempty_subsets(self.modalities)
        oof = {s: np.full((len(y), self.n_out_), np.nan) for s in subsets}
        best, first = [], None
        for i, (tr, va) in enumerate(inner[:p.max_inner] if p.max_inner else inner):
            net, scalers, result = self._train(blocks, y, tr, va, seed + i)
            self.trained_on_ = f"{result.accelerator} ({result.precision})" + (
                f" × {result.world_size} processes" if result.world_size > 1 else "")
            if result.best_epoch is not None:
                best.append(result.best_epoch + 1)
            for s in subsets:
                oof[s][va] = self._forward(net, scalers, {m: blocks[m][va] for m in self.modalities}, s)
            if first is None:
                first = (net, scalers)
        if p.refit:
            epochs = int(np.median(best)) if best else p.max_epochs
            self.net_, self.scalers_, _ = self._train(blocks, y, np.arange(len(y)), None, seed, epochs)
        else:
            self.net_, self.scalers_ = first
        self.temperatures_: dict[tuple[str, ...], float] = {}
        if task == "classification" and p.calibration == "temperature":
            for s, logits in oof.items():
                ok = ~np.isnan(logits).any(1)
                if ok.sum() >= 2:
                    cal = Calibrator("temperature").fit(softmax(logits[ok]), y[ok].astype(int))
                    self.temperatures_[s] = cal.temperature_
        self.best_epochs_ = best
        self.inner_scores_ = None
        full = self.inner_logits_ = oof[tuple(self.modalities)]
        done = ~np.isnan(full).any(1)
        if task == "classification" and done.any():  # the inner folds' own figures, before calibration
            self.inner_scores_ = inner_scores(y[done].astype(int), softmax(full[done]), n_classes)
        self.fitted_ = True
        return self

    def _train(self, blocks: Blocks, y: np.ndarray, tr: np.ndarray, va: np.ndarray | None, seed: int,
               epochs: int | None = None):
        import torch

        from fusion.lit import LitModule, TensorDictDataset, fit_module, loaders

        p = self.params
        scalers = {m: Scaler.fit(blocks[m][tr]) for m in self.modalities}
        torch.manual_seed(seed)
        net = self.build_net(self.dims_, self.sequence_, self.n_out_)

        def dataset(rows):
            inputs = self._tensors(scalers, {m: blocks[m][rows] for m in self.modalities})
            masks = {m: inputs["mask"][m].numpy() for m in self.modalities}
            if self.sequence_:
                masks.update({m: masks[m].any(axis=1) for m in self.sequence_})
            targets = self.head_targets(self._target(y[rows]), masks, rows)
            return TensorDictDataset(inputs, {k: torch.as_tensor(v) for k, v in targets.items()})

        train, val = loaders(dataset(tr), dataset(va) if va is not None else None, p.batch_size, seed)
        module = LitModule(net, self.lit_heads(self.n_out_), **p.module_kwargs())
        result = fit_module(module, train, val, seed=seed, max_epochs=epochs or p.max_epochs,
                            **p.trainer_kwargs())
        return module.net, scalers, result

    def _target(self, y: np.ndarray) -> np.ndarray:
        if self.task == "classification":
            return y.astype(np.int64)
        return ((y - self.y_mean_) / self.y_sd_).astype(np.float32)

    def _tensors(self, scalers: dict[str, Scaler], blocks: Blocks) -> dict[str, dict]:
        import torch

        out: dict[str, dict] = {"x": {}, "mask": {}}
        for m in self.modalities:
            z, mask, times = scalers[m].transform(blocks[m])
            out["x"][m], out["mask"][m] = torch.as_tensor(z), torch.as_tensor(mask)
            if times is not None:
                out.setdefault("times", {})[m] = torch.as_tensor(times)
        return out

    def embedding(self, blocks: Blocks) -> np.ndarray | None:
        """The input of the network's output layer `head` (its penultimate representation)."""
        self.check_fitted()
        head = getattr(self.net_, "head", None)
        if head is None:
            return None
        with capture_input(head) as captured:
            self._forward(self.net_, self.scalers_, {m: blocks[m] for m in self.modalities}, self.modalities)
        return np.concatenate(captured) if captured else None

    def _forward(self, net, scalers, blocks: Blocks, subset: Sequence[str], key: str = "y") -> np.ndarray:
        """The network's raw output for `blocks` with the modalities outside `subset` masked."""
        import torch

        inputs = self._tensors(scalers, blocks)
        for m in self.modalities:
            if m not in subset:
                inputs["mask"][m] = torch.zeros_like(inputs["mask"][m])
        n = len(next(iter(inputs["x"].values())))
        outs = []
        net.eval()
        with torch.no_grad():
            for a in range(0, n, 2048):
                part = {k: {m: t[a:a + 2048] for m, t in v.items()} for k, v in inputs.items()}
                out = net(**part)
                out = out[key] if isinstance(out, dict) else out
                outs.append(out.float().numpy())
        return np.concatenate(outs) if outs else np.empty((0, self.n_out_))

    # --- prediction ---------------------------------------------------------------------------
    def logits(self, blocks: Blocks, modalities: Sequence[str] | None = None) -> np.ndarray:
        self.check_fitted()
        keep = self._selected(modalities)
        return self._forward(self.net_, self.scalers_, {m: blocks[m] for m in self.modalities}, keep)

    def predict_proba(self, blocks: Blocks, modalities: Sequence[str] | None = None) -> np.ndarray:
        keep = tuple(self._selected(modalities))
        z = self.logits(blocks, keep)
        return softmax(z / self.temperatures_.get(keep, 1.0))

    def uncalibrated_proba(self, blocks: Blocks) -> np.ndarray | None:
        return softmax(self.logits(blocks)) if self.temperatures_ else None

    def predict_score(self, blocks: Blocks, modalities: Sequence[str] | None = None) -> np.ndarray:
        return self.logits(blocks, modalities)[:, 0] * self.y_sd_ + self.y_mean_

    def inner_predictions(self) -> np.ndarray | None:
        """The inner folds' networks' (calibrated) predictions of their validation parts; NaN for
        the samples no inner fold validated on (`max_inner`)."""
        self.check_fitted()
        z = getattr(self, "inner_logits_", None)
        if z is None:
            return None
        if self.task == "classification":
            with np.errstate(invalid="ignore"):
                return softmax(z / self.temperatures_.get(tuple(self.modalities), 1.0))
        return z[:, 0] * self.y_sd_ + self.y_mean_

    def summary(self) -> dict[str, Any]:
        d: dict[str, Any] = {"modalities": self.modalities, "best_epochs": self.best_epochs_,
                             "trained_on": getattr(self, "trained_on_", None)}
        if getattr(self, "inner_scores_", None):
            d["inner_validation"] = self.inner_scores_
        if self.temperatures_:
            d["temperature"] = self.temperatures_.get(tuple(self.modalities))
        return d

    # --- persistence --------------------------------------------------------------------------
    def save_state(self, folder: Path) -> dict[str, Any]:
        from safetensors.torch import save_file

        weights = f"{folder.name}.net.safetensors" if folder.name else "net.safetensors"
        save_file({k: v.contiguous() for k, v in self.net_.state_dict().items()}, str(folder / weights))
        state = {"net_file": weights, "dims": self.dims_, "sequence": self.sequence_, "n_out": self.n_out_,
                 "scalers": {m: s.to_dict() for m, s in self.scalers_.items()},
                 "temperatures": [[list(k), v] for k, v in self.temperatures_.items()],
                 "best_epochs": self.best_epochs_}
        if self.task == "regression":
            state.update(y_mean=self.y_mean_, y_sd=self.y_sd_)
        return state

    def load_state(self, state: dict[str, Any], folder: Path) -> None:
        from safetensors.torch import load_file

        from fusion.persist import model_file

        self.dims_, self.sequence_, self.n_out_ = dict(state["dims"]), list(state["sequence"]), state["n_out"]
        self.scalers_ = {m: Scaler.from_dict(d) for m, d in state["scalers"].items()}
        self.temperatures_ = {tuple(k): float(v) for k, v in state["temperatures"]}
        self.best_epochs_ = list(state["best_epochs"])
        if self.task == "regression":
            self.y_mean_, self.y_sd_ = state["y_mean"], state["y_sd"]
        self.net_ = self.build_net(self.dims_, self.sequence_, self.n_out_)
        self.net_.load_state_dict(load_file(str(model_file(folder, state["net_file"]))))
        self.net_.eval()
