"""Per-modality heads pooled under an availability mask: the network of neural late fusion.

Each modality has its own MLP head. For classes the fused logits are a log-linear pool (a
product of experts) z = b + Σ_m a_m w_m log softmax(z_m), w_m = softplus(θ_m) ≥ 0, where
a_m is 1 when the sample has modality m; for a score the fused output is the mean of the
available heads' scores weighted by softmax(θ). A missing modality therefore adds nothing,
exactly as in the calibrated late fusion of `fusion.models.late_fusion`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from fusion.models.nets.base import Net
from fusion.models.nets.layers import drop_modalities
from fusion.models.nets.mlp import MLP


class LateFusionHeads(Net):
    """`forward(x, mask)`: x {modality: (n, d_m)}, mask {modality: (n,) bool} →
    {"y": fused (n, n_out), "y@<modality>": that head's own output}.

    Args:
        dims: feature count of each modality, in order.
        n_out: classes (classification) or 1 (score).
        task: "classification" or "regression".
        hidden, layers, dropout: each head's MLP.
        modality_dropout: during training, hide each available modality with this probability.
    """

    def __init__(self, dims: Mapping[str, int], n_out: int, task: str = "classification", hidden: int = 64,
                 layers: int = 1, dropout: float = 0.2, modality_dropout: float = 0.0) -> None:
        super().__init__()
        self.modalities: Sequence[str] = list(dims)
        self.task = task
        self.heads = nn.ModuleList(MLP(d, n_out, hidden, layers, dropout) for d in dims.values())
        init = 0.5413 if task == "classification" else 0.0  # softplus(0.5413) = 1
        self.theta = nn.Parameter(torch.full((len(dims),), init))
        self.bias = nn.Parameter(torch.zeros(n_out))
        self.modality_dropout = modality_dropout

    def weights(self) -> torch.Tensor:
        """The fusion weight of each modality (softplus for classes, softmax for scores)."""
        if self.task == "classification":
            return nn.functional.softplus(self.theta)
        return torch.softmax(self.theta, dim=0)

    def forward(self, x: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        avail = torch.stack([mask[m] for m in self.modalities], dim=1)
        avail = drop_modalities(avail, self.modality_dropout, self.training).float()
        outs = [head(x[m]) for m, head in zip(self.modalities, self.heads, strict=True)]
        w = self.weights()
        if self.task == "classification":
            logp = torch.stack([torch.log_softmax(o, dim=1) for o in outs], dim=1)  # (n, M, K)
            fused = self.bias + torch.einsum("nmk,nm,m->nk", logp, avail, w)
        else:
            s = torch.stack([o[:, 0] for o in outs], dim=1)  # (n, M)
            aw = avail * w
            fused = (s * aw).sum(1, keepdim=True) / aw.sum(1, keepdim=True).clamp_min(1e-6) + self.bias
        return {"y": fused, **{f"y@{m}": o for m, o in zip(self.modalities, outs, strict=True)}}

    @classmethod
    def example(cls, batch: int = 4):
        net = cls({"a": 5, "b": 3}, 3, hidden=8)
        x = {"a": torch.randn(batch, 5), "b": torch.randn(batch, 3)}
        mask = {"a": torch.ones(batch, dtype=torch.bool), "b": torch.arange(batch) % 2 == 0}
        return net, {"x": x, "mask": mask}, {"y": (batch, 3), "y@a": (batch, 3), "y@b": (batch, 3)}
