"""Training progress for a caller that watches it (a sweep's pruner): learners and networks
report each epoch's or boosting round's validation loss through `report_progress`; a caller
sets `PROGRESS` to a function that receives it (and may raise to stop the training, as a
pruned trial does). Without a watcher nothing happens."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

PROGRESS: ContextVar[Callable[[float], None] | None] = ContextVar("training_progress", default=None)


def watching() -> bool:
    return PROGRESS.get() is not None


def report_progress(validation_loss: float) -> None:
    """Pass one epoch's (or round's) validation loss to the watcher, if any."""
    hook = PROGRESS.get()
    if hook is not None:
        hook(float(validation_loss))
