"""Training progress for a caller that watches it (a sweep's pruner): learners and networks
report each epoch's or boosting round's validation loss, with that epoch's (round's) 0-based
index within the fit, through `report_progress`; a caller sets `PROGRESS` to a function that
receives both (and may raise to stop the training, as a pruned trial does). An index that does
not exceed the previous one starts a new fit (the next inner fold's). Without a watcher nothing
happens."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

PROGRESS: ContextVar[Callable[[float, int], None] | None] = ContextVar("training_progress", default=None)


def watching() -> bool:
    return PROGRESS.get() is not None


def report_progress(validation_loss: float, epoch: int) -> None:
    """Pass one epoch's (or round's) validation loss and its index within the fit to the
    watcher, if any."""
    hook = PROGRESS.get()
    if hook is not None:
        hook(float(validation_loss), int(epoch))
