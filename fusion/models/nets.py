"""Plain `nn.Module` networks (trained through `fusion.lit.LitModel`)."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """Linear → GELU → dropout blocks, then a linear head."""

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
