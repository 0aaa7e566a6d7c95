"""What a report is made from: the saved model of each target (`fusion train` with
`evaluation.save_model`), the evaluation run that measured it (its folder or MLflow run), and
the data (a train config naming the dataset and the feature store)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fusion.config.schema import ConfigError
from fusion.datasets.labels import PHQ8_CLASSES, PTSD_CLASSES
from fusion.models.base import FusionModel
from fusion.persist import MANIFEST, load_model, model_file, read_manifest

DEFAULT_NAMES = {"PHQ8_Severity": [f"{c} ({r})" for c, r in zip(
    PHQ8_CLASSES, ["0-4", "5-9", "10-14", "15-19", "20-24"], strict=True)],
    "PTSD_Class": [f"{c} ({r})" for c, r in zip(PTSD_CLASSES, ["<= 20", "21-40", "> 40"], strict=True)]}


class ReportError(ConfigError):
    """A report cannot be made: an unknown participant, an incomplete model folder, data that
    does not fit the model, a participant with no data in any modality."""


@dataclass
class TargetModel:
    """One target's saved model, its score model (if any) and its training cohort's feature
    percentiles."""

    name: str
    folder: Path
    manifest: dict[str, Any]
    model: FusionModel
    score_model: FusionModel | None = None
    reference: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def target(self) -> dict[str, Any]:
        return self.manifest.get("target", {})

    @property
    def training(self) -> dict[str, Any]:
        return self.manifest.get("training", {})

    @property
    def class_names(self) -> list[str]:
        t = self.target
        if t.get("names"):
            return list(t["names"])
        classes = t.get("classes") or [str(k) for k in range(self.model.n_classes)]
        default = DEFAULT_NAMES.get(t.get("label", ""))
        if default and len(default) == len(classes) and classes == [str(k) for k in range(len(classes))]:
            return default
        return list(classes)

    @property
    def label(self) -> str:
        return self.target.get("label", self.name)


@dataclass
class Run:
    """An evaluation run: its folder of tables, its summary (`metrics.json`) and, when tracked,
    the MLflow run id and tracking URI."""

    folder: Path
    summary: dict[str, Any]
    run_id: str | None = None
    tracking_uri: str | None = None

    def table(self, name: str) -> pd.DataFrame | None:
        path = self.folder / f"{name}.csv"
        return pd.read_csv(path, dtype={"sample_id": str, "subject_id": str, "group": str}) if path.exists() else None

    @property
    def config_path(self) -> Path | None:
        path = self.folder / "config.yaml"
        return path if path.exists() else None


def load_target(folder: Path) -> TargetModel:
    """A target's model folder → `TargetModel`.

    Raises:
        ReportError: the manifest or a file it names is missing or damaged, naming it.
    """
    try:
        manifest = read_manifest(folder)
    except (FileNotFoundError, ValueError) as err:
        raise ReportError(str(err)) from None
    try:
        model = load_model(folder)
        score = None
        if manifest.get("score_model"):
            score = load_model(model_file(folder, manifest["score_model"]))
    except FileNotFoundError as err:
        what = f"{err.filename} is missing" if err.filename else str(err)
        raise ReportError(f"{folder}: the saved model is incomplete: {what}; save the model again with "
                          "`fusion train`") from None
    except (OSError, KeyError, ValueError) as err:
        raise ReportError(f"{folder}: the saved model cannot be loaded ({type(err).__name__}: {err})") from None
    reference: dict[str, np.ndarray] = {}
    ref = manifest.get("reference")
    if ref:
        path = model_file(folder, ref["file"])
        if not path.exists():
            raise ReportError(f"{folder}: the saved model is incomplete: {path.name} (the training cohort's "
                              f"feature percentiles, named in {folder / MANIFEST}) is missing")
        with np.load(path, allow_pickle=False) as z:
            reference = {m: z[m] for m in z.files}
    return TargetModel(manifest.get("target", {}).get("name") or folder.name, folder, manifest, model, score,
                       reference)


def load_targets(model_dir: Path, only: list[str] | None = None) -> dict[str, TargetModel]:
    """Every target saved under `model_dir` (a folder of target folders, or one target folder).

    Raises:
        ReportError: no saved model there, or an unknown target in `only`.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ReportError(f"{model_dir}: no such model folder")
    if (model_dir / MANIFEST).exists():
        folders = [model_dir]
    else:
        folders = sorted(p for p in model_dir.iterdir() if (p / MANIFEST).exists())
    if not folders and (list(model_dir.glob("context_model.json")) or list(model_dir.glob("*/context_model.json"))):
        raise ReportError(f"{model_dir}: a multi-label model (EMOTIC's context model); `fusion report` reports "
                          "single-label models (severity classes, emotion classes) only")
    if not folders:
        raise ReportError(f"{model_dir}: no saved model here (expected {MANIFEST}, or one folder per target with "
                          "one, as `fusion train` writes with evaluation.save_model: true)")
    if only:
        unknown = [t for t in only if t not in {f.name for f in folders}]
        if unknown:
            raise ReportError(f"unknown target(s) {unknown}; the model folder has {sorted(f.name for f in folders)}")
        folders = [f for f in folders if f.name in only]
    return {t.name: t for t in map(load_target, folders)}


def resolve_run(run: str | Path, tracking_uri: str | None = None) -> Run:
    """A run folder (with `metrics.json`) or an MLflow run id (its artifacts downloaded).

    Raises:
        ReportError: neither a run folder nor a run found at `tracking_uri`.
    """
    path = Path(run)
    if path.is_dir():
        summary_path = path / "metrics.json"
        if not summary_path.exists():
            raise ReportError(f"{path}: not a `fusion train` run folder (no metrics.json)")
        summary = json.loads(summary_path.read_text())
        return Run(path, summary, summary.get("run_id"), summary.get("tracking_uri"))
    if tracking_uri is None:
        raise ReportError(f"{run}: no such run folder; to read an MLflow run give --tracking-uri "
                          "(e.g. sqlite:///mlruns/mlflow.db)")
    import os

    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        local = mlflow.artifacts.download_artifacts(run_id=str(run), tracking_uri=tracking_uri)
    except Exception as err:  # noqa: BLE001 - MLflow raises several kinds for an unknown run
        raise ReportError(f"MLflow run {run!r} not found at {tracking_uri} ({type(err).__name__})") from None
    folder = Path(local)
    if not (folder / "metrics.json").exists():
        raise ReportError(f"MLflow run {run!r} has no metrics.json: not a `fusion train` run")
    summary = json.loads((folder / "metrics.json").read_text())
    return Run(folder, summary, str(run), tracking_uri)


def model_dir_of(run: Run) -> Path:
    """The model folder saved with a run.

    Raises:
        ReportError: the run saved no model.
    """
    folder = run.folder / "model"
    if folder.is_dir():
        return folder
    saved = run.summary.get("model_dir")
    if saved and Path(saved).is_dir():
        return Path(saved)
    raise ReportError(f"run {run.run_id or run.folder} saved no model (train with evaluation.save_model: true, "
                      "or give --model)")


def run_of_model(model_dir: Path) -> Run | None:
    """The run folder a model folder was saved in (`<run>/model`), when it is there."""
    parent = Path(model_dir).resolve().parent
    if (parent / "metrics.json").exists():
        return resolve_run(parent)
    return None


def feature_mismatches(target: TargetModel, provenance: dict[str, dict[str, Any]]) -> list[str]:
    """Feature sets whose extraction settings (parameter hash) differ between the model's
    training data and the report's data: one line each."""
    trained = target.training.get("feature_sets", {})
    out = []
    for name, info in trained.items():
        now = provenance.get(name)
        if now is None:
            continue
        if info.get("param_hash") != now.get("param_hash"):
            out.append(f"{name}: the model was trained on features with parameter hash "
                       f"{str(info.get('param_hash'))[:12]}, the data's have {str(now.get('param_hash'))[:12]} "
                       "(extracted with other settings)")
    return out
