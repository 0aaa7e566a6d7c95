"""Lightning in one place: the one `LightningModule` every neural model trains through, and the
one helper that builds and runs the `Trainer`.

A network is a plain `nn.Module` (`fusion.models.nets`) whose `forward(**inputs)` returns one
output per head (a dict, or a tensor for a single head). `LitModule` owns the losses, the
metrics (one torchmetrics object per head, on validation; the training loss is logged per
epoch) and the optimiser and schedule. Heads are
multiclass (cross-entropy, optional class weights), multilabel (binary cross-entropy with
optional positive weights, or the dynamically weighted squared error of Kosti et al.) or
regression (MSE, smooth L1, or the margin L2 of Kosti et al.) or distribution (soft-target
cross-entropy, e.g. VAD-mixture emotion labels). A head's missing targets (class
-1, or NaN) are left out of its loss, so heads trained jointly may have labels for different
samples.

`fit_module` builds the Trainer — early stopping and checkpointing (best weights kept in
memory) on the given (inner) validation data only, deterministic seeds, gradient clipping,
`accelerator="auto"`, mixed precision on a GPU, a selectable strategy (e.g. DDP) — runs it, and
restores the best weights. For one CPU process in full precision with a constant learning rate
it runs the same module through a plain loop instead (`engine="auto"`; `FitLoop`): the same
steps, seeds, early stopping and best weights as the Trainer (tested equal to it), without the
Trainer's per-step hooks, which cost a small head about as much as its own work.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import lightning as L
import torch
import torchmetrics
from torch import nn
from torch.utils.data import DataLoader, Dataset

HeadTask = Literal["multiclass", "multilabel", "regression", "distribution"]


@dataclass(frozen=True)
class Head:
    """One output of a network and how it is trained.

    Args:
        name: the key of the network's output (and of the targets).
        task: "multiclass", "multilabel", "regression" or "distribution" (soft targets: each
            row's target is a probability distribution over `n_out` classes, NaN where unknown;
            the loss is the cross-entropy −Σ t log softmax(out), KL(t ‖ softmax) up to a constant).
        n_out: classes, labels, or 1 for a score.
        weight: the head's weight in the total loss.
        class_weights: multiclass: per-class loss weights; multilabel: positive-class weights.
        loss: regression: "mse", "smooth_l1" or "margin_l2" (squared error where it exceeds
            `margin`, 0 within it); multilabel: "bce" or "dynamic" (squared error of the
            predicted probabilities, each label weighted 1 / ln(c + p_i) by the share p_i of
            positives of label i in the batch, c = `dynamic_c`; Kosti et al., EMOTIC).
        margin: the margin of "margin_l2", in target units.
        dynamic_c: c of the "dynamic" weighting.
    """

    name: str
    task: HeadTask
    n_out: int
    weight: float = 1.0
    class_weights: tuple[float, ...] | None = None
    loss: Literal["mse", "smooth_l1", "margin_l2", "bce", "dynamic"] = "mse"
    margin: float = 0.0
    dynamic_c: float = 1.2


def head_loss(head: Head, out: torch.Tensor, target: torch.Tensor,
              weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's loss over its rows with a target, and the mask of those rows."""
    out = out.float()
    if head.task == "multiclass":
        keep = target >= 0
        if not keep.any():
            return out.sum() * 0.0, keep
        return nn.functional.cross_entropy(out[keep], target[keep], weight=weights), keep
    if head.task == "distribution":
        keep = ~torch.isnan(target).any(dim=1)
        if not keep.any():
            return out.sum() * 0.0, keep
        return -(target[keep] * torch.log_softmax(out[keep], 1)).sum(1).mean(), keep
    if head.task == "multilabel":
        keep = ~torch.isnan(target).any(dim=1)
        if not keep.any():
            return out.sum() * 0.0, keep
        if head.loss == "dynamic":
            t = target[keep]
            w = 1.0 / torch.log(head.dynamic_c + t.mean(0))
            return ((torch.sigmoid(out[keep]) - t) ** 2 * w).sum(1).mean(), keep
        return nn.functional.binary_cross_entropy_with_logits(out[keep], target[keep], pos_weight=weights), keep
    out = out.reshape(target.shape)
    keep = ~torch.isnan(target)
    if not keep.any():
        return out.sum() * 0.0, keep
    if head.loss == "margin_l2":
        err = out[keep] - target[keep]
        return torch.where(err.abs() > head.margin, err ** 2, torch.zeros_like(err)).mean(), keep
    fn = nn.functional.smooth_l1_loss if head.loss == "smooth_l1" else nn.functional.mse_loss
    return fn(out[keep], target[keep]), keep


def _metric(head: Head) -> torchmetrics.Metric:
    if head.task == "multiclass":
        return torchmetrics.Accuracy(task="multiclass", num_classes=head.n_out)
    if head.task == "multilabel":
        return torchmetrics.classification.MultilabelAveragePrecision(num_labels=head.n_out)
    if head.task == "distribution":
        return torchmetrics.KLDivergence()
    return torchmetrics.MeanAbsoluteError()


class LitModule(L.LightningModule):
    """Losses, metrics and optimisation of any network with one or more heads.

    Args:
        net: the network; `net(**inputs)` returns {head name: output} (or one tensor).
        heads: the heads trained, with their tasks and loss weights.
        lr, weight_decay: AdamW.
        warmup_epochs: linear warm-up of the learning rate over this many epochs.
        schedule: "constant" after warm-up, or "cosine" decay to zero at the last epoch.
    """

    def __init__(self, net: nn.Module, heads: Sequence[Head], lr: float = 1e-3, weight_decay: float = 1e-4,
                 warmup_epochs: float = 0.0, schedule: Literal["constant", "cosine"] = "constant") -> None:
        super().__init__()
        if not heads:
            raise ValueError("LitModule needs at least one head")
        self.net = net
        self.heads = list(heads)
        self.lr, self.weight_decay = lr, weight_decay
        self.warmup_epochs, self.schedule = warmup_epochs, schedule
        for h in self.heads:
            w = torch.as_tensor(h.class_weights, dtype=torch.float32) if h.class_weights else None
            self.register_buffer(f"weights_{h.name}", w)
        # metrics on validation only: per training step they cost as much as a small head's own
        # work (the training loss is still logged every epoch)
        self.metrics = nn.ModuleDict({f"val_{h.name}": _metric(h) for h in self.heads})
        self._loss_sums: dict[str, list] = {}

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        """Batches are dicts of tensors: moved directly (nothing to move on the CPU)."""
        if device.type == "cpu":
            return batch

        def move(x):
            if isinstance(x, torch.Tensor):
                return x.to(device, non_blocking=True)
            if isinstance(x, Mapping):
                return {k: move(v) for k, v in x.items()}
            if isinstance(x, list | tuple):
                return type(x)(move(v) for v in x)
            return x

        return move(batch)

    def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.net(**inputs)
        return out if isinstance(out, Mapping) else {self.heads[0].name: out}

    def _step(self, batch, stage: str) -> torch.Tensor:
        inputs, targets = batch
        out = self(**inputs)
        total = 0.0
        n = len(next(iter(targets.values())))
        for h in self.heads:
            loss, keep = head_loss(h, out[h.name], targets[h.name], getattr(self, f"weights_{h.name}"))
            total = total + h.weight * loss
            if stage == "val" and keep.any():
                metric = self.metrics[f"{stage}_{h.name}"]
                pred = out[h.name][keep].float()
                target = targets[h.name][keep]
                if h.task == "multiclass":
                    metric.update(pred.argmax(1), target)
                elif h.task == "multilabel":
                    metric.update(torch.sigmoid(pred), target.long())
                elif h.task == "distribution":
                    metric.update(target.float(), torch.softmax(pred, 1))
                else:
                    metric.update(pred.reshape(target.shape), target)
        # the epoch's loss, weighted by batch size, is logged once at the epoch's end (logging
        # every step costs Lightning a result-collection pass per step)
        acc = self._loss_sums.setdefault(stage, [0.0, 0])
        acc[0] = acc[0] + total.detach() * n
        acc[1] += n
        return total

    def on_train_epoch_end(self) -> None:
        self._log_metrics("train")

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def _log_metrics(self, stage: str) -> None:
        acc = self._loss_sums.pop(stage, None)
        if acc is not None and acc[1]:
            # averaged over the processes of a distributed run, so that every process early-stops
            # and keeps the same epoch's weights
            self.log(f"{stage}_loss", acc[0] / acc[1], sync_dist=True)
        for h in self.heads if stage == "val" else ():
            metric = self.metrics[f"{stage}_{h.name}"]
            if metric.update_count:
                self.log(f"{stage}_{h.name}_metric", metric.compute(), sync_dist=True)
            metric.reset()

    def training_step(self, batch, _):
        return self._step(batch, "train")

    def validation_step(self, batch, _):
        self._step(batch, "val")

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        if self.schedule == "constant" and self.warmup_epochs == 0:
            return opt
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        per_epoch = max(total / max(self.trainer.max_epochs or 1, 1), 1.0)
        warmup = int(self.warmup_epochs * per_epoch)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if self.schedule == "cosine":
                progress = (step - warmup) / max(total - warmup, 1)
                return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
            return 1.0

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class TensorDictDataset(Dataset):
    """Rows of named inputs and named targets: tensors, or one level of dicts of tensors (such
    as one tensor per modality), all with the same first axis."""

    def __init__(self, inputs: Mapping[str, Any], targets: Mapping[str, torch.Tensor]) -> None:
        leaves = [t for v in (*inputs.values(), *targets.values())
                  for t in (v.values() if isinstance(v, Mapping) else [v])]
        sizes = {len(t) for t in leaves}
        if len(sizes) != 1:
            raise ValueError(f"inputs and targets must have the same number of rows, got sizes {sorted(sizes)}")
        self.inputs, self.targets = dict(inputs), dict(targets)
        self.n = sizes.pop()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        def pick(v):
            return {k: t[i] for k, t in v.items()} if isinstance(v, Mapping) else v[i]

        return {k: pick(v) for k, v in self.inputs.items()}, {k: v[i] for k, v in self.targets.items()}

    def __getitems__(self, indices):
        """A whole batch by indexing each tensor once (what `DataLoader` asks for when the
        dataset has this method): the same rows as stacking `__getitem__`'s, without a
        per-row collate."""
        return self[torch.as_tensor(indices, dtype=torch.long)]


def _batched(batch):
    """`collate_fn` for `TensorDictDataset.__getitems__`, whose batches are already stacked."""
    return batch


def loaders(train: TensorDictDataset, val: TensorDictDataset | None, batch_size: int,
            seed: int) -> tuple[DataLoader, DataLoader | None]:
    """Shuffled training batches (seeded) and validation batches."""
    tr = DataLoader(train, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed),
                    collate_fn=_batched)
    va = None if val is None or len(val) == 0 else DataLoader(val, batch_size=max(batch_size, 1024),
                                                              collate_fn=_batched)
    return tr, va


def accelerator(device: str) -> str:
    """"auto"/"cuda" → "gpu" where CUDA is present, else "cpu"; anything else as given."""
    if device in ("auto", "cuda", "gpu"):
        return "gpu" if torch.cuda.is_available() else "cpu"
    return device


def resolve_precision(setting: str, accel: str) -> str:
    """"auto": bf16 (or fp16) mixed precision on a GPU, full precision on the CPU."""
    if setting != "auto":
        return setting
    if accel == "gpu":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


@dataclass
class FitResult:
    """What a `fit_module` run did: epochs run, and the epoch whose weights were kept with its
    validation loss; where it ran (accelerator, precision, processes)."""

    epochs: int
    best_epoch: int | None
    best_score: float | None = None
    accelerator: str = "cpu"
    precision: str = "32-true"
    world_size: int = 1


class BestWeights(L.Callback):
    """Keep, in memory, the weights of the epoch with the lowest validation loss (a checkpoint
    that needs neither a file nor unpickling to restore), and put them back when training ends.

    The restore happens inside the training process, and the best epoch and its loss are left
    in `trainer.callback_metrics`, so that both also reach the main process of a run whose
    workers are spawned (`strategy: ddp_spawn`)."""

    def __init__(self, monitor: str = "val_loss") -> None:
        self.monitor = monitor
        self.state: dict[str, torch.Tensor] | None = None
        self.epoch: int | None = None
        self.score: float | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or trainer.sanity_checking:
            return
        value = float(value)
        if self.score is None or value < self.score:
            self.score, self.epoch = value, int(trainer.current_epoch)
            self.state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.callback_metrics["epochs_run"] = torch.tensor(float(trainer.current_epoch))
        if self.state is not None:
            pl_module.load_state_dict(self.state)
            trainer.callback_metrics["best_epoch"] = torch.tensor(float(self.epoch))
            trainer.callback_metrics["best_val_loss"] = torch.tensor(float(self.score))


def loop_applies(module: LitModule, accel: str, precision: str, strategy: str, devices: int | str) -> bool:
    """Whether `FitLoop` can stand in for the Trainer: one CPU process, full precision, a
    constant learning rate (a schedule asks the Trainer for the run's step count)."""
    return (accel == "cpu" and str(strategy) == "auto" and str(devices) in ("1", "auto")
            and resolve_precision(precision, accel) == "32-true" and module.schedule == "constant"
            and module.warmup_epochs == 0)


class FitLoop:
    """The Trainer's automatic optimisation, early stopping and `BestWeights`, as a plain loop
    over a `LitModule` on one CPU process: per batch `training_step`, zero the gradients,
    backward, clip the gradient norm, `optimizer.step`; per epoch the validation loss (the
    module's batch-size-weighted mean, as logged), early stopping when it has not improved
    for `patience` epochs or is not finite, the best epoch's weights restored at the end.
    Deterministic algorithms are on while it runs, as with `Trainer(deterministic=True)`."""

    def __init__(self, max_epochs: int, patience: int, gradient_clip: float | None) -> None:
        self.max_epochs, self.patience, self.gradient_clip = max_epochs, patience, gradient_clip

    def run(self, module: LitModule, train: DataLoader, val: DataLoader | None) -> FitResult:
        from fusion.evaluation.progress import report_progress, watching

        opt = module.configure_optimizers()
        params = [p for p in module.parameters() if p.requires_grad]
        best_state, best_epoch, best_score, wait, epochs = None, None, None, 0, 0
        report = watching()
        was = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(True)
        try:
            for epoch in range(self.max_epochs):
                module.train()
                for i, batch in enumerate(train):
                    loss = module.training_step(batch, i)
                    opt.zero_grad()
                    loss.backward()
                    if self.gradient_clip:
                        torch.nn.utils.clip_grad_norm_(params, self.gradient_clip)
                    opt.step()
                module._loss_sums.pop("train", None)
                epochs = epoch + 1
                if val is None:
                    continue
                module.eval()
                with torch.inference_mode():
                    for i, batch in enumerate(val):
                        module.validation_step(batch, i)
                total, n = module._loss_sums.pop("val", (0.0, 0))
                for metric in module.metrics.values():
                    metric.reset()
                score = float(total / n) if n else float("nan")
                if report:
                    report_progress(score, epoch)
                if not math.isfinite(score):
                    break
                if best_score is None or score < best_score:
                    best_score, best_epoch, wait = score, epoch, 0
                    best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
                else:
                    wait += 1
                    if wait >= self.patience:
                        break
        finally:
            torch.use_deterministic_algorithms(was)
        if best_state is not None:
            module.load_state_dict(best_state)
        module.eval()
        return FitResult(epochs, best_epoch, best_score)


def fit_module(module: LitModule, train: DataLoader, val: DataLoader | None, *, seed: int,
               max_epochs: int, patience: int = 15, device: str = "auto", precision: str = "auto",
               strategy: str = "auto", devices: int | str = 1, gradient_clip: float | None = None,
               engine: Literal["auto", "lightning", "loop"] = "auto") -> FitResult:
    """Train `module` with the project's Trainer settings, then keep its best weights.

    With validation data, early stopping (after `patience` epochs without improvement) and
    checkpointing (`BestWeights`) both monitor the validation loss, and the best epoch's
    weights are restored; without it the module trains for `max_epochs` epochs.

    Args:
        device: "auto" (a GPU when present), "cpu", "cuda"/"gpu", or any Lightning accelerator.
        precision: "auto" (bf16/fp16 mixed precision on a GPU, 32-bit on the CPU) or a
            Lightning precision such as "32-true".
        strategy, devices: Lightning's (e.g. strategy "ddp" with devices 2).
        engine: "lightning" (the Trainer), "loop" (`FitLoop`; only where `loop_applies`), or
            "auto": the loop where it applies, else the Trainer.

    Raises:
        ValueError: engine "loop" where it does not apply.
    """
    from lightning.pytorch.callbacks import EarlyStopping

    L.seed_everything(seed, workers=True, verbose=False)
    accel = accelerator(device)
    if engine != "lightning":
        fits = loop_applies(module, accel, precision, strategy, devices)
        if engine == "loop" and not fits:
            raise ValueError("engine 'loop' runs one CPU process in full precision with a constant learning "
                             f"rate; this fit is on {accel!r} in {resolve_precision(precision, accel)!r} with "
                             f"strategy {strategy!r}, devices {devices!r}, schedule {module.schedule!r}, "
                             f"warmup {module.warmup_epochs}")
        if fits:
            return FitLoop(max_epochs, patience, gradient_clip).run(module.cpu(), train, val)
    from fusion.evaluation.progress import watching

    best = BestWeights() if val is not None else None
    callbacks = [EarlyStopping("val_loss", patience=patience), best] if best is not None else []
    if best is not None and watching():
        callbacks.append(ReportProgress())
    with quiet_lightning():
        trainer = L.Trainer(
            max_epochs=max_epochs, callbacks=callbacks, accelerator=accel, devices=devices,
            strategy=strategy, precision=resolve_precision(precision, accel),
            gradient_clip_val=gradient_clip, deterministic=True if accel == "cpu" else "warn",
            logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, num_sanity_val_steps=0,
            limit_val_batches=0 if val is None else 1.0)
        trainer.fit(module, train_dataloaders=train, val_dataloaders=val)
    where = {"accelerator": accel, "precision": str(trainer.precision), "world_size": int(trainer.world_size)}
    metrics = trainer.callback_metrics
    epochs = int(metrics["epochs_run"]) if "epochs_run" in metrics else int(trainer.current_epoch)
    result = FitResult(epochs, None, **where)
    if "best_epoch" in metrics:  # BestWeights restored that epoch's weights
        result = FitResult(epochs, int(metrics["best_epoch"]), float(metrics["best_val_loss"]), **where)
    module.eval().cpu()
    return result


class ReportProgress(L.Callback):
    """Each epoch's validation loss to `fusion.evaluation.progress` (a sweep's pruner)."""

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from fusion.evaluation.progress import report_progress

        loss = trainer.callback_metrics.get("val_loss")
        if loss is not None and not trainer.sanity_checking:
            report_progress(float(loss), trainer.current_epoch)


class quiet_lightning:
    """Silence Lightning's banners and the warnings it raises for small in-memory datasets
    (unless the environment sets FUSION_VERBOSE=1, as `fusion train --verbose` does)."""

    def __enter__(self) -> quiet_lightning:
        self._levels = {}
        self._warnings = None
        if os.environ.get("FUSION_VERBOSE") == "1":
            return self
        for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
            log = logging.getLogger(name)
            self._levels[name] = log.level
            log.setLevel(logging.ERROR)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        for pattern in (".*does not have many workers.*", ".*val_dataloader.*", ".*LeafSpec.*",
                        ".*TreeSpec.*", ".*number of training batches.*", ".*GPU available.*"):
            warnings.filterwarnings("ignore", message=pattern)
        return self

    def __exit__(self, *exc) -> None:
        if self._warnings is None:
            return
        self._warnings.__exit__(*exc)
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
