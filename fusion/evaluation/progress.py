"""Progress of long steps.

Training progress for a caller that watches it (a sweep's pruner, a progress bar): learners
and networks report each epoch's or boosting round's validation loss, with that epoch's
(round's) 0-based index within the fit, through `report_progress`; a caller sets `PROGRESS` to a
function that receives both (and may raise to stop the training, as a pruned trial does). An
index that does not exceed the previous one starts a new fit (the next inner fold's). Without a
watcher nothing happens.

`steps` shows a long job's progress (folds × repeats of a cross-validation, seeds of an
official-split run): a bar on a terminal, with the epoch of a network in training; one line
per step otherwise (a log, a CI run).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar

PROGRESS: ContextVar[Callable[[float, int], None] | None] = ContextVar("training_progress", default=None)


def silence_widget_notice() -> None:
    """Import `tqdm.autonotebook` once with its `TqdmWarning` silenced. MLflow (its `genai`
    package) and Optuna (its progress bar) import `tqdm.auto`, which in a Jupyter kernel without
    ipywidgets warns that the progress widget is missing; nothing here shows that widget
    (progress is tqdm text), so the notice is not about anything a user runs. Once imported, the
    module is cached and no later import warns."""
    import warnings

    from tqdm import TqdmWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TqdmWarning)
        import tqdm.autonotebook  # noqa: F401


def watching() -> bool:
    return PROGRESS.get() is not None


def report_progress(validation_loss: float, epoch: int) -> None:
    """Pass one epoch's (or round's) validation loss and its index within the fit to the
    watcher, if any."""
    hook = PROGRESS.get()
    if hook is not None:
        hook(float(validation_loss), int(epoch))


@contextlib.contextmanager
def steps(total: int, what: str, unit: str = "fold") -> Iterator[Callable[[str], None]]:
    """Yield `tick(label)`, called after each of `total` steps of `what`: a tqdm bar on stderr
    when it is a terminal (showing the epoch of a network being trained), else one line per
    step with its time."""
    if sys.stderr.isatty():
        from tqdm import tqdm  # text (not the notebook widget, which needs ipywidgets)

        bar = tqdm(total=total, desc=what, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True)
        outer = PROGRESS.get()
        shown = {"at": 0.0}

        def epoch(loss: float, index: int) -> None:
            now = time.perf_counter()
            if now - shown["at"] > 0.5:  # a small network runs many epochs a second
                bar.set_postfix_str(f"epoch {index + 1}")
                shown["at"] = now
            if outer is not None:
                outer(loss, index)

        def tick(label: str) -> None:
            bar.set_postfix_str(label, refresh=False)
            bar.update(1)
            bar.refresh()

        token = PROGRESS.set(epoch)
        try:
            yield tick
        finally:
            PROGRESS.reset(token)
            bar.close()
        return
    state = {"done": 0, "at": time.perf_counter()}

    def tick(label: str) -> None:
        now = time.perf_counter()
        state["done"] += 1
        print(f"{what}: {unit} {state['done']} of {total} ({label}) in {now - state['at']:.1f} s",
              file=sys.stderr, flush=True)
        state["at"] = now

    yield tick
