"""Context fusion over image-embedding streams (body, context, face): each stream through its
own layer to a shared width, fused by concatenation or by attention over the streams present,
then a multi-label category head, a continuous (valence, arousal, dominance) head and,
optionally, a head of a distribution over emotions (VAD-mixture soft labels)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from fusion.models.nets.base import Net


class ContextFusionNet(Net):
    """`forward(x, mask)`: x {stream: (n, d_s)}, mask {stream: (n,) bool, the stream is
    present} → {"cat": (n, n_labels) logits, "vad": (n, n_cont)} and, with `n_mix`, "mix":
    (n, n_mix) logits of the emotion distribution.

    A missing stream is replaced by a learned vector under concatenation and left out of the
    softmax under attention (never zeros standing for data).
    """

    def __init__(self, dims: dict[str, int], n_labels: int, n_cont: int = 3, hidden: int = 128,
                 dropout: float = 0.3, fusion: Literal["concat", "attention"] = "concat", n_mix: int = 0) -> None:
        super().__init__()
        self.streams = list(dims)
        self.fusion = fusion
        self.proj = nn.ModuleDict({s: nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout))
                                   for s, d in dims.items()})
        self.missing = nn.ParameterDict({s: nn.Parameter(torch.zeros(hidden)) for s in dims})
        if fusion == "attention":
            self.score = nn.Linear(hidden, 1)
            width = hidden
        else:
            width = hidden * len(dims)
        self.trunk = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout))
        self.cat = nn.Linear(hidden, n_labels)
        self.vad = nn.Linear(hidden, n_cont)
        self.mix = nn.Linear(hidden, n_mix) if n_mix else None

    def fused(self, x: dict[str, torch.Tensor], mask: dict[str, torch.Tensor]) -> torch.Tensor:
        """The trunk's representation (the heads' input)."""
        hs = []
        for s in self.streams:
            h = self.proj[s](x[s])
            m = mask[s].bool().unsqueeze(1)
            hs.append(torch.where(m, h, self.missing[s].expand_as(h)))
        if self.fusion == "attention":
            H = torch.stack(hs, 1)  # (n, streams, hidden)
            present = torch.stack([mask[s].bool() for s in self.streams], 1)
            logits = self.score(H).squeeze(-1).masked_fill(~present, float("-inf"))
            alpha = torch.softmax(logits, 1).nan_to_num(0.0)  # a sample with no stream: zero weights
            z = (alpha.unsqueeze(-1) * H).sum(1)
        else:
            z = torch.cat(hs, 1)
        return self.trunk(z)

    def forward(self, x: dict[str, torch.Tensor], mask: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        z = self.fused(x, mask)
        out = {"cat": self.cat(z), "vad": self.vad(z)}
        if self.mix is not None:
            out["mix"] = self.mix(z)
        return out

    @classmethod
    def example(cls, batch: int = 4):
        net = cls({"body": 6, "context": 5}, 7, hidden=8, fusion="attention", n_mix=4)
        mask = {"body": torch.ones(batch, dtype=torch.bool), "context": torch.ones(batch, dtype=torch.bool)}
        mask["body"][0] = False
        inputs = {"x": {"body": torch.randn(batch, 6), "context": torch.randn(batch, 5)}, "mask": mask}
        return net, inputs, {"cat": (batch, 7), "vad": (batch, 3), "mix": (batch, 4)}
