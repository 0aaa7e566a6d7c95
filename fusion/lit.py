"""The one LightningModule (and data module) used by every neural model in the project.

A network is a plain `nn.Module`; `LitModel` owns the loss, the metrics (one torchmetrics
object per stage) and the optimiser.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
import torchmetrics
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class LitModel(L.LightningModule):
    """Cross-entropy (classification, optional class weights) or MSE (regression) training."""

    def __init__(self, net: nn.Module, task: str, n_classes: int = 2, lr: float = 1e-3,
                 weight_decay: float = 1e-4, class_weights: torch.Tensor | None = None) -> None:
        super().__init__()
        self.net, self.task, self.lr, self.weight_decay = net, task, lr, weight_decay
        self.register_buffer("class_weights", class_weights if class_weights is not None else torch.ones(
            max(n_classes, 1)))
        if task == "classification":
            self.metrics = nn.ModuleDict({s: torchmetrics.Accuracy(task="multiclass", num_classes=n_classes)
                                          for s in ("train_", "val_")})
        else:
            self.metrics = nn.ModuleDict({s: torchmetrics.MeanAbsoluteError() for s in ("train_", "val_")})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        out = self(x)
        if self.task == "classification":
            loss = nn.functional.cross_entropy(out, y, weight=self.class_weights)
            self.metrics[stage](out.argmax(1), y)
        else:
            out = out.squeeze(-1)
            loss = nn.functional.mse_loss(out, y)
            self.metrics[stage](out, y)
        self.log(f"{stage}loss", loss, prog_bar=False, on_epoch=True, on_step=False)
        self.log(f"{stage}metric", self.metrics[stage], on_epoch=True, on_step=False)
        return loss

    def training_step(self, batch, _):
        return self._step(batch, "train_")

    def validation_step(self, batch, _):
        self._step(batch, "val_")

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


class ArrayDataModule(L.LightningDataModule):
    """Numpy arrays → training and validation loaders."""

    def __init__(self, X: np.ndarray, y: np.ndarray, task: str, batch_size: int = 64,
                 val: tuple[np.ndarray, np.ndarray] | None = None, seed: int = 0) -> None:
        super().__init__()
        self.task, self.batch_size, self.seed = task, batch_size, seed
        self.train = self._dataset(X, y)
        self.val = self._dataset(*val) if val is not None else None

    def _dataset(self, X, y) -> TensorDataset:
        ty = torch.long if self.task == "classification" else torch.float32
        return TensorDataset(torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y, dtype=ty))

    def train_dataloader(self):
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True,
                          generator=torch.Generator().manual_seed(self.seed))

    def val_dataloader(self):
        return DataLoader(self.val, batch_size=len(self.val)) if self.val is not None else []
