"""MLflow tracking: one run per training command, with config, commit and feature hashes.

The default backend is SQLite under `mlruns/` (`sqlite:///mlruns/mlflow.db`) with artifacts
in `mlruns/artifacts`; browse it with
`mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fusion.config.schema import TrackingConfig


def git_info(cwd: str | Path | None = None) -> dict[str, str]:
    """The current commit and whether the work tree has uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    return {"git_commit": commit, "git_dirty": str(dirty).lower()}


def import_mlflow():
    """The `mlflow` module, imported without its artifact progress bars and without the notebook
    widget notice its `genai` package causes (`fusion.evaluation.progress.silence_widget_notice`)."""
    from fusion.evaluation.progress import silence_widget_notice

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    silence_widget_notice()
    import mlflow

    return mlflow


def _sqlite_path(uri: str) -> Path | None:
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///"))
    return None


@contextlib.contextmanager
def store_errors_named(uri: str):
    """Name the tracking store when it cannot be opened or read (a file that is not a database,
    a server that does not answer) instead of the database driver's bare error."""
    from fusion.config.schema import ConfigError

    try:
        yield
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - SQLAlchemy, the driver and MLflow raise many kinds
        mlflow = import_mlflow()

        if isinstance(err, mlflow.exceptions.MlflowException) and "RESOURCE_DOES_NOT_EXIST" in str(err.error_code):
            raise
        cause = getattr(err, "orig", None) or err
        raise ConfigError(f"MLflow tracking store {uri}: cannot be read ({type(cause).__name__}: "
                          f"{str(cause).splitlines()[0] if str(cause) else ''}); is it an MLflow database?") from None


class Tracker:
    """A context manager around one MLflow run; does nothing when tracking is disabled."""

    def __init__(self, cfg: TrackingConfig, run_name: str | None = None) -> None:
        self.cfg = cfg
        self.run_name = cfg.run_name or run_name
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self._mlflow = None

    def __enter__(self) -> Tracker:
        if not self.cfg.enabled:
            return self
        logging.getLogger("alembic").setLevel(logging.WARNING)
        mlflow = import_mlflow()

        db = _sqlite_path(self.cfg.uri)
        guard = contextlib.nullcontext()
        if db is not None:
            from filelock import FileLock

            db.parent.mkdir(parents=True, exist_ok=True)
            # processes starting together (sweep workers) would race to create the tables
            guard = FileLock(str(db) + ".lock", timeout=120)
        with guard, store_errors_named(self.cfg.uri):
            mlflow.set_tracking_uri(self.cfg.uri)
            exp = mlflow.get_experiment_by_name(self.cfg.experiment)
            if exp is None:
                self.cfg.artifacts.mkdir(parents=True, exist_ok=True)
                try:
                    self.experiment_id = mlflow.create_experiment(
                        self.cfg.experiment, artifact_location=self.cfg.artifacts.resolve().as_uri())
                except mlflow.exceptions.MlflowException:  # created meanwhile by another process
                    exp = mlflow.get_experiment_by_name(self.cfg.experiment)
                    if exp is None:
                        raise
            if exp is not None:
                self.experiment_id = exp.experiment_id
        run = mlflow.start_run(experiment_id=self.experiment_id, run_name=self.run_name)
        self.run_id = run.info.run_id
        self._mlflow = mlflow
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._mlflow is not None:
            self._mlflow.end_run(status="FAILED" if exc_type else "FINISHED")

    @contextlib.contextmanager
    def child(self, run_name: str):
        """A nested run inside this one (a sweep's trial); a no-op tracker when disabled."""
        child = Tracker(self.cfg, run_name)
        if self._mlflow is None:
            yield child
            return
        run = self._mlflow.start_run(experiment_id=self.experiment_id, run_name=run_name, nested=True)
        child._mlflow, child.run_id, child.experiment_id = self._mlflow, run.info.run_id, self.experiment_id
        try:
            yield child
        finally:
            self._mlflow.end_run()

    def log_params(self, params: Mapping[str, Any]) -> None:
        if self._mlflow:
            clean = {k: ("" if v is None else str(v))[:6000] for k, v in params.items()}
            self._mlflow.log_params(clean)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self._mlflow:
            finite = {k: float(v) for k, v in metrics.items() if v == v}  # NaN is not logged
            self._mlflow.log_metrics(finite, step=step)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self._mlflow:
            self._mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self._mlflow:
            self._mlflow.log_artifact(str(path), artifact_path=artifact_path)
