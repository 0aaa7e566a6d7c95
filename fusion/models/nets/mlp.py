"""A multilayer perceptron: Linear → GELU → dropout blocks, then a linear head."""

from __future__ import annotations

import torch
from torch import nn

from fusion.models.nets.base import Net


class MLP(Net):
    """`forward(x)`: (n, n_in) → (n, n_out)."""

    def __init__(self, n_in: int, n_out: int, hidden: int = 64, layers: int = 1, dropout: float = 0.3):
        super().__init__()
        blocks, width = [], n_in
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout)]
            width = hidden
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(width, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    @classmethod
    def example(cls, batch: int = 4):
        return cls(6, 3, hidden=8), {"x": torch.randn(batch, 6)}, {"y": (batch, 3)}
