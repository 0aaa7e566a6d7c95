"""Attention over a session's turns, per modality, fused across the available modalities.

Each modality's segments (participant turns, windows) are projected, given sinusoidal
positions from their start times, contextualised by a small Transformer encoder whose padding
and missing segments are masked, and pooled to one vector by masked attention. A modality
given pooled (n, d) rather than as a sequence is projected directly. The session vector is
the mean of the available modalities' vectors; a linear head maps it to the output.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from fusion.models.nets.base import Net
from fusion.models.nets.layers import (
    MaskedAttentionPool,
    encode_modalities,
    mean_of_available,
    padding_mask,
    sinusoidal_positions,
    transformer_encoder,
)


class SequenceEncoder(nn.Module):
    """(n, T, d) segments with a (n, T) mask and (n, T) start times → (n, hidden)."""

    def __init__(self, n_in: int, hidden: int, layers: int, heads: int, dropout: float,
                 time_scale: float) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(n_in, hidden), nn.GELU(), nn.Dropout(dropout))
        self.time_scale = time_scale
        self.encoder = transformer_encoder(hidden, heads, layers, dropout)
        self.pool = MaskedAttentionPool(hidden)

    def encode(self, x: torch.Tensor, mask: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """(n, T, hidden): each segment in the context of the sample's other segments."""
        h = self.proj(x) + sinusoidal_positions(times / self.time_scale, self.proj[0].out_features)
        if self.encoder is not None:
            h = self.encoder(h, src_key_padding_mask=padding_mask(mask))
        return h

    def forward(self, x: torch.Tensor, mask: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        return self.pool(self.encode(x, mask, times), mask)


class TurnAttention(Net):
    """`forward(x, mask, times)`: x {modality: (n, T, d) or (n, d)}, mask {modality: (n, T) or
    (n,) bool}, times {modality: (n, T) segment starts in seconds} → (n, n_out).

    Args:
        dims: feature count of each modality.
        sequence: the modalities given as sequences (the others are pooled rows).
        n_out: classes, or 1 for a score.
        hidden, layers, heads, dropout: the per-modality encoders.
        modality_dropout: during training, hide each available modality with this probability.
        time_scale: seconds per unit of position (positions are start time / time_scale).
    """

    def __init__(self, dims: Mapping[str, int], sequence: list[str], n_out: int, hidden: int = 64,
                 layers: int = 1, heads: int = 4, dropout: float = 0.2, modality_dropout: float = 0.0,
                 time_scale: float = 10.0) -> None:
        super().__init__()
        self.modalities = list(dims)
        self.sequence = set(sequence)
        self.encoders = nn.ModuleList(
            SequenceEncoder(d, hidden, layers, heads, dropout, time_scale) if m in self.sequence
            else nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout))
            for m, d in dims.items())
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, n_out)
        self.modality_dropout = modality_dropout

    def forward(self, x: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor],
                times: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        vectors, avail = encode_modalities(self.modalities, self.sequence, self.encoders, x, mask, times)
        pooled = mean_of_available(vectors, avail, self.modality_dropout, self.training)
        return self.head(self.norm(pooled))

    @classmethod
    def example(cls, batch: int = 4):
        net = cls({"a": 5, "b": 3}, ["a"], 2, hidden=8, heads=2)
        mask_a = torch.ones(batch, 6, dtype=torch.bool)
        mask_a[:, 4:] = False
        x = {"a": torch.randn(batch, 6, 5), "b": torch.randn(batch, 3)}
        mask = {"a": mask_a, "b": torch.ones(batch, dtype=torch.bool)}
        times = {"a": torch.arange(6.0).repeat(batch, 1) * 5}
        return net, {"x": x, "mask": mask, "times": times}, {"y": (batch, 2)}
