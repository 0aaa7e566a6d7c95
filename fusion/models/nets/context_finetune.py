"""End-to-end context model: one timm backbone per image stream (body crop, whole image, face
crop), trained with the fusion layers and heads of `context-fusion` on top of their pooled
features (the two-stream CNN of Kosti et al.)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from fusion.models.nets.base import Net
from fusion.models.nets.context_fusion import ContextFusionNet


class ContextFinetuneNet(Net):
    """`forward(x, mask)`: x {stream: (n, 3, H, W) normalised images}, mask {stream: (n,)
    bool} → {"cat": (n, n_labels) logits, "vad": (n, n_cont)} (and "mix" with `n_mix`, as in
    `ContextFusionNet`)."""

    def __init__(self, backbones: dict[str, str], n_labels: int, n_cont: int = 3, hidden: int = 128,
                 dropout: float = 0.3, fusion: Literal["concat", "attention"] = "concat", n_mix: int = 0) -> None:
        super().__init__()
        import timm

        self.backbones = nn.ModuleDict({s: timm.create_model(name, pretrained=False, num_classes=0)
                                        for s, name in backbones.items()})
        dims = {s: int(b.num_features) for s, b in self.backbones.items()}
        self.head = ContextFusionNet(dims, n_labels, n_cont, hidden=hidden, dropout=dropout, fusion=fusion,
                                     n_mix=n_mix)

    def forward(self, x: dict[str, torch.Tensor], mask: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        feats = {s: b(x[s]) for s, b in self.backbones.items()}
        return self.head(feats, mask)

    @classmethod
    def example(cls, batch: int = 4):
        net = cls({"body": "test_resnet", "context": "test_resnet"}, 5, hidden=8)
        mask = {"body": torch.ones(batch, dtype=torch.bool), "context": torch.ones(batch, dtype=torch.bool)}
        mask["body"][0] = False
        inputs = {"x": {"body": torch.randn(batch, 3, 32, 32), "context": torch.randn(batch, 3, 32, 32)},
                  "mask": mask}
        return net, inputs, {"cat": (batch, 5), "vad": (batch, 3)}
