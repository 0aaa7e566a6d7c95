"""What a report is made from: the saved model of each target (`fusion train` with
`evaluation.save_model`), the evaluation run that measured it (its folder or MLflow run), and
the data (a train config naming the dataset and the feature store)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.registry import exception_text
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
        """A CSV table of the run (None when the run did not write it).

        Raises:
            ReportError: a table that cannot be read, naming the file.
        """
        path = self.folder / f"{name}.csv"
        if not path.exists():
            return None
        try:
            return pd.read_csv(path, dtype={"sample_id": str, "subject_id": str, "group": str})
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
            raise ReportError(f"{path}: not a readable CSV table of the run ({type(err).__name__}: {err})") from None

    def evaluated(self, target: str) -> bool:
        return target in self.summary.get("targets", {})

    def predictions(self, target: str, k: int) -> pd.DataFrame | None:
        """The run's held-out predictions of `target` (`<target>_predictions.csv`: sample_id,
        subject_id, y, p<class>_repeat<r>), checked; None when the run did not evaluate the target.

        Raises:
            ReportError: the run evaluated the target but its file is missing, unreadable or
                lacks a column, naming the file and what was expected.
        """
        if not self.evaluated(target):
            return None
        path = self.folder / f"{target}_predictions.csv"
        preds = self.table(f"{target}_predictions")
        if preds is None:
            raise ReportError(f"{path} is missing: the run evaluated {target!r} (metrics.json) but its held-out "
                              "predictions file is not in the run folder (copy the run folder whole, or train again)")
        reps = sorted({c.rsplit("repeat", 1)[1] for c in preds.columns if c.startswith("p0_repeat")})
        need = ["sample_id", "subject_id", "y"] + [f"p{c}_repeat{r}" for r in reps for c in range(k)]
        missing = [c for c in need if c not in preds.columns]
        if not reps or missing:
            raise ReportError(f"{path}: expected the columns sample_id, subject_id, y and p0_repeat<r> … "
                              f"p{k - 1}_repeat<r> for {k} classes; missing {missing[:4] or ['p0_repeat0']}")
        y = pd.to_numeric(preds["y"], errors="coerce")
        bad = preds.loc[y.isna() | (y < 0) | (y >= k) | (y % 1 != 0), "sample_id"].tolist()
        if bad:
            raise ReportError(f"{path}: column y must hold class indices 0..{k - 1}; not so for sample(s) {bad[:5]}")
        return preds

    @property
    def config_path(self) -> Path | None:
        path = self.folder / "config.yaml"
        return path if path.exists() else None


def load_target(folder: Path) -> TargetModel:
    """A target's model folder → `TargetModel`.

    Raises:
        ReportError: the manifest or a file it names is missing, damaged or inconsistent with
            the manifest, naming the folder and the file.
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
    except Exception as err:  # noqa: BLE001 - any damage to the folder, named with the folder
        raise ReportError(f"{folder}: the saved model cannot be loaded from {MANIFEST} and the files it names "
                          f"({exception_text(err)}); save the model again with `fusion train`") from None
    columns = manifest.get("columns") if isinstance(manifest.get("columns"), dict) else {}
    for m in model.modalities:
        if not isinstance(columns.get(m), list):
            raise ReportError(f"{folder / MANIFEST}: 'columns' must list the feature columns of modality {m!r}")
    reference: dict[str, np.ndarray] = {}
    ref = manifest.get("reference")
    if ref:
        try:
            path = model_file(folder, ref.get("file") if isinstance(ref, dict) else None)
        except ValueError as err:
            raise ReportError(str(err)) from None
        if not path.exists():
            raise ReportError(f"{folder}: the saved model is incomplete: {path.name} (the training cohort's "
                              f"feature percentiles, named in {folder / MANIFEST}) is missing")
        reference = read_reference(path, {m: len(columns.get(m, [])) for m in model.modalities})
    return TargetModel(manifest.get("target", {}).get("name") or folder.name, folder, manifest, model, score,
                       reference)


def read_reference(path: Path, widths: dict[str, int]) -> dict[str, np.ndarray]:
    """The training cohort's percentiles (`reference.npz`: one (101, d) array per modality).

    Raises:
        ReportError: a file that is not such an archive, naming it and what was expected.
    """
    import zipfile

    expected = f"expected a NumPy .npz archive of one ({len(QUANTILE_ROWS)}, d) array of percentiles per modality"
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an archive")
        with z:
            reference = {m: z[m] for m in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        # NumPy says a file it cannot read may be a pickle, and how to unpickle it: never do that here
        found = "a single array" if "single array" in str(err) else "not a .npz archive"
        raise ReportError(f"{path}: not readable as the training cohort's percentiles ({expected}; found "
                          f"{found}); save the model again with `fusion train`") from None
    for m, a in reference.items():
        want = widths.get(m)
        if want is not None and (a.ndim != 2 or a.shape != (len(QUANTILE_ROWS), want)):
            raise ReportError(f"{path}: modality {m!r} has an array of shape {a.shape}; {expected} "
                              f"(d = {want}: the manifest lists {want} columns for {m!r})")
    return reference


QUANTILE_ROWS = range(101)


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
    multilabel = [f for f in folders if _task(f) == "multilabel"]
    if multilabel:
        raise ReportError(f"{multilabel[0]}: a multi-label model (EMOTIC's context model); `fusion report` reports "
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


def _task(folder: Path) -> str | None:
    try:
        return read_manifest(folder).get("task")
    except (FileNotFoundError, ValueError):
        return None


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
        summary = read_summary(summary_path)
        return Run(path, summary, summary.get("run_id"), summary.get("tracking_uri"))
    if tracking_uri is None:
        raise ReportError(f"{run}: no such run folder; to read an MLflow run give --tracking-uri "
                          "(e.g. sqlite:///mlruns/mlflow.db)")
    from fusion.tracking import import_mlflow

    mlflow = import_mlflow()
    try:
        local = mlflow.artifacts.download_artifacts(run_id=str(run), tracking_uri=tracking_uri)
    except Exception as err:  # noqa: BLE001 - MLflow raises several kinds for an unknown run
        raise ReportError(f"MLflow run {run!r} not found at {tracking_uri} ({type(err).__name__})") from None
    folder = Path(local)
    if not (folder / "metrics.json").exists():
        raise ReportError(f"MLflow run {run!r} has no metrics.json: not a `fusion train` run")
    summary = read_summary(folder / "metrics.json")
    return Run(folder, summary, str(run), tracking_uri)


def read_summary(path: Path) -> dict[str, Any]:
    """A run's `metrics.json`, checked to be a `fusion train` summary.

    Raises:
        ReportError: naming the file and what was expected.
    """
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ReportError(f"{path}: not valid JSON ({err}); the run folder is damaged") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("targets"), dict):
        raise ReportError(f"{path}: not a `fusion train` summary (expected a mapping with 'targets')")
    for name, t in summary["targets"].items():
        if not isinstance(t, dict) or not isinstance(t.get("n_classes"), int) or not isinstance(
                t.get("metrics", {}), dict):
            raise ReportError(f"{path}: target {name!r} is not a `fusion train` target summary (expected a mapping "
                              "with n_classes and metrics)")
    return summary


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


def changed_source(provenance: Mapping[str, Mapping[str, Any]], feature_set: str | None, sample_id: str,
                   path: Path) -> str | None:
    """A warning naming `path` when it is not the file that `feature_set`'s rows of the sample
    were extracted from: its digest differs from the one the store recorded (or, for a store
    written before per-file digests were recorded, it was modified after the extraction).
    None when it is the same file, or nothing was recorded to compare with."""
    import datetime as dt

    from features.store import FeatureStore, StoreError, file_digest

    info = provenance.get(feature_set or "")
    if not info:
        return None
    try:
        meta = FeatureStore.read_metadata(info["path"])
    except StoreError:
        return None
    source = meta.get("sources", {}).get(sample_id) or {}
    files = source.get("files") or {}
    role = next((r for r, f in files.items() if Path(f).resolve() == path.resolve()), None)
    if role is None:
        return None
    what = (f"{path} is not the transcript the features of {feature_set!r} were extracted from ")
    recorded = (source.get("digests") or {}).get(role)
    if recorded is not None:
        if file_digest(path) != recorded:
            return what + ("(it was edited since: its digest differs from the one recorded at extraction); its "
                           "words are not shown, since they may not be what the model saw. Extract again to show them.")
        return None
    try:
        extracted = dt.datetime.fromisoformat(meta["created"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None
    if path.stat().st_mtime > extracted + 1:
        return what + ("(it was modified after the extraction); its words are not shown, since they may not be "
                       "what the model saw. Extract again to show them.")
    return None
