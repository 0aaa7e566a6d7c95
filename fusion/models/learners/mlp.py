"""A small multilayer perceptron trained through `fusion.lit` (GPU when present).

torch and Lightning are imported when the learner is used, not when it is registered.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from fusion.models.learners.base import LEARNERS, Learner, balanced_weights
from fusion.models.neural import TrainingParams
from fusion.persist import model_file


class MLPParams(TrainingParams):
    hidden: int = Field(64, ge=1)
    layers: int = Field(1, ge=1)
    dropout: float = Field(0.3, ge=0, lt=1)
    weight_decay: float = Field(1e-3, ge=0)


@LEARNERS.register("mlp")
class MLPLearner(Learner):
    """z-scored inputs (median-imputed) → `fusion.models.nets.mlp.MLP`; early stopping and
    checkpointing on `eval_set` loss, whose best weights are kept.

    Args:
        hidden, layers, dropout: the network.
        lr, weight_decay, batch_size, max_epochs, patience, …: see `TrainingParams`.
    """

    Params = MLPParams

    def _net(self, n_in: int):
        from fusion.models.nets.mlp import MLP

        p = self.params
        return MLP(n_in, self.n_classes if self.task == "classification" else 1, p.hidden, p.layers, p.dropout)

    def _heads(self, y: np.ndarray | None = None):
        from fusion.lit import Head

        if self.task == "regression":
            return [Head("y", "regression", 1)]
        weights = None
        if y is not None:
            w = balanced_weights(y)
            per_class = np.ones(self.n_classes)
            for c in np.unique(y):
                per_class[int(c)] = w[y == c][0]
            weights = tuple(float(v) for v in per_class)
        return [Head("y", "multiclass", self.n_classes, class_weights=weights)]

    def fit(self, X, y, *, task="classification", n_classes=2, seed=0, eval_set=None, n_iter=None):
        import torch

        from fusion.lit import LitModule, TensorDictDataset, fit_module, loaders

        p = self.params
        self.task, self.n_classes = task, n_classes
        Z = self.fit_scaling(X).astype(np.float32)
        dtype = torch.long if task == "classification" else torch.float32

        def dataset(Xs, ys):
            return TensorDictDataset({"x": torch.as_tensor(Xs)}, {"y": torch.as_tensor(ys, dtype=dtype)})

        torch.manual_seed(seed)
        self.module_ = LitModule(self._net(X.shape[1]), self._heads(y), **p.module_kwargs())
        val = None if eval_set is None else dataset(self._scale(eval_set[0]), eval_set[1])
        train, val = loaders(dataset(Z, y), val, p.batch_size, seed)
        result = fit_module(self.module_, train, val, seed=seed, max_epochs=n_iter or p.max_epochs,
                            **p.trainer_kwargs())
        self.n_iter_ = result.best_epoch + 1 if result.best_epoch is not None else result.epochs
        self.fitted_ = True
        return self

    def save(self, prefix):
        from safetensors.torch import save_file

        path = prefix.with_suffix(".mlp.safetensors")
        save_file({k: v.contiguous() for k, v in self.module_.net.state_dict().items()}, str(path))
        return {"task": self.task, "n_classes": self.n_classes, "params": self.params.model_dump(),
                "n_in": int(len(self.mean_)), "median": self.median_.tolist(), "mean": self.mean_.tolist(),
                "scale": self.scale_.tolist(), "file": path.name}

    @classmethod
    def load(cls, info, prefix):
        from safetensors.torch import load_file

        from fusion.lit import LitModule

        self = cls(**info["params"])
        self.task, self.n_classes = info["task"], info["n_classes"]
        self.median_, self.mean_, self.scale_ = (np.array(info[k]) for k in ("median", "mean", "scale"))
        net = self._net(info["n_in"])
        net.load_state_dict(load_file(str(model_file(prefix.parent, info["file"]))))
        self.module_ = LitModule(net, self._heads()).eval()
        self.fitted_ = True
        return self

    def _scale(self, X):
        return ((np.where(np.isnan(X), self.median_, X) - self.mean_) / self.scale_).astype(np.float32)

    def _forward(self, X):
        import torch

        self.check_fitted()
        with torch.no_grad():
            return self.module_.net(torch.as_tensor(self._scale(X))).float().numpy()

    def embed(self, X):
        """The hidden layer's output (the head's input)."""
        from fusion.models.neural import capture_input

        with capture_input(self.module_.net.head) as captured:
            self._forward(X)
        return captured[0]

    def predict_proba(self, X):
        out = self._forward(X)
        e = np.exp(out - out.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    def predict(self, X):
        return self._forward(X)[:, 0]
