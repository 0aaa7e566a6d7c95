"""Fusion of modalities seen through aligned windows (a video's face, voice and words, one row
per window), with a prediction for the whole sample and one per window.

Each sequence modality's windows are projected, given positions from their start times and
contextualised by a Transformer encoder (`SequenceEncoder`); a pooled modality is one
projected vector. Three ways to fuse:

- `late`: each modality's own head; the sample's logits are the mean over the available
  modalities' logits (and each window's over the modalities that have that window);
- `early`: each window's modalities joined (a modality the window lacks is a learned "missing"
  vector) and encoded as one sequence;
- `cross`: every sequence modality's windows attend to each other sequence modality's windows
  (the cross-attention block of `fusion.models.nets.atei`, added to its own states), then each
  modality is pooled and the available ones averaged.

Outputs: `y` (n, k) for the sample and, with sequence inputs, `window` (n, T, k) for every
window of the shared grid (meaningful where some modality has the window).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import nn

from fusion.models.nets.atei import CrossAttention
from fusion.models.nets.base import Net
from fusion.models.nets.layers import drop_modalities
from fusion.models.nets.turn_attention import SequenceEncoder

WindowFusionKind = Literal["late", "early", "cross"]


def _masked_mean(values: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Mean over axis 1 of `values` (n, M, ...) where `present` (n, M, ...) holds; 0 where none."""
    p = present.to(values.dtype)
    while p.dim() < values.dim():
        p = p.unsqueeze(-1)
    return (values * p).sum(1) / p.sum(1).clamp_min(1.0)


class WindowFusion(Net):
    """`forward(x, mask, times)`: x {modality: (n, T, d) or (n, d)}, mask {modality: (n, T) or
    (n,)}, times {sequence modality: (n, T) window starts} → {"y": (n, k), "window": (n, T, k)}.

    Args:
        dims: feature count of each modality.
        sequence: the modalities given as window sequences.
        n_out: classes, or 1 for a score.
        fusion: "late", "early" or "cross".
        window_head: also predict every window.
        hidden, layers, heads, dropout, time_scale: the encoders.
        modality_dropout: during training, hide each available modality with this probability.
    """

    def __init__(self, dims: Mapping[str, int], sequence: list[str], n_out: int, fusion: WindowFusionKind = "cross",
                 window_head: bool = True, hidden: int = 64, layers: int = 1, heads: int = 4, dropout: float = 0.2,
                 time_scale: float = 1.0, modality_dropout: float = 0.0) -> None:
        super().__init__()
        self.modalities = list(dims)
        self.sequence = [m for m in self.modalities if m in set(sequence)]
        self.fusion, self.modality_dropout = fusion, modality_dropout
        self.window_head = window_head and bool(self.sequence)
        self.proj = nn.ModuleDict({m: nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout))
                                   for m, d in dims.items() if m not in self.sequence})
        if fusion == "early":
            self.window_proj = nn.ModuleDict({m: nn.Linear(dims[m], hidden) for m in self.sequence})
            self.missing = nn.Parameter(torch.zeros(len(self.sequence), hidden))
            nn.init.normal_(self.missing, std=0.02)
            self.joint = SequenceEncoder(len(self.sequence) * hidden, hidden, layers, heads, dropout, time_scale) \
                if self.sequence else None
        else:
            self.encoders = nn.ModuleDict({m: SequenceEncoder(dims[m], hidden, layers, heads, dropout, time_scale)
                                           for m in self.sequence})
        if fusion == "cross" and len(self.sequence) > 1:
            self.cross = nn.ModuleDict({m: CrossAttention(hidden, heads, dropout) for m in self.sequence})
        self.norm = nn.LayerNorm(hidden)
        if fusion == "late":
            self.heads_ = nn.ModuleDict({m: nn.Linear(hidden, n_out) for m in self.modalities})
        else:
            self.head = nn.Linear(hidden, n_out)
        if self.window_head and fusion != "late":
            self.window_out = nn.Linear(hidden, n_out)

    def _available(self, mask: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per modality, (n, T) or (n,) presence after modality dropout."""
        avail = torch.stack([mask[m].any(1) if m in self.sequence else mask[m] for m in self.modalities], dim=1)
        keep = drop_modalities(avail, self.modality_dropout, self.training)
        return {m: (mask[m] & keep[:, i:i + 1]) if m in self.sequence else keep[:, i]
                for i, m in enumerate(self.modalities)}

    def _attend(self, m: str, states: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        """The mean of what `m`'s windows read from each other present modality's windows (a
        modality a sample lacks contributes nothing, not even through padding)."""
        total, count = 0.0, 0.0
        for o in self.sequence:
            if o == m:
                continue
            has = masks[o].any(1).to(states[m].dtype)[:, None, None]
            total = total + self.cross[m](states[m], states[o], masks[o]) * has
            count = count + has
        return total / torch.clamp(count, min=1.0)

    def forward(self, x: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor],
                times: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        m_ = self._available(mask)
        pooled = {m: self.proj[m](x[m]) for m in self.modalities if m not in self.sequence}
        states: dict[str, torch.Tensor] = {}
        out: dict[str, torch.Tensor] = {}
        if self.fusion == "early" and self.sequence:
            parts = []
            for i, m in enumerate(self.sequence):
                present = m_[m].unsqueeze(-1).to(x[m].dtype)
                parts.append(self.window_proj[m](x[m]) * present + self.missing[i] * (1 - present))
            union = torch.stack([m_[m] for m in self.sequence], dim=1).any(1)
            joint = torch.cat(parts, dim=-1)
            h = self.joint.encode(joint, union, times[self.sequence[0]])
            pooled["_windows"] = self.joint.pool(h, union)
            present = {**{m: m_[m] for m in pooled if m != "_windows"}, "_windows": union.any(1)}
            window_states, window_present = h.unsqueeze(1), union.unsqueeze(1)
        else:
            for m in self.sequence:
                states[m] = self.encoders[m].encode(x[m], m_[m], times[m])
            if hasattr(self, "cross"):
                states = {m: states[m] + self._attend(m, states, m_) for m in self.sequence}
            for m in self.sequence:
                pooled[m] = self.encoders[m].pool(states[m], m_[m])
            present = {m: (m_[m].any(1) if m in self.sequence else m_[m]) for m in pooled}
            if self.sequence:
                window_states = torch.stack([states[m] for m in self.sequence], dim=1)  # (n, S, T, h)
                window_present = torch.stack([m_[m] for m in self.sequence], dim=1)  # (n, S, T)
        names = list(pooled)
        vectors = torch.stack([self.norm(pooled[m]) for m in names], dim=1)
        avail = torch.stack([present[m] for m in names], dim=1)
        if self.fusion == "late":
            logits = torch.stack([self.heads_[m](vectors[:, i]) for i, m in enumerate(names)], dim=1)
            out["y"] = _masked_mean(logits, avail)
            if self.window_head:
                per = torch.stack([self.heads_[m](self.norm(states[m])) for m in self.sequence], dim=1)
                out["window"] = _masked_mean(per, window_present)
        else:
            out["y"] = self.head(_masked_mean(vectors, avail))
            if self.window_head:
                out["window"] = self.window_out(self.norm(_masked_mean(window_states, window_present)))
        return out

    @classmethod
    def example(cls, batch: int = 4):
        net = cls({"face": 5, "voice": 4, "meta": 2}, ["face", "voice"], 3, hidden=8, heads=2)
        mask_f = torch.ones(batch, 6, dtype=torch.bool)
        mask_f[:, 4:] = False
        mask_v = mask_f.clone()
        mask_v[:, 0] = False  # a window the voice lacks
        times = torch.arange(6.0).repeat(batch, 1)
        inputs = {"x": {"face": torch.randn(batch, 6, 5), "voice": torch.randn(batch, 6, 4),
                        "meta": torch.randn(batch, 2)},
                  "mask": {"face": mask_f, "voice": mask_v, "meta": torch.ones(batch, dtype=torch.bool)},
                  "times": {"face": times, "voice": times}}
        return net, inputs, {"y": (batch, 3), "window": (batch, 6, 3)}

