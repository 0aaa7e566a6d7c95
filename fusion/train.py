"""Training and evaluation of a per-sample model on cached features.

`train(cfg) -> dict` is a pure function of its configuration: it reads the feature store
(never extracts), runs repeated subject-grouped cross-validation, tracks the run in MLflow
and returns the summary that `fusion train --json` writes.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.align import Segmenter
from features.base import Extractor
from features.runner import feature_set_key
from features.store import FeatureSetKey, FeatureStore, atomic_write_text
from fusion.config import ConfigError, ExtractConfig, FeatureSetSpec, TrainConfig, flatten, to_yaml
from fusion.datasets import build_dataset
from fusion.evaluate import binary_metrics, bootstrap_ci, mean_sd, roc_auc
from fusion.registry import EXTRACTORS, MODELS
from fusion.splits import make_folds
from fusion.tracking import Tracker, git_info

METRICS = ["auc", "balanced_accuracy", "f1", "accuracy", "brier"]


def build_extractor(spec: FeatureSetSpec) -> Extractor:
    return EXTRACTORS.get(spec.extractor.name)(**spec.extractor.params)


def feature_key(extract: ExtractConfig, name: str) -> FeatureSetKey:
    """Store key of the feature set called `name` in an extract config."""
    if name not in extract.features:
        raise ConfigError(f"no feature set {name!r} in the extract config "
                          f"(it defines: {', '.join(extract.features)})")
    spec = extract.features[name]
    return feature_set_key(extract.dataset.store_id, build_extractor(spec), Segmenter(spec.segmentation))


def pool_rows(frame: pd.DataFrame, stats: list[str], prefix: str) -> pd.DataFrame:
    """Pool a feature set's rows (turns, frames) to one row per sample."""
    grouped = frame.groupby(level="sample_id", sort=True)
    parts = []
    for stat in stats:
        pooled = grouped.std(ddof=0) if stat == "std" else getattr(grouped, stat)()
        parts.append(pooled.add_prefix(f"{prefix}__").add_suffix(f"__{stat}"))
    return pd.concat(parts, axis=1)


def file_digest_short(path: Path) -> str:
    h = hashlib.blake2b(digest_size=8)
    h.update(path.read_bytes())
    return h.hexdigest()


def load_inputs(cfg: TrainConfig) -> tuple[pd.DataFrame, dict[str, dict[str, str]]]:
    """Pooled features of every input, joined on sample id; and each input's store identity."""
    store = FeatureStore(cfg.extract.store)
    blocks, provenance = [], {}
    for inp in cfg.inputs:
        key = feature_key(cfg.extract, inp.features)
        path = store.path(key)
        if not path.exists():
            raise FileNotFoundError(
                f"feature set {inp.features!r} ({path}) has not been extracted yet; run "
                f"`fusion extract` with the same extract config first")
        blocks.append(pool_rows(store.read(key), inp.pool, inp.features))
        provenance[inp.features] = {"path": str(path), "param_hash": key.param_hash,
                                    "file_digest": file_digest_short(path)}
    X = pd.concat(blocks, axis=1, join="inner")
    return X, provenance


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Cross-validate `cfg.model` on `cfg.inputs` for `cfg.target`; track and return a summary.

    Raises:
        ConfigError: when the config lacks an extract section or names unknown features.
        ConfigError: also when the target is not a label of the dataset or not binary.
    """
    t0 = time.perf_counter()
    if cfg.extract is None:
        raise ConfigError("train config has no `extract` section (or file) telling where the features are")
    dataset = build_dataset(cfg.extract.dataset)
    labels = dataset.labels()
    if cfg.target not in labels.columns:
        raise ConfigError(f"target {cfg.target!r} is not a label of {dataset.name} at {dataset.root}; "
                         f"labels are: {', '.join(labels.columns.drop(['subject_id', 'split']))}")
    X, provenance = load_inputs(cfg)

    has_label = labels[cfg.target].notna()
    ids = labels.index[has_label]
    missing = sorted(set(ids) - set(X.index))
    ids = [i for i in ids if i in X.index]
    y = labels.loc[ids, cfg.target].astype(float).to_numpy()
    if not set(np.unique(y)) <= {0.0, 1.0} or len(np.unique(y)) != 2:
        raise ConfigError(f"target {cfg.target!r} must take the values 0 and 1, found {sorted(set(y))[:10]}")
    y = y.astype(int)
    groups = labels.loc[ids, "subject_id"].astype(str).to_numpy()
    Xv = X.loc[ids].to_numpy(dtype=np.float64)
    n_missing_values = int(np.isnan(Xv).sum())

    model_cls = MODELS.get(cfg.model.name)
    folds = make_folds(cfg.cv, y, groups, labels.loc[ids, "split"].to_numpy())
    n_repeats = max(f.repeat for f in folds) + 1
    oof = np.full((n_repeats, len(y)), np.nan)
    per_fold = []
    for fold in folds:
        model = model_cls(**cfg.model.params).fit(Xv[fold.train], y[fold.train], seed=fold.seed)
        p = model.predict_proba(Xv[fold.test])[:, list(model.classes_).index(1)]
        oof[fold.repeat, fold.test] = p
        per_fold.append({"repeat": fold.repeat, "fold": fold.fold, "n_test": len(fold.test),
                         **binary_metrics(y[fold.test], p)})
    scored = ~np.isnan(oof[0])  # official splits score only the test part
    per_repeat = [binary_metrics(y[scored], oof[r, scored]) for r in range(n_repeats)]

    metrics: dict[str, dict[str, float]] = {}
    for name in METRICS:
        mean, sd = mean_sd([m[name] for m in per_repeat])
        fn = (roc_auc if name == "auc" else
              lambda yy, ss, _n=name: binary_metrics(yy, ss)[_n])
        lo, hi = bootstrap_ci(fn, y[scored], oof[:, scored], groups[scored], cfg.cv.n_bootstrap,
                              seed=cfg.cv.seed)
        metrics[name] = {"mean": mean, "sd": sd, "ci_low": lo, "ci_high": hi}
    prevalence = float(y[scored].mean())
    chance = {"auc": 0.5, "balanced_accuracy": 0.5, "accuracy": max(prevalence, 1 - prevalence),
              "f1": 2 * prevalence / (1 + prevalence), "brier": prevalence * (1 - prevalence)}

    summary: dict[str, Any] = {
        "target": cfg.target,
        "model": cfg.model.name,
        "dataset": dataset.name,
        "n_samples": int(scored.sum()),
        "n_subjects": int(len(np.unique(groups[scored]))),
        "n_positive": int(y[scored].sum()),
        "n_features": int(Xv.shape[1]),
        "n_missing_values_imputed": n_missing_values,
        "excluded_no_features": missing,
        "cv": cfg.cv.model_dump(),
        "metrics": metrics,
        "chance": chance,
        "per_repeat": per_repeat,
        "feature_sets": provenance,
    }
    with Tracker(cfg.tracking, run_name=f"{cfg.model.name}-{cfg.target}") as tracker:
        stamp = tracker.run_id or time.strftime("%Y%m%d-%H%M%S")
        out_dir = Path(cfg.output_dir) / cfg.tracking.experiment / stamp
        out_dir.mkdir(parents=True, exist_ok=True)
        preds = pd.DataFrame({"sample_id": ids, "subject_id": groups, "y": y})
        for r in range(n_repeats):
            preds[f"p_repeat{r}"] = oof[r]
        atomic_write_text(preds.to_csv(index=False), out_dir / "predictions.csv")
        atomic_write_text(pd.DataFrame(per_fold).to_csv(index=False), out_dir / "folds.csv")
        atomic_write_text(to_yaml(cfg), out_dir / "config.yaml")
        summary["seconds"] = round(time.perf_counter() - t0, 3)
        summary["outputs"] = {"dir": str(out_dir), "predictions": str(out_dir / "predictions.csv"),
                              "folds": str(out_dir / "folds.csv"), "config": str(out_dir / "config.yaml"),
                              "metrics": str(out_dir / "metrics.json")}
        summary["run_id"] = tracker.run_id
        summary["tracking_uri"] = cfg.tracking.uri if cfg.tracking.enabled else None
        atomic_write_text(json.dumps(summary, indent=2, default=str), out_dir / "metrics.json")

        tracker.set_tags({**git_info(), "target": cfg.target, "model": cfg.model.name,
                          **{f"features.{k}.param_hash": v["param_hash"] for k, v in provenance.items()},
                          **{f"features.{k}.file_digest": v["file_digest"] for k, v in provenance.items()}})
        tracker.log_params(flatten(cfg.model_dump(mode="json")))
        tracker.log_metrics({f"{k}_{s}": v[s] for k, v in metrics.items() for s in v})
        tracker.log_metrics({"n_samples": len(y), "n_features": Xv.shape[1]})
        for i, row in enumerate(per_fold):
            tracker.log_metrics({f"fold_{m}": row[m] for m in METRICS}, step=i)
        for name in ("config.yaml", "predictions.csv", "folds.csv", "metrics.json"):
            tracker.log_artifact(out_dir / name)
    return summary


def format_metrics(summary: dict[str, Any]) -> str:
    """A plain-text table of mean ± sd [95 % CI] per metric, with the chance level."""
    lines = [f"{'metric':<18} {'mean ± sd':>16} {'95% CI':>17} {'chance':>8}"]
    for name, m in summary["metrics"].items():
        lines.append(f"{name:<18} {m['mean']:>8.3f} ± {m['sd']:<5.3f} "
                     f"[{m['ci_low']:.3f}, {m['ci_high']:.3f}] {summary['chance'][name]:>8.3f}")
    cv = summary["cv"]
    scheme = {"grouped-kfold": f"{cv['n_splits']}-fold subject-grouped CV × {cv['n_repeats']} seeds",
              "loso": "leave-one-subject-out",
              "official": f"official splits {'+'.join(cv['train_splits'])} → {'+'.join(cv['test_splits'])}",
              "turn-level": "TURN-LEVEL folds (not subject-grouped: leaky)"}[cv["scheme"]]
    lines.append(f"({summary['n_samples']} samples scored, {summary['n_subjects']} subjects, "
                 f"{summary['n_positive']} positive; {scheme}; CI: subject bootstrap)")
    return "\n".join(lines)
