"""Where a run's results go: a folder `outputs/<experiment>/<run id>/` written atomically, and
the same files, parameters, metrics and tags in the MLflow run (`fusion.tracking`).
`write_run` is the one output path of every protocol (`fusion.protocols`)."""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.files import atomic_write_text
from fusion.config.schema import TrackingConfig
from fusion.tracking import Tracker


def to_json(o: Any) -> Any:
    """JSON fallback for numpy values (and anything else, as text)."""
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    return str(o)


def new_run_dir(parent: Path, run_id: str | None = None) -> Path:
    """A run folder that no other run has or will have: the MLflow run id, or without tracking
    the time and a random suffix (`20261204-223001-3f9a1c`); created atomically (mkdir fails
    on an existing folder), never reused.

    Raises:
        FileExistsError: the tracked run's folder exists already (another store's run with the
            same id wrote there).
    """
    parent.mkdir(parents=True, exist_ok=True)
    if run_id is not None:
        path = parent / run_id
        try:
            path.mkdir()
        except FileExistsError:
            raise FileExistsError(f"{path}: a run folder of this MLflow run id exists already; it is not "
                                  "overwritten (another tracking store's run?)") from None
        return path
    while True:
        path = parent / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


class RunOutput:
    """A context manager around one run: opens the MLflow run (when tracking is enabled),
    names the output folder after it, and logs every file written through it."""

    def __init__(self, tracking: TrackingConfig, output_dir: Path, run_name: str) -> None:
        self.tracker = Tracker(tracking, run_name=run_name)
        self.tracking = tracking
        self.output_dir = Path(output_dir)
        self.files: list[Path] = []

    def __enter__(self) -> RunOutput:
        self.tracker.__enter__()
        try:
            self.dir = new_run_dir(self.output_dir / self.tracking.experiment, self.tracker.run_id)
        except BaseException:
            self.tracker.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.tracker.__exit__(*exc)

    @property
    def run_id(self) -> str | None:
        return self.tracker.run_id

    def text(self, name: str, text: str) -> Path:
        path = self.dir / name
        atomic_write_text(text, path)
        self.files.append(path)
        return path

    def table(self, name: str, table: pd.DataFrame) -> Path:
        return self.text(f"{name}.csv", table.to_csv(index=False))

    def json(self, name: str, payload: Any) -> Path:
        return self.text(f"{name}.json", json.dumps(payload, indent=1, default=to_json))

    def figure(self, name: str, fig) -> Path:
        path = self.dir / f"{name}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        self.files.append(path)
        return path

    def track(self, *, tags: Mapping[str, Any], params: Mapping[str, Any],
              metrics: Mapping[str, float], steps: list[tuple[int, Mapping[str, float]]] = (),
              folders: list[Path] = ()) -> None:
        """Log tags, parameters, metrics (and per-step metrics), every file written and
        `folders` (e.g. the saved model) to the MLflow run; `steps` are (step, metrics) pairs
        such as per-fold figures."""
        self.tracker.set_tags(tags)
        self.tracker.log_params(params)
        self.tracker.log_metrics(metrics)
        for step, row in steps:
            self.tracker.log_metrics(row, step=step)
        for path in self.files:
            self.tracker.log_artifact(path)
        for folder in folders:
            self.tracker.log_artifact(folder)


def write_run(cfg, protocol: str, result, t0: float) -> dict[str, Any]:
    """Write a protocol's `RunResult` — tables, figures, JSON files, the resolved config, the
    final models (when `evaluation.save_model`), the summary as metrics.json — to a new run
    folder and the MLflow run, and return the summary with the protocol, flags, commit,
    seconds, run id and output paths added."""
    from fusion.config.load import flatten, to_yaml
    from fusion.evaluation.flags import flag_tags, run_flags
    from fusion.tracking import git_info

    summary = {"protocol": protocol, **result.summary}
    with RunOutput(cfg.tracking, cfg.output_dir, run_name=f"{cfg.model.name}-{'+'.join(cfg.targets)}") as out:
        for name, table in result.tables.items():
            out.table(name, table)
        for name, fig in result.figures:
            out.figure(name, fig)
        if result.figures:
            import matplotlib.pyplot as plt

            plt.close("all")
        for name, payload in result.jsons.items():
            out.json(name, payload)
        out.text("config.yaml", to_yaml(cfg))
        folders = []
        if cfg.evaluation.save_model and result.save_models is not None:
            folder = Path(cfg.evaluation.model_dir or out.dir / "model")
            save_models_whole(result.save_models, folder)
            folders.append(folder)
            summary["model_dir"] = str(folder)
        summary["flags"] = run_flags(summary)
        summary["git"] = git_info()
        summary["seconds"] = round(time.perf_counter() - t0, 3)
        summary["run_id"] = out.run_id
        summary["tracking_uri"] = cfg.tracking.uri if cfg.tracking.enabled else None
        summary["outputs"] = {"dir": str(out.dir),
                              "files": [str(f) for f in out.files] + [str(out.dir / "metrics.json")]}
        out.json("metrics", summary)
        out.track(tags={**git_info(), "model": cfg.model.name, "targets": ",".join(cfg.targets),
                        "cv.scheme": cfg.cv.scheme, "protocol": protocol, **result.tags,
                        **flag_tags(summary["flags"])},
                  params=flatten(cfg.model_dump(mode="json")), metrics=result.metrics, steps=result.steps,
                  folders=folders)
    return summary


def save_models_whole(save: Callable[[Path], object], folder: Path) -> None:
    """Run a protocol's `save_models` into a staging folder, then move each target's model folder
    it wrote onto `folder/<target>` whole (`features.files.replace_folder`): a run killed while
    saving leaves the earlier model of every target as it was, never one with some files new.
    Other targets' folders under `folder` are kept."""
    import shutil
    import tempfile

    from features.files import replace_folder

    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging.", dir=folder))
    try:
        save(staging)
        for child in sorted(staging.iterdir()):
            def move(tmp: Path, _written: Path = child) -> None:
                tmp.rmdir()
                os.replace(_written, tmp)  # the same file system: a rename

            replace_folder(move, folder / child.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
