"""A per-utterance classifier that reads the utterance in its dialogue.

A sequence modality is a sample's dialogue as turns (`dialogue` inputs: each turn an utterance
embedding with per-turn speaker columns, times the positions relative to the sample, which is
at 0). The turns are projected, contextualised by a bidirectional GRU (or a Transformer
encoder), and the sample's own turn (the present turn nearest position 0) is read out beside
its projection. A pooled modality is projected directly; the available modalities' vectors are
averaged and a linear head maps them to the output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import nn

from fusion.models.nets.base import Net
from fusion.models.nets.layers import (
    encode_modalities,
    mean_of_available,
    padding_mask,
    sinusoidal_positions,
    transformer_encoder,
)


class DialogueEncoder(nn.Module):
    """(n, T, d) turns, (n, T) mask, (n, T) positions relative to the sample → (n, hidden)."""

    def __init__(self, n_in: int, hidden: int, context: Literal["gru", "transformer"], layers: int,
                 heads: int, dropout: float) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(n_in, hidden), nn.GELU(), nn.Dropout(dropout))
        self.context = context
        if context == "gru":
            self.rnn = nn.GRU(hidden, hidden // 2, num_layers=max(layers, 1), batch_first=True,
                              bidirectional=True, dropout=dropout if layers > 1 else 0.0)
        else:
            self.encoder = transformer_encoder(hidden, heads, max(layers, 1), dropout)
        self.out = nn.Sequential(nn.Linear(2 * (hidden // 2) + hidden, hidden), nn.GELU(), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        z = self.proj(x)
        if self.context == "gru":
            lengths = mask.sum(1).clamp_min(1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(z, lengths, batch_first=True, enforce_sorted=False)
            c, _ = self.rnn(packed)
            c, _ = nn.utils.rnn.pad_packed_sequence(c, batch_first=True, total_length=z.shape[1])
        else:
            h = z + sinusoidal_positions(times, z.shape[-1])
            c = self.encoder(h, src_key_padding_mask=padding_mask(mask))
        # the sample's own turn: the present turn nearest position 0
        at = times.abs().masked_fill(~mask, float("inf")).argmin(dim=1)
        pick = at.view(-1, 1, 1)
        own = torch.cat([c.gather(1, pick.expand(-1, 1, c.shape[-1])), z.gather(1, pick.expand(-1, 1, z.shape[-1]))],
                        dim=-1).squeeze(1)
        return self.out(own)


class DialogueContext(Net):
    """`forward(x, mask, times)`: x {modality: (n, T, d) turns or (n, d)}, mask {modality: (n, T)
    or (n,) bool}, times {modality: (n, T) positions relative to the sample} → (n, n_out).

    Args:
        dims: feature count of each modality.
        sequence: the modalities given as dialogues (the others are pooled rows).
        n_out: classes, or 1 for a score.
        hidden: width of every encoder (even).
        context: "gru" (bidirectional) or "transformer" over the turns.
        layers, heads: of the context layer (heads: Transformer only).
        dropout: after every projection.
        modality_dropout: during training, hide each available modality with this probability.
    """

    def __init__(self, dims: Mapping[str, int], sequence: list[str], n_out: int, hidden: int = 128,
                 context: Literal["gru", "transformer"] = "gru", layers: int = 1, heads: int = 4,
                 dropout: float = 0.3, modality_dropout: float = 0.0) -> None:
        super().__init__()
        self.modalities = list(dims)
        self.sequence = set(sequence)
        self.encoders = nn.ModuleList(
            DialogueEncoder(d, hidden, context, layers, heads, dropout) if m in self.sequence
            else nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout))
            for m, d in dims.items())
        self.head = nn.Linear(hidden, n_out)
        self.modality_dropout = modality_dropout

    def forward(self, x: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor],
                times: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        vectors, avail = encode_modalities(self.modalities, self.sequence, self.encoders, x, mask, times)
        return self.head(mean_of_available(vectors, avail, self.modality_dropout, self.training))

    @classmethod
    def example(cls, batch: int = 4):
        net = cls({"a": 5, "b": 3}, ["a"], 2, hidden=8)
        mask_a = torch.ones(batch, 6, dtype=torch.bool)
        mask_a[:, 4:] = False
        x = {"a": torch.randn(batch, 6, 5), "b": torch.randn(batch, 3)}
        mask = {"a": mask_a, "b": torch.ones(batch, dtype=torch.bool)}
        times = {"a": torch.arange(6.0).repeat(batch, 1) - 1}
        return net, {"x": x, "mask": mask, "times": times}, {"y": (batch, 2)}
