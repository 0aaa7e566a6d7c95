"""Saving and loading fitted fusion models: a folder with a JSON manifest, each learner in
JSON or its library's own format (XGBoost JSON, torch state dict loaded weights-only) — never a
pickle, so a model folder is safe to open."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.store import atomic_write_text
from fusion.models.calibration import Calibrator
from fusion.models.early_fusion import EarlyFusion
from fusion.models.late_fusion import (
    LateCalibratedFusion,
    LinearPoolStacker,
    LogLinearStacker,
    RegressionStacker,
)
from fusion.models.learners import LEARNERS

STACKERS = {"LogLinearStacker": LogLinearStacker, "LinearPoolStacker": LinearPoolStacker,
            "RegressionStacker": RegressionStacker}


def _learner_name(learner) -> str:
    return next(n for n in LEARNERS.names() if isinstance(learner, LEARNERS.get(n)))


def save_model(model: Any, folder: Path, columns: dict[str, list[str]]) -> Path:
    """Write a fitted late- or early-fusion model to `folder` (manifest.json + learner files)."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"model": type(model).__name__, "params": model.params.model_dump(),
                                "task": model.task, "n_classes": model.n_classes,
                                "modalities": model.modalities, "columns": columns}
    if isinstance(model, LateCalibratedFusion):
        manifest["learners"] = {}
        for m, learner in model.learners_.items():
            manifest["learners"][m] = {"name": _learner_name(learner), **learner.save(folder / f"learner_{m}")}
        manifest["calibrators"] = {m: c.to_dict() for m, c in model.calibrators_.items()}
        st = model.stacker(model.modalities)
        manifest["stacker"] = {"type": type(st).__name__, **{k: _plain(v) for k, v in vars(st).items()}}
    else:
        manifest["learner"] = {"name": _learner_name(model.learner_), **model.learner_.save(folder / "learner")}
        manifest["widths"] = model.widths_
        if model.task == "classification":
            manifest["calibrator"] = model.calibrator_.to_dict()
    atomic_write_text(json.dumps(manifest, indent=1), folder / "manifest.json")
    return folder


def _plain(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, tuple):
        return list(v)
    return v


def load_model(folder: Path) -> Any:
    """Rebuild a model written by `save_model` (predictions match the saved model's)."""
    manifest = json.loads((Path(folder) / "manifest.json").read_text(encoding="utf-8"))
    if manifest["model"] == "LateCalibratedFusion":
        model = LateCalibratedFusion(**manifest["params"])
        model.learners_ = {m: LEARNERS.get(info["name"]).load(info, Path(folder) / f"learner_{m}")
                           for m, info in manifest["learners"].items()}
        model.calibrators_ = {m: Calibrator.from_dict(d) for m, d in manifest["calibrators"].items()}
        info = dict(manifest["stacker"])
        st = STACKERS[info.pop("type")]()
        for k, v in info.items():
            setattr(st, k, np.array(v) if isinstance(v, list) and k != "range_" else
                    (tuple(v) if k == "range_" else v))
        model._stackers = {tuple(manifest["modalities"]): st}
    else:
        model = EarlyFusion(**manifest["params"])
        info = manifest["learner"]
        model.learner_ = LEARNERS.get(info["name"]).load(info, Path(folder) / "learner")
        model.widths_ = manifest["widths"]
        if manifest["task"] == "classification":
            model.calibrator_ = Calibrator.from_dict(manifest["calibrator"])
    model.task, model.n_classes, model.modalities = manifest["task"], manifest["n_classes"], manifest["modalities"]
    model.columns = manifest["columns"]
    model.fitted_ = True
    return model


def fit_and_save_final(cfg, labels: pd.DataFrame, frames: dict[str, pd.DataFrame], folder: Path) -> Path:
    """Fit the configured model on every labelled sample (inner folds for calibration and
    stacking drawn from all of them) for each target, and save each under `folder/<target>`."""
    from fusion.registry import MODELS
    from fusion.splits import inner_folds

    for tname, t in cfg.targets.items():
        keep = labels[t.label].notna().to_numpy()
        y = labels.loc[keep, t.label].to_numpy().astype(int)
        groups = labels.loc[keep, "subject_id"].astype(str).to_numpy()
        inner = (inner_folds(y, groups, np.arange(len(y)), cfg.cv.inner_splits, cfg.cv.seed)
                 if cfg.cv.inner_splits > 1 else [])
        blocks = {m: f[keep].to_numpy(dtype=np.float64) for m, f in frames.items()}
        model = MODELS.get(cfg.model.name)(**cfg.model.params).fit(
            blocks, y, task="classification", n_classes=t.n_classes, inner=inner, seed=cfg.cv.seed)
        save_model(model, folder / tname, {m: [str(c) for c in f.columns] for m, f in frames.items()})
    return folder
