"""Fine-tuning a local Hugging Face text encoder for a target (meant for a GPU).

The input is one modality of token ids (the `tokens` extractor: `tok_###` columns, NaN past
the end of the text). The encoder (`model`: the bundled all-MiniLM-L6-v2, a local folder, or a
cached Hugging Face id — nothing is downloaded) is fine-tuned with a mean-pooled linear head:
AdamW with warm-up and linear-to-cosine decay, early stopping on the first inner fold's
validation part, temperature calibration on that part's predictions; with `refit` the
network is then trained again on all the training data for the best number of epochs. The
saved model holds the encoder's configuration and weights (safetensors), so loading it needs
no other folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from fusion.models.base import MODELS, Blocks, FusionModel, Inner
from fusion.models.calibration import Calibrator, softmax
from fusion.models.neural import TrainingParams, capture_input, inner_scores
from fusion.models.targets import Targets


class TextFinetuneParams(TrainingParams):
    model: str = "all-MiniLM-L6-v2"
    lr: float = Field(3e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    batch_size: int = Field(32, ge=1)
    max_epochs: int = Field(6, ge=1)
    patience: int = Field(2, ge=1)
    warmup_epochs: float = Field(0.5, ge=0)
    schedule: Literal["constant", "cosine"] = "cosine"
    gradient_clip: float | None = Field(1.0, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    class_weight: Literal["balanced"] | None = None
    calibration: Literal["temperature", "none"] = "temperature"
    refit: bool = True


@MODELS.register("text-finetune")
class TextFinetune(FusionModel):
    """A fine-tuned text encoder over one modality of token ids.

    Args:
        model: the encoder to start from (see the module docstring).
        lr, weight_decay, batch_size, max_epochs, patience, warmup_epochs, schedule,
            gradient_clip, device, precision, strategy, devices: training (`fusion.lit`).
        dropout: before the head.
        class_weight: "balanced" weights the loss by inverse class frequency.
        calibration: temperature scaling on the first inner fold's validation predictions.
        refit: train again on all the training data for the best number of epochs.
    """

    Params = TextFinetuneParams
    tag = "text-finetune"
    needs_inner = True
    heads = frozenset({"classes", "ordinal"})
    inputs = frozenset({"tokens"})

    def _fit(self, blocks: Blocks, targets: Targets, *, inner: Inner, seed: int, val=None) -> TextFinetune:
        y, task, n_classes = targets.main
        if task != "classification":
            raise ValueError("text-finetune predicts classes only")
        if len(blocks) != 1:
            raise ValueError(f"text-finetune takes one modality of token ids (the `tokens` extractor), got "
                             f"{list(blocks)}")
        if not inner:
            raise ValueError("text-finetune early-stops and calibrates on inner-validation data: it needs "
                             "inner folds (cv.inner_splits ≥ 2)")
        self._start_fit(blocks, task, n_classes)
        (self.modality_,) = self.modalities
        X = np.asarray(blocks[self.modality_], dtype=np.float64)
        self._check_tokens(X)
        y = np.asarray(y).astype(np.int64)
        self.weights_ = None
        if self.params.class_weight == "balanced":
            counts = np.bincount(y, minlength=n_classes).astype(float)
            self.weights_ = tuple(float(len(y) / (n_classes * c)) if c else 1.0 for c in counts)
        from features.text import resolve_model

        source = resolve_model(self.params.model)
        tr, va = inner[0]
        net, result = self._train(X, y, tr, va, seed, source)
        self.best_epoch_ = (result.best_epoch + 1) if result.best_epoch is not None else result.epochs
        self.trained_on_ = f"{result.accelerator} ({result.precision})"
        logits = self._logits(net, X[va])
        self.inner_scores_ = inner_scores(y[va], softmax(logits), n_classes) if len(va) else None
        self.temperature_ = 1.0
        if self.params.calibration == "temperature" and len(va) >= 2:
            self.temperature_ = Calibrator("temperature").fit(softmax(logits), y[va]).temperature_
        self.inner_proba_ = np.full((len(y), n_classes), np.nan)
        self.inner_proba_[va] = softmax(logits / self.temperature_)
        if self.params.refit:
            net, _ = self._train(X, y, np.arange(len(y)), None, seed, source, epochs=self.best_epoch_)
        self.net_ = net
        self.fitted_ = True
        return self

    @staticmethod
    def _check_tokens(X: np.ndarray) -> None:
        present = ~np.isnan(X)
        ids = X[present]
        if not len(ids) or (ids < 0).any() or (ids != np.round(ids)).any():
            raise ValueError("text-finetune needs token ids (non-negative integers; the `tokens` extractor), "
                             "not real-valued features")

    def _tensors(self, X: np.ndarray) -> dict[str, dict]:
        import torch

        mask = ~np.isnan(X)
        ids = np.where(mask, X, 0).astype(np.int64)
        return {"x": {self.modality_: torch.as_tensor(ids)}, "mask": {self.modality_: torch.as_tensor(mask)}}

    def _train(self, X, y, tr, va, seed, source, epochs=None):
        import torch

        from fusion.lit import Head, LitModule, TensorDictDataset, fit_module, loaders
        from fusion.models.nets.text_finetune import HFEncoder

        p = self.params
        torch.manual_seed(seed)
        net = HFEncoder(self.modality_, self.n_classes, model=source, dropout=p.dropout)

        def dataset(rows):
            return TensorDictDataset(self._tensors(X[rows]), {"y": torch.as_tensor(y[rows])})

        train, val = loaders(dataset(tr), dataset(va) if va is not None else None, p.batch_size, seed)
        module = LitModule(net, [Head("y", "multiclass", self.n_classes, class_weights=self.weights_)],
                           **p.module_kwargs())
        result = fit_module(module, train, val, seed=seed, max_epochs=epochs or p.max_epochs, **p.trainer_kwargs())
        return module.net, result

    def _logits(self, net, X: np.ndarray, batch: int = 256) -> np.ndarray:
        import torch

        net.eval()
        outs = []
        with torch.no_grad():
            for a in range(0, len(X), batch):
                t = self._tensors(X[a:a + batch])
                outs.append(net(**t).float().numpy())
        return np.concatenate(outs) if outs else np.empty((0, self.n_classes))

    def predict_proba(self, blocks: Blocks, modalities: Sequence[str] | None = None) -> np.ndarray:
        self.check_fitted()
        X = np.asarray(blocks[self.modality_], dtype=np.float64)
        if modalities is not None and self.modality_ not in modalities:
            return np.full((len(X), self.n_classes), 1.0 / self.n_classes)
        proba = softmax(self._logits(self.net_, np.where(np.isnan(X).all(1, keepdims=True), 0, X)) /
                        self.temperature_)
        missing = np.isnan(X).all(1)  # no text: the prior of no information
        proba[missing] = 1.0 / self.n_classes
        return proba

    def uncalibrated_proba(self, blocks: Blocks) -> np.ndarray | None:
        if self.temperature_ == 1.0:
            return None
        X = np.asarray(blocks[self.modality_], dtype=np.float64)
        return softmax(self._logits(self.net_, X))

    def inner_predictions(self) -> np.ndarray | None:
        """The first inner fold's network's (calibrated) predictions of its validation part (NaN
        for the other training samples)."""
        self.check_fitted()
        return getattr(self, "inner_proba_", None)

    def embedding(self, blocks: Blocks) -> np.ndarray | None:
        self.check_fitted()
        with capture_input(self.net_.head) as captured:
            self._logits(self.net_, np.asarray(blocks[self.modality_], dtype=np.float64))
        return np.concatenate(captured) if captured else None

    def summary(self) -> dict[str, Any]:
        d = {"modalities": self.modalities, "best_epoch": self.best_epoch_, "temperature": self.temperature_,
             "trained_on": self.trained_on_}
        if getattr(self, "inner_scores_", None):
            d["inner_validation"] = self.inner_scores_
        return d

    def save_state(self, folder: Path) -> dict[str, Any]:
        from safetensors.torch import save_file

        weights = f"{folder.name}.encoder.safetensors" if folder.name else "encoder.safetensors"
        save_file({k: v.contiguous() for k, v in self.net_.state_dict().items()}, str(folder / weights))
        return {"net_file": weights, "encoder_config": self.net_.encoder_config(), "modality": self.modality_,
                "temperature": self.temperature_, "best_epoch": self.best_epoch_,
                "trained_on": self.trained_on_}

    def load_state(self, state: dict[str, Any], folder: Path) -> None:
        from safetensors.torch import load_file

        from fusion.models.nets.text_finetune import HFEncoder
        from fusion.persist import model_file

        self.modality_, self.temperature_ = state["modality"], float(state["temperature"])
        self.best_epoch_, self.trained_on_ = state["best_epoch"], state.get("trained_on")
        self.net_ = HFEncoder(self.modality_, self.n_classes, config=state["encoder_config"])
        self.net_.load_state_dict(load_file(str(model_file(folder, state["net_file"]))))
        self.net_.eval()
