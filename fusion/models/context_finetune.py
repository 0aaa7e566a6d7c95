"""End-to-end context model (EMOTIC): the image backbones fine-tuned with the fusion layers and
heads of `context-fusion`, on the images themselves, with augmentation; meant for a GPU (mixed
precision there), runs on the CPU with small backbones and images.

Inputs are crops made as the `image` extractor makes them (`ImageRows`: each row's sample and
one crop recipe per stream); decoded once per epoch by the data loader's workers, augmented in
training (horizontal flip, brightness and contrast jitter, a small translation). Backbone
weights come from local files (`weights: {stream: path}`), never downloaded. Same interface as
`ContextFusion` (`fit`, `predict`, `save` / `load`), so `fusion train` evaluates it the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from features.base import Sample, validate_params
from features.files import atomic_write_text
from fusion.evaluation.multilabel import equal_pr_thresholds
from fusion.models.context_fusion import MULTILABEL_MODELS
from fusion.models.neural import TrainingParams

MANIFEST = "context_finetune.json"
WEIGHTS = "context_finetune.safetensors"


class FinetuneParams(TrainingParams):
    backbone: str = "resnet18"
    weights: dict[str, str] = Field(default_factory=dict)
    image_size: int = Field(224, ge=16)
    hidden: int = Field(128, ge=4)
    dropout: float = Field(0.3, ge=0, lt=1)
    fusion: Literal["concat", "attention"] = "concat"
    category_loss: Literal["dynamic", "bce"] = "dynamic"
    dynamic_c: float = Field(1.2, gt=1.0)
    vad_loss: Literal["margin_l2", "smooth_l1"] = "margin_l2"
    vad_margin: float = Field(0.1, ge=0)
    vad_weight: float = Field(0.5, ge=0)
    augment: bool = True
    num_workers: int = Field(0, ge=0)


@dataclass
class ImageRows:
    """The samples of the rows and, per stream, the `image` extractor parameters that make its
    crop (`crop`, `mask_body`)."""

    samples: list[Sample]
    streams: dict[str, dict[str, Any]]

    def __len__(self) -> int:
        return len(self.samples)

    def take(self, rows) -> ImageRows:
        return ImageRows([self.samples[i] for i in np.asarray(rows)], self.streams)


class _Images:
    """A torch Dataset of crops (and targets), augmented when `train`."""

    def __init__(self, rows: ImageRows, size: int, targets: dict[str, np.ndarray], train: bool) -> None:
        from features.image import ImageEmbeddingExtractor

        self.rows, self.targets, self.train = rows, targets, train
        self.makers = {s: ImageEmbeddingExtractor(image_size=size, **{k: v for k, v in p.items()
                                                                      if k in ("crop", "mask_body")})
                       for s, p in rows.streams.items()}

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        import torch

        x, mask = {}, {}
        # drawn from torch's generator, which Lightning seeds (in the loader's workers too): a new
        # augmentation every epoch, the same ones for the same seed
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,)))) if self.train else None
        for s, maker in self.makers.items():
            try:
                arr = maker.crop(self.rows.samples[i], [])
                ok = True
            except Exception:  # noqa: BLE001 - an unusable crop is a missing stream, masked
                arr, ok = np.zeros((3, maker.params.image_size, maker.params.image_size), np.float32), False
            if rng is not None and ok:
                arr = augment(arr, rng)
            x[s], mask[s] = torch.from_numpy(np.ascontiguousarray(arr)), torch.tensor(ok)
        y = {k: torch.as_tensor(v[i]) for k, v in self.targets.items()}
        return {"x": x, "mask": mask}, y


def augment(arr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Horizontal flip (p = 0.5), brightness and contrast jitter (±20 %), and a translation of
    up to 1/16 of the side (edge pixels repeated), on a normalised (3, S, S) crop."""
    if rng.random() < 0.5:
        arr = arr[:, :, ::-1]
    arr = arr * rng.uniform(0.8, 1.2) + rng.uniform(-0.2, 0.2)
    s = arr.shape[-1]
    dy, dx = rng.integers(-(s // 16), s // 16 + 1, size=2)
    arr = np.pad(arr, ((0, 0), (abs(dy), abs(dy)), (abs(dx), abs(dx))), mode="edge")
    return arr[:, abs(dy) + dy:abs(dy) + dy + s, abs(dx) + dx:abs(dx) + dx + s].astype(np.float32)


@MULTILABEL_MODELS.register("context-finetune")
class ContextFinetune:
    """See the module docstring; parameters are `FinetuneParams` (with `TrainingParams`)."""

    Params = FinetuneParams
    inputs = "images"

    def __init__(self, **params: Any) -> None:
        self.params = validate_params(type(self).__name__, FinetuneParams, params)

    def _net(self, streams: list[str]):
        from fusion.models.nets.base import NETS

        p = self.params
        return NETS.get("context-finetune")({s: p.backbone for s in streams}, self.n_labels_, max(self.n_cont_, 1),
                                             hidden=p.hidden, dropout=p.dropout, fusion=p.fusion)

    def _load_backbone_weights(self, net) -> None:
        from features.image import load_backbone

        for s, path in self.params.weights.items():
            if s not in net.backbones:
                raise ValueError(f"weights given for stream {s!r}, the model has {list(net.backbones)}")
            trained = load_backbone(self.params.backbone, path, 0, "cpu")  # checks the file fits
            net.backbones[s].load_state_dict(trained.state_dict())

    def _loader(self, rows: ImageRows, Y, V, train: bool, seed: int):
        from torch.utils.data import DataLoader

        targets = {"cat": np.asarray(Y, np.float32)}
        if self.n_cont_:
            vv = np.full((len(Y), self.n_cont_), np.nan) if V is None else (V - self.v_mean_) / self.v_sd_
            targets["vad"] = vv.astype(np.float32)
        import torch

        data = _Images(rows, self.params.image_size, targets, train)
        return DataLoader(data, batch_size=self.params.batch_size, shuffle=train, num_workers=self.params.num_workers,
                          generator=torch.Generator().manual_seed(seed) if train else None)

    def fit(self, rows: ImageRows, Y: np.ndarray, V: np.ndarray | None = None, *,
            val: tuple[ImageRows, np.ndarray, np.ndarray | None] | None = None, seed: int = 0) -> ContextFinetune:
        """Fine-tune on the rows' images; early stopping and thresholds on `val`."""
        import torch

        from fusion.lit import Head, LitModule, fit_module

        p = self.params
        self.streams_ = list(rows.streams)
        self.recipes_ = dict(rows.streams)
        self.n_labels_, self.n_cont_ = int(Y.shape[1]), 0 if V is None else int(V.shape[1])
        if V is not None:
            self.v_mean_ = np.nanmean(V, 0)
            self.v_sd_ = np.where(np.nanstd(V, 0) > 0, np.nanstd(V, 0), 1.0)
        heads = [Head("cat", "multilabel", self.n_labels_, loss=p.category_loss, dynamic_c=p.dynamic_c)]
        if self.n_cont_:
            heads.append(Head("vad", "regression", self.n_cont_, weight=p.vad_weight, loss=p.vad_loss,
                              margin=p.vad_margin))
        torch.manual_seed(seed)
        net = self._net(self.streams_)
        self._load_backbone_weights(net)
        train = self._loader(rows, Y, V, p.augment, seed)
        vl = self._loader(*val, train=False, seed=seed) if val is not None else None
        module = LitModule(net, heads, **p.module_kwargs())
        result = fit_module(module, train, vl, seed=seed, max_epochs=p.max_epochs, **p.trainer_kwargs())
        self.net_ = module.net.cpu().eval()
        self.best_epoch_ = result.best_epoch
        self.thresholds_ = np.full(self.n_labels_, 0.5)
        if val is not None:
            P, _ = self.predict(val[0])
            known = ~np.isnan(val[1]).any(1)
            th = equal_pr_thresholds(val[1][known], P[known])
            self.thresholds_ = np.where(np.isnan(th), 0.5, th)
        return self

    def predict(self, rows: ImageRows) -> tuple[np.ndarray, np.ndarray | None]:
        """(n, k) category probabilities and (n, 3) continuous predictions; NaN rows for
        persons none of whose crops could be made."""
        import torch

        loader = self._loader(rows, np.zeros((len(rows), self.n_labels_)), None, False, 0)
        P, V, present = [], [], []
        with torch.no_grad():
            for inputs, _ in loader:
                out = self.net_(**inputs)
                P.append(torch.sigmoid(out["cat"].float()).numpy())
                V.append(out["vad"].float().numpy())
                present.append(torch.stack(list(inputs["mask"].values()), 1).any(1).numpy())
        P, V, ok = np.concatenate(P).astype(float), np.concatenate(V).astype(float), np.concatenate(present)
        P[~ok] = np.nan
        V = V * self.v_sd_ + self.v_mean_ if self.n_cont_ else None
        if V is not None:
            V[~ok] = np.nan
        return P, V

    def save(self, folder: str | Path, extra: dict[str, Any] | None = None) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (WEIGHTS + ".tmp")
        save_file({k: v.contiguous() for k, v in self.net_.state_dict().items()}, str(tmp))
        tmp.replace(folder / WEIGHTS)
        state = {"params": self.params.model_dump(mode="json"), "streams": self.streams_, "recipes": self.recipes_,
                 "n_labels": self.n_labels_, "n_cont": self.n_cont_, "thresholds": self.thresholds_.tolist(),
                 "v_mean": getattr(self, "v_mean_", np.zeros(0)).tolist(),
                 "v_sd": getattr(self, "v_sd_", np.zeros(0)).tolist(), **(extra or {})}
        atomic_write_text(json.dumps(state, indent=1), folder / MANIFEST)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> ContextFinetune:
        """Rebuild a saved model.

        Raises:
            FileNotFoundError: the folder lacks the manifest or the weights, naming the file.
        """
        from safetensors.torch import load_file

        folder = Path(folder)
        for name in (MANIFEST, WEIGHTS):
            if not (folder / name).exists():
                raise FileNotFoundError(f"{folder / name}: missing; not a saved end-to-end context model")
        state = json.loads((folder / MANIFEST).read_text())
        model = cls(**{**state["params"], "weights": {}})
        model.streams_, model.recipes_ = state["streams"], state["recipes"]
        model.n_labels_, model.n_cont_ = state["n_labels"], state["n_cont"]
        model.thresholds_ = np.array(state["thresholds"])
        model.v_mean_, model.v_sd_ = np.array(state["v_mean"]), np.array(state["v_sd"])
        net = model._net(model.streams_)
        net.load_state_dict(load_file(str(folder / WEIGHTS)))
        model.net_ = net.eval()
        return model
