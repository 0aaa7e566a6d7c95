"""A frame-sequence classifier: 1-D convolutions over time on each sequence modality (log-Mel
frames, openSMILE low-level descriptors), masked attention pooling to one vector, fusion of
the available modalities by their mean, and a linear head — with light augmentation during
training (time masking, feature masking, a random gain).

The classic recipe of speech emotion recognition from frame-level features (convolutions
over time, attention pooling; e.g. Mirsamadi et al. 2017) at a size that trains on a CPU for
corpora of a few thousand clips and scales with `hidden` / `layers` on a GPU.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from fusion.models.nets.base import Net
from fusion.models.nets.layers import MaskedAttentionPool, mean_of_available


class ConvEncoder(nn.Module):
    """(n, T, d) frames with an (n, T) mask → (n, hidden): conv blocks (kernel `kernel`,
    dilation doubling per layer) with residual connections, then masked attention pooling."""

    def __init__(self, n_in: int, hidden: int, layers: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.proj = nn.Conv1d(n_in, hidden, 1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv1d(hidden, hidden, kernel, padding=(kernel // 2) * 2 ** i, dilation=2 ** i),
                          nn.BatchNorm1d(hidden), nn.GELU(), nn.Dropout(dropout))
            for i in range(layers))
        self.pool = MaskedAttentionPool(hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(1).to(x.dtype)
        h = self.proj(x.transpose(1, 2)) * m
        for block in self.blocks:
            h = (h + block(h)) * m
        return self.pool(h.transpose(1, 2), mask)


def augment(x: torch.Tensor, mask: torch.Tensor, time_mask: float, feature_mask: float,
            gain: float) -> tuple[torch.Tensor, torch.Tensor]:
    """SpecAugment-style masking on standardised frames: one span of up to `time_mask` of each
    sequence's frames hidden (never all of them), up to `feature_mask` of the channels set to
    zero (the mean), and a per-sample offset with sd `gain` added to every channel."""
    n, t, d = x.shape
    if time_mask > 0 and t > 1:
        lengths = mask.sum(1).clamp_min(1)
        width = (torch.rand(n, device=x.device) * time_mask * lengths).long()
        start = (torch.rand(n, device=x.device) * (lengths - width).clamp_min(1)).long()
        pos = torch.arange(t, device=x.device).unsqueeze(0)
        hide = (pos >= start.unsqueeze(1)) & (pos < (start + width).unsqueeze(1))
        keep_some = (mask & ~hide).any(1, keepdim=True)
        mask = torch.where(keep_some, mask & ~hide, mask)
    if feature_mask > 0:
        width = (torch.rand(n, device=x.device) * feature_mask * d).long()
        start = (torch.rand(n, device=x.device) * (d - width).clamp_min(1)).long()
        ch = torch.arange(d, device=x.device).unsqueeze(0)
        hide = (ch >= start.unsqueeze(1)) & (ch < (start + width).unsqueeze(1))
        x = x.masked_fill(hide.unsqueeze(1), 0.0)
    if gain > 0:
        x = x + torch.randn(n, 1, 1, device=x.device, dtype=x.dtype) * gain
    return x, mask


class FrameCNN(Net):
    """`forward(x, mask, times=None)`: x {modality: (n, T, d) frames or (n, d) pooled}, mask
    {modality: (n, T) or (n,) bool} → (n, n_out).

    Args:
        dims: feature count of each modality.
        sequence: the modalities given as frame sequences (the others are pooled rows).
        n_out: classes, or 1 for a score.
        hidden, layers, kernel, dropout: the convolutional encoders.
        modality_dropout: during training, hide each available modality with this probability.
        time_mask, feature_mask, gain: augmentation during training (see `augment`).
    """

    def __init__(self, dims: Mapping[str, int], sequence: list[str], n_out: int, hidden: int = 64,
                 layers: int = 3, kernel: int = 5, dropout: float = 0.2, modality_dropout: float = 0.0,
                 time_mask: float = 0.2, feature_mask: float = 0.15, gain: float = 0.1) -> None:
        super().__init__()
        self.modalities = list(dims)
        self.sequence = set(sequence)
        self.encoders = nn.ModuleList(
            ConvEncoder(d, hidden, layers, kernel, dropout) if m in self.sequence
            else nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout))
            for m, d in dims.items())
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, n_out)
        self.modality_dropout = modality_dropout
        self.aug = (time_mask, feature_mask, gain)

    def forward(self, x: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor],
                times: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        vectors, avail = [], []
        for m, enc in zip(self.modalities, self.encoders, strict=True):
            if m in self.sequence:
                xm, mm = x[m], mask[m]
                if self.training:
                    xm, mm = augment(xm, mm, *self.aug)
                vectors.append(enc(xm, mm))
                avail.append(mask[m].any(dim=1))
            else:
                vectors.append(enc(x[m]))
                avail.append(mask[m])
        pooled = mean_of_available(vectors, avail, self.modality_dropout, self.training)
        return self.head(self.norm(pooled))

    @classmethod
    def example(cls, batch: int = 4):
        net = cls({"a": 5, "b": 3}, ["a"], 3, hidden=8, layers=2)
        mask_a = torch.ones(batch, 12, dtype=torch.bool)
        mask_a[:, 9:] = False
        x = {"a": torch.randn(batch, 12, 5), "b": torch.randn(batch, 3)}
        mask = {"a": mask_a, "b": torch.ones(batch, dtype=torch.bool)}
        return net, {"x": x, "mask": mask}, {"y": (batch, 3)}
