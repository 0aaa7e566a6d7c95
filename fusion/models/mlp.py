"""A small multilayer perceptron trained with Lightning (`fusion.lit`), GPU when present.

torch and Lightning are imported when the learner is used, not when it is registered.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from pydantic import Field

from features.base import Params
from fusion.models.learners import LEARNERS, Learner, balanced_weights


class MLPParams(Params):
    hidden: int = Field(64, ge=1)
    layers: int = Field(1, ge=1)
    dropout: float = Field(0.3, ge=0, lt=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-3, ge=0)
    batch_size: int = Field(64, ge=1)
    max_epochs: int = Field(200, ge=1)
    patience: int = Field(15, ge=1)
    device: str = "auto"


@LEARNERS.register("mlp")
class MLPLearner(Learner):
    """z-scored inputs (median-imputed) → `MLP`, early stopping on `eval_set` loss."""

    Params = MLPParams

    def fit(self, X, y, *, task="classification", n_classes=2, seed=0, eval_set=None, n_iter=None):
        import lightning as L
        import torch
        from lightning.pytorch.callbacks import EarlyStopping

        from fusion.lit import ArrayDataModule, LitModel
        from fusion.models.nets import MLP

        p = self.params
        self.task, self.n_classes = task, n_classes
        Z = self.fit_scaling(X).astype(np.float32)
        L.seed_everything(seed, workers=True, verbose=False)
        net = MLP(X.shape[1], n_classes if task == "classification" else 1, p.hidden, p.layers, p.dropout)
        weights = None
        if task == "classification":
            w = balanced_weights(y)
            per_class = np.ones(n_classes)
            for c in np.unique(y):
                per_class[int(c)] = w[y == c][0]
            weights = torch.as_tensor(per_class, dtype=torch.float32)
        self.module_ = LitModel(net, task, n_classes, p.lr, p.weight_decay, weights)
        val = None if eval_set is None else (self._scale(eval_set[0]), eval_set[1])
        data = ArrayDataModule(Z, y, task, p.batch_size, val, seed)
        callbacks = [EarlyStopping("val_loss", patience=p.patience)] if val is not None else []
        accelerator = "gpu" if (p.device in ("auto", "cuda") and torch.cuda.is_available()) else "cpu"
        trainer = L.Trainer(max_epochs=n_iter or p.max_epochs, callbacks=callbacks, accelerator=accelerator,
                            devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, deterministic=True,
                            limit_val_batches=0 if val is None else 1.0)
        logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*val_dataloader.*")
            trainer.fit(self.module_, datamodule=data)
        self.n_iter_ = int(trainer.current_epoch)
        self.module_.eval().cpu()
        self.fitted_ = True
        return self

    def save(self, prefix):
        import torch

        path = prefix.with_suffix(".mlp.pt")
        torch.save(self.module_.net.state_dict(), path)
        return {"task": self.task, "n_classes": self.n_classes, "params": self.params.model_dump(),
                "n_in": int(len(self.mean_)), "median": self.median_.tolist(), "mean": self.mean_.tolist(),
                "scale": self.scale_.tolist(), "file": path.name}

    @classmethod
    def load(cls, info, prefix):
        import torch

        from fusion.lit import LitModel
        from fusion.models.nets import MLP

        self = cls(**info["params"])
        p = self.params
        self.task, self.n_classes = info["task"], info["n_classes"]
        self.median_, self.mean_, self.scale_ = (np.array(info[k]) for k in ("median", "mean", "scale"))
        net = MLP(info["n_in"], self.n_classes if self.task == "classification" else 1, p.hidden, p.layers,
                  p.dropout)
        net.load_state_dict(torch.load(prefix.parent / info["file"], weights_only=True))
        self.module_ = LitModel(net, self.task, self.n_classes).eval()
        self.fitted_ = True
        return self

    def _scale(self, X):
        return ((np.where(np.isnan(X), self.median_, X) - self.mean_) / self.scale_).astype(np.float32)

    def _forward(self, X):
        import torch

        self.check_fitted()
        with torch.no_grad():
            return self.module_(torch.as_tensor(self._scale(X))).numpy()

    def predict_proba(self, X):
        out = self._forward(X)
        e = np.exp(out - out.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    def predict(self, X):
        return self._forward(X)[:, 0]
