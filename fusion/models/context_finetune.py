"""End-to-end context model (EMOTIC): the image backbones fine-tuned with the fusion layers and
heads of `context-fusion`, on the images themselves, with augmentation; meant for a GPU (mixed
precision there), runs on the CPU with small backbones and images.

Inputs are crops made as the `image` extractor makes them (`ImageRows`: each row's sample and
one crop recipe per stream); decoded once per epoch by the data loader's workers, augmented in
training (horizontal flip, brightness and contrast jitter, a small translation). Backbone
weights come from local files (`weights: {stream: path}`), never downloaded. Same interface as
`ContextFusion` (the one model contract, its inputs `ImageRows` instead of embedding blocks), so
`fusion train` evaluates it the same way.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field

from features.base import Sample
from fusion.models.base import MODELS
from fusion.models.context_fusion import ContextParams, MultilabelModel
from fusion.models.targets import Targets


class FinetuneParams(ContextParams):
    backbone: str = "resnet18"
    weights: dict[str, str] = Field(default_factory=dict)
    image_size: int = Field(224, ge=16)
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
        self.warned: set[tuple[str, str]] = set()

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
            except Exception as err:  # noqa: BLE001 - an unusable crop is a missing stream, masked
                # said, naming the file, once per sample and stream in this process; the stream's
                # placeholder values are masked out by the network, never used as data
                key = (self.rows.samples[i].sample_id, s)
                if key not in self.warned:
                    self.warned.add(key)
                    warnings.warn(f"{s} crop of sample {key[0]!r} left out (masked): {err}", stacklevel=2)
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


@MODELS.register("context-finetune")
class ContextFinetune(MultilabelModel):
    """See the module docstring; parameters are `FinetuneParams` (`ContextParams` with the
    backbone, its weights per stream, the image size, augmentation and loader workers)."""

    Params = FinetuneParams
    inputs = frozenset({"images"})

    def _net(self):
        from fusion.models.nets.context_finetune import ContextFinetuneNet

        p = self.params
        return ContextFinetuneNet({s: p.backbone for s in self.streams_}, self.n_labels_, max(self.n_cont_, 1),
                                  hidden=p.hidden, dropout=p.dropout, fusion=p.fusion, n_mix=self.n_mix_)

    def _state(self) -> dict[str, Any]:
        return {"recipes": self.recipes_}

    def _restore(self, state: dict[str, Any]) -> None:
        self.recipes_ = state["recipes"]

    def _loader(self, rows: ImageRows, Y, V, M=None, *, train: bool, seed: int):
        import torch
        from torch.utils.data import DataLoader

        data = _Images(rows, self.params.image_size, self._targets(Y, V, M), train)
        return DataLoader(data, batch_size=self.params.batch_size, shuffle=train, num_workers=self.params.num_workers,
                          generator=torch.Generator().manual_seed(seed) if train else None)

    def _fit(self, rows: ImageRows, targets: Targets, *, inner=(), seed: int = 0,
             val: tuple[ImageRows, Targets] | None = None) -> ContextFinetune:
        """Fine-tune on the rows' images (multi-label targets as `ContextFusion`'s, VAD-mixture
        included); early stopping and thresholds on `val`.

        Raises:
            ValueError: weights named for a stream the model does not have.
            ExtractionError: a weights file that is missing or does not fit the backbone.
        """
        Y, V, M, mixture = targets.labels, targets.continuous, targets.distribution, targets.mixture
        val = None if val is None else (val[0], val[1].labels, val[1].continuous, val[1].distribution)
        unknown = [s for s in self.params.weights if s not in rows.streams]
        if unknown:
            raise ValueError(f"weights given for stream {unknown[0]!r}, the model has {list(rows.streams)}")
        self._start(list(rows.streams), Y, V, M, mixture)
        self.recipes_ = dict(rows.streams)
        train = self._loader(rows, Y, V, M, train=self.params.augment, seed=seed)
        vl = self._loader(*val, train=False, seed=seed) if val is not None else None
        self._train(train, vl, val, seed, build=self._net_with_weights)
        return self

    def _net_with_weights(self):
        """The network with each stream's backbone loaded from its local weights file."""
        from features.image import load_backbone

        net = self._net()
        for s, path in self.params.weights.items():
            net.backbones[s].load_state_dict(load_backbone(self.params.backbone, path, 0, "cpu").state_dict())
        return net

    def _forward(self, rows: ImageRows) -> tuple[dict, np.ndarray]:
        """The network's outputs over the rows' crops; a person none of whose crops could be
        made is not present (NaN rows in the predictions)."""
        import torch

        loader = self._loader(rows, np.zeros((len(rows), self.n_labels_)), None, train=False, seed=0)
        outs: dict[str, list] = {}
        present = []
        with torch.no_grad():
            for inputs, _ in loader:
                for k, v in self.net_(**inputs).items():
                    outs.setdefault(k, []).append(v)
                present.append(torch.stack(list(inputs["mask"].values()), 1).any(1).numpy())
        return {k: torch.cat(v) for k, v in outs.items()}, np.concatenate(present)

    def _keep(self, inputs: ImageRows, modalities=None) -> ImageRows:
        if modalities is None or set(modalities) >= set(self.modalities):
            return inputs
        raise ValueError(f"{type(self).__name__} predicts from every stream's images ({self.modalities}); "
                         "fit it on a subset instead")
