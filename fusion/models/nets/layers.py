"""Building blocks shared by the networks: positions of segments, masked attention pooling
over segments, and modality dropout."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_positions(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal encodings (Vaswani et al.) of real-valued positions, shape (*positions, dim)."""
    half = dim // 2
    freq = torch.exp(-math.log(10_000.0) * torch.arange(half, device=positions.device) / max(half, 1))
    angles = positions.unsqueeze(-1).float() * freq
    enc = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
    return nn.functional.pad(enc, (0, dim - 2 * half))


def transformer_encoder(hidden: int, heads: int, layers: int, dropout: float) -> nn.TransformerEncoder | None:
    """`layers` pre-norm Transformer encoder layers over (n, T, hidden) segments (None for 0)."""
    if not layers:
        return None
    layer = nn.TransformerEncoderLayer(hidden, heads, dim_feedforward=2 * hidden, dropout=dropout,
                                       batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


def padding_mask(mask: torch.Tensor) -> torch.Tensor:
    """The key-padding mask of attention over segments (True: ignore) from a presence mask
    (n, T). A sample without any present segment would make attention NaN, so it attends to
    its padding instead; its output is masked out downstream."""
    empty = ~mask.any(dim=1, keepdim=True)
    return ~(mask | empty)


class MaskedAttentionPool(nn.Module):
    """One learned query attends over a sequence; absent positions get no weight.

    `forward(x, mask)`: x (n, T, d), mask (n, T) bool → (n, d); a sequence with no present
    position gives zeros (its modality is then masked out downstream).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(x).squeeze(-1).masked_fill(~mask, float("-inf"))
        any_present = mask.any(dim=1, keepdim=True)
        weights = torch.softmax(scores.masked_fill(~any_present, 0.0), dim=1) * mask
        return torch.einsum("nt,ntd->nd", weights, x)


def drop_modalities(avail: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Hide each available modality of a training sample with probability `p`, keeping at
    least one: the network learns to predict from any subset (`avail`: (n, M) bool)."""
    if not training or p <= 0:
        return avail
    keep = (torch.rand(avail.shape, device=avail.device) >= p) & avail
    none_left = ~keep.any(dim=1) & avail.any(dim=1)
    if none_left.any():
        # restore one available modality, chosen at random, where all were hidden
        scores = torch.rand(avail.shape, device=avail.device).masked_fill(~avail, -1.0)
        pick = nn.functional.one_hot(scores.argmax(dim=1), avail.shape[1]).bool()
        keep = torch.where(none_left.unsqueeze(1), pick, keep)
    return keep


def mean_of_available(vectors: list[torch.Tensor], avail: list[torch.Tensor], dropout: float,
                      training: bool) -> torch.Tensor:
    """Per sample, the mean of the modality vectors (each (n, d)) that are available (each (n,)
    bool), after modality dropout while training; zeros where none is."""
    a = drop_modalities(torch.stack(avail, dim=1), dropout, training).to(vectors[0].dtype)
    v = torch.stack(vectors, dim=1)  # (n, M, d)
    return (v * a.unsqueeze(-1)).sum(1) / a.sum(1, keepdim=True).clamp_min(1.0)


def encode_modalities(modalities: list[str], sequence: set[str], encoders: nn.ModuleList, x, mask,
                      times) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Each modality's vector from its encoder — a sequence encoder called with (x, mask, times),
    a pooled one with x — and where it is available (a sequence with any present segment)."""
    vectors, avail = [], []
    for m, enc in zip(modalities, encoders, strict=True):
        if m in sequence:
            vectors.append(enc(x[m], mask[m], times[m]))
            avail.append(mask[m].any(dim=1))
        else:
            vectors.append(enc(x[m]))
            avail.append(mask[m])
    return vectors, avail
