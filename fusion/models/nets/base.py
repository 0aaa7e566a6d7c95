"""The registry of networks and what every network offers the contract tests.

A network is a plain `nn.Module`: no loss, no optimiser (those live in `fusion.lit`). Each
registered network also provides `example(batch)`: a small instance and inputs for it, so that
one parametrised test checks every network (output shapes, masking, determinism).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from features.registry import Registry

NETS: Registry[type] = Registry("network", package="fusion.models.nets")


class Net(nn.Module):
    """Base of the registered networks."""

    @classmethod
    def example(cls, batch: int = 4) -> tuple[Net, dict[str, Any], dict[str, tuple[int, ...]]]:
        """A small instance, inputs for `batch` samples, and the shape of each output."""
        raise NotImplementedError

