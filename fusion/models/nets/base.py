"""What every network offers the contract tests.

A network is a plain `nn.Module` (no loss, no optimiser: those live in `fusion.lit`), built by
the model that trains it (`build_net`); a network that several models share is named for what
it is, one that pairs with a model has the model's file name. Each `Net` also provides
`example(batch)`: a small instance and inputs for it, so that one parametrised test checks
every network in this package (output shapes, masking, determinism).
"""

from __future__ import annotations

from typing import Any

from torch import nn


class Net(nn.Module):
    """Base of the networks."""

    @classmethod
    def example(cls, batch: int = 4) -> tuple[Net, dict[str, Any], dict[str, tuple[int, ...]]]:
        """A small instance, inputs for `batch` samples, and the shape of each output."""
        raise NotImplementedError

