"""`fusion train`: cross-validate a fusion model on cached features, for every target.

`train(cfg) -> dict` is a pure function of its configuration: it reads the feature store
(never extracts), pools each modality's feature sets to one row per sample (a sample without a
modality keeps an all-NaN row, which the models treat as missing), evaluates with repeated
subject-grouped cross-validation (`fusion.experiment`), writes tables and figures, tracks the
run in MLflow and returns the summary that `fusion train --json` writes.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.align import Segmenter
from features.base import Extractor
from features.runner import feature_set_key
from features.store import FeatureSetKey, FeatureStore, atomic_write_text
from fusion.config import ConfigError, ExtractConfig, FeatureSetSpec, InputSpec, TrainConfig, flatten, to_yaml
from fusion.datasets import build_dataset
from fusion.experiment import TargetResult, cross_validate, decision_curve, modality_availability, summarise
from fusion.registry import EXTRACTORS
from fusion.splits import make_folds
from fusion.tracking import Tracker, git_info

HEADLINE = ["accuracy", "balanced_accuracy", "f1_weighted", "f1_macro", "qwk", "auc_ovr",
            "adjacent_accuracy", "ece", "brier"]
TURN_LEVEL_WARNING = ("WARNING: cv.scheme turn-level puts samples of one subject on both sides of the "
                      "split. It exists only to demonstrate leakage; its figures are not evidence of "
                      "anything a model learned about the condition.")


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
        if len(stats) > 1 or frame.index.get_level_values(0).duplicated().any():
            pooled = pooled.add_suffix(f"__{stat}")
        parts.append(pooled.add_prefix(f"{prefix}/"))
    return pd.concat(parts, axis=1)


def _digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=8)
    h.update(path.read_bytes())
    return h.hexdigest()


def load_input(store: FeatureStore, extract: ExtractConfig, inp: InputSpec) -> tuple[pd.DataFrame, dict]:
    key = feature_key(extract, inp.features)
    path = store.path(key)
    if not path.exists():
        raise FileNotFoundError(f"feature set {inp.features!r} ({path}) has not been extracted yet; run "
                                f"`fusion extract` with the same extract config first")
    frame = store.read(key)
    if inp.columns:
        keep = [c for c in frame.columns if any(fnmatch.fnmatchcase(c, pat) for pat in inp.columns)]
        if not keep:
            raise ConfigError(f"columns {inp.columns} of feature set {inp.features!r} match nothing "
                              f"(its columns start {list(frame.columns[:4])})")
        frame = frame[keep]
    pooled = pool_rows(frame, inp.pool, inp.features)
    return pooled, {"path": str(path), "param_hash": key.param_hash, "file_digest": _digest(path)}


def load_blocks(cfg: TrainConfig):
    """Labels, one feature block per modality aligned on the labels' index, and provenance."""
    if cfg.extract is None:
        raise ConfigError("train config has no `extract` section (or file) telling where the features are")
    dataset = build_dataset(cfg.extract.dataset)
    labels = dataset.labels()
    store = FeatureStore(cfg.extract.store)
    blocks, provenance = {}, {}
    for modality, inputs in cfg.modalities.items():
        parts = []
        for inp in inputs:
            pooled, provenance[inp.features] = load_input(store, cfg.extract, inp)
            parts.append(pooled)
        frame = pd.concat(parts, axis=1, join="outer").reindex(labels.index)
        blocks[modality] = frame
    return dataset, labels, blocks, provenance


def chance_levels(y: np.ndarray, k: int) -> dict[str, float]:
    """Scores of always predicting the majority class (and of a constant prior)."""
    prior = np.bincount(y, minlength=k) / len(y)
    p = prior.max()
    maj = int(prior.argmax())
    return {"accuracy": p, "balanced_accuracy": 1 / k, "f1_weighted": p * 2 * p / (1 + p),
            "f1_macro": 2 * p / (1 + p) / k, "qwk": 0.0, "auc_ovr": 0.5,
            "adjacent_accuracy": float(prior[max(0, maj - 1):maj + 2].sum()), "ece": float("nan"),
            "brier": float(1 - (prior ** 2).sum())}


def _key(name: str) -> str:
    """An MLflow-safe metric key."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", name.replace(":", ".").replace("+", "_"))


def fmt(stat: dict[str, float]) -> str:
    s = f"{stat['mean']:.3f} ± {stat['sd']:.3f}"
    if "ci_low" in stat:
        s += f" [{stat['ci_low']:.3f}, {stat['ci_high']:.3f}]"
    return s


def tables(result: TargetResult, modalities: list[str]) -> dict[str, pd.DataFrame]:
    """Ablation, robustness and calibration tables of one target."""
    out: dict[str, pd.DataFrame] = {}
    m = result.metrics
    rows = []
    for name, stats in m.items():
        if name == "model" or name.startswith(("late:", "early:")):
            kind, _, mods = name.partition(":")
            gain = stats.get("f1_weighted_gain_of_model")
            rows.append({"variant": name, "fusion": kind if mods else "model", "modalities": mods or "all",
                         **{f"{k}": fmt(stats[k]) for k in ("f1_weighted", "accuracy", "qwk", "ece")},
                         "model_minus_variant_f1_weighted": fmt(gain) if gain else "",
                         "f1_weighted_mean": stats["f1_weighted"]["mean"]})
    if len(rows) > 1:
        out["ablation"] = pd.DataFrame(rows).sort_values("f1_weighted_mean", ascending=False)
    base = m["model"]["f1_weighted"]["mean"]
    rows = []
    for name, stats in m.items():
        if name.startswith(("drop:", "noise:")):
            rows.append({"condition": name, "f1_weighted": fmt(stats["f1_weighted"]),
                         "f1_weighted_drop": base - stats["f1_weighted"]["mean"],
                         "accuracy_drop": m["model"]["accuracy"]["mean"] - stats["accuracy"]["mean"]})
    if rows:
        out["robustness"] = pd.DataFrame(rows)
    if "uncalibrated" in m:
        out["calibration"] = pd.DataFrame([
            {"fusion": label, "ece": fmt(m[v]["ece"]), "brier": fmt(m[v]["brier"]),
             "f1_weighted": fmt(m[v]["f1_weighted"])}
            for v, label in (("uncalibrated", "uncalibrated (mean of raw probabilities)"),
                             ("model", "calibrated (ours)"))])
    return out


def attribution_tables(result: TargetResult, ids: list[str], columns: dict[str, list[str]],
                       modalities: list[str]) -> dict[str, pd.DataFrame]:
    """Per-prediction and cohort attributions (repeat 0 out-of-fold predictions)."""
    out = {}
    if result.modality_contrib is not None and not np.isnan(result.modality_contrib).all():
        per = pd.DataFrame(result.modality_contrib, columns=[f"modality:{m}" for m in modalities])
        per.insert(0, "sample_id", ids)
        proba = result.variants["model"][0]
        per.insert(1, "predicted_class", np.nanargmax(np.nan_to_num(proba, nan=-1), axis=1))
        per.insert(2, "confidence", np.nanmax(proba, axis=1))
        for m in modalities:
            if m in result.feature_contrib:
                c = result.feature_contrib[m]
                top = np.argsort(-np.abs(np.nan_to_num(c)), axis=1)[:, :3]
                per[f"top_features:{m}"] = [", ".join(f"{columns[m][j]} ({c[i, j]:+.3f})" for j in top[i])
                                            if not np.isnan(c[i]).all() else "" for i in range(len(ids))]
        out["attributions_per_prediction"] = per
    rows = []
    for m in modalities:
        c = result.feature_contrib.get(m)
        if c is not None:
            imp, kind = np.nanmean(np.abs(c), axis=0), "mean |exact contribution| (linear or TreeSHAP)"
        elif m in result.permutation:
            imp, kind = np.mean(result.permutation[m], axis=0), "permutation: increase in log loss"
        else:
            continue
        for name, v in zip(columns[m], imp, strict=True):
            family = name.split("/", 1)[-1].split("__")[0]
            rows.append({"modality": m, "feature": name, "family": family, "importance": float(v),
                         "measure": kind})
    if rows:
        cohort = pd.DataFrame(rows).sort_values("importance", ascending=False)
        out["attributions_features"] = cohort
        out["attributions_families"] = (cohort.groupby(["modality", "family", "measure"], as_index=False)
                                        ["importance"].sum().sort_values("importance", ascending=False))
    if result.modality_contrib is not None and not np.isnan(result.modality_contrib).all():
        out["attributions_modalities"] = pd.DataFrame({
            "modality": modalities,
            "mean_abs_share_of_margin": np.nanmean(np.abs(result.modality_contrib), axis=0)})
    return out


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Evaluate `cfg.model` on every target; track and return a summary.

    Raises:
        ConfigError: for a missing extract section, unknown features or labels, labels outside
            0..n_classes-1, or late fusion without inner folds.
    """
    if cfg.protocol == "trimodal-paper":
        from fusion.protocols import run_trimodal_paper

        return run_trimodal_paper(cfg)
    t0 = time.perf_counter()
    if cfg.model.name == "late-fusion" and cfg.cv.inner_splits < 2:
        raise ConfigError("late fusion calibrates and stacks on inner-validation data: set cv.inner_splits "
                          "to 2 or more")
    warnings = [TURN_LEVEL_WARNING] if cfg.cv.scheme == "turn-level" else []
    for w in warnings:
        print(w, file=sys.stderr)
    dataset, labels, frames, provenance = load_blocks(cfg)
    modalities = list(frames)
    summary: dict[str, Any] = {"dataset": dataset.name, "model": cfg.model.name, "modalities": modalities,
                               "calibration": cfg.model.params.get("calibration", "temperature"),
                               "protocol": "ours", "cv": cfg.cv.model_dump(), "feature_sets": provenance,
                               "warnings": warnings, "targets": {}}
    artifacts: dict[str, pd.DataFrame] = {}
    figures: list[tuple[str, Any]] = []
    results: dict[str, TargetResult] = {}
    for tname, t in cfg.targets.items():
        if t.label not in labels.columns:
            raise ConfigError(f"target {tname}: label {t.label!r} is not a label of {dataset.name}; labels "
                              f"are: {', '.join(labels.columns.drop(['subject_id', 'split']))}")
        avail_any = np.column_stack([~f.isna().all(axis=1).to_numpy() for f in frames.values()]).any(1)
        keep = labels[t.label].notna().to_numpy() & avail_any
        lab = labels[keep]
        y = lab[t.label].to_numpy()
        if not np.all(np.isin(y, np.arange(t.n_classes))):
            raise ConfigError(f"target {tname}: label {t.label!r} must take values 0..{t.n_classes - 1}; "
                              f"found {sorted(set(y.tolist()))[:10]}")
        y = y.astype(int)
        groups = lab["subject_id"].astype(str).to_numpy()
        blocks = {m: f[keep].to_numpy(dtype=np.float64) for m, f in frames.items()}
        score = None
        if t.score is not None:
            if t.score not in labels.columns:
                raise ConfigError(f"target {tname}: score {t.score!r} is not a label of {dataset.name}")
            score = pd.to_numeric(lab[t.score], errors="coerce").to_numpy(dtype=float)
        folds = make_folds(cfg.cv, y, groups, lab["split"].to_numpy())
        ev = cfg.evaluation
        result = cross_validate(blocks, y, folds, model_name=cfg.model.name, model_params=cfg.model.params,
                                n_classes=t.n_classes, score=score, ablation=ev.ablation,
                                robustness=ev.robustness, noise_levels=ev.noise_levels,
                                attributions=ev.attributions, seed=cfg.cv.seed)
        summarise(result, y, groups, score, ev.n_bootstrap, cfg.cv.seed)
        results[tname] = result
        scored = ~np.isnan(result.variants["model"][0]).any(1)
        tsum: dict[str, Any] = {
            "label": t.label, "n_classes": t.n_classes, "n_samples": int(scored.sum()),
            "n_subjects": int(len(np.unique(groups[scored]))),
            "class_counts": np.bincount(y[scored], minlength=t.n_classes).tolist(),
            "modality_available": modality_availability(blocks),
            "metrics": result.metrics, "chance": chance_levels(y[scored], t.n_classes),
            "excluded_no_features": sorted(labels.index[labels[t.label].notna().to_numpy() & ~avail_any]),
        }
        for name, table in tables(result, modalities).items():
            artifacts[f"{tname}_{name}"] = table
        if ev.decision_curves and t.positive_from is not None:
            dc = decision_curve(result, y, t.positive_from)
            tsum["decision_curve"] = {k: v.tolist() for k, v in dc.items()}
            artifacts[f"{tname}_decision_curve"] = pd.DataFrame(dc)
        if ev.attributions:
            columns = {m: [str(c) for c in frames[m].columns] for m in modalities}
            for name, table in attribution_tables(result, list(lab.index), columns, modalities).items():
                artifacts[f"{tname}_{name}"] = table
        preds = pd.DataFrame({"sample_id": lab.index, "subject_id": groups, "y": y})
        for r in range(len(result.variants["model"])):
            for k in range(t.n_classes):
                preds[f"p{k}_repeat{r}"] = result.variants["model"][r, :, k]
        if result.regression is not None:
            preds["score"] = score
            for r in range(len(result.regression)):
                preds[f"score_pred_repeat{r}"] = result.regression[r]
        artifacts[f"{tname}_predictions"] = preds
        artifacts[f"{tname}_folds"] = pd.DataFrame(result.per_fold)
        if ev.plots:
            from fusion import plots

            figures += plots.target_figures(tname, t, result, y, tsum.get("decision_curve"))
        summary["targets"][tname] = tsum

    with Tracker(cfg.tracking, run_name=f"{cfg.model.name}-{'+'.join(cfg.targets)}") as tracker:
        stamp = tracker.run_id or time.strftime("%Y%m%d-%H%M%S")
        out_dir = Path(cfg.output_dir) / cfg.tracking.experiment / stamp
        out_dir.mkdir(parents=True, exist_ok=True)
        files = []
        for name, table in artifacts.items():
            path = out_dir / f"{name}.csv"
            atomic_write_text(table.to_csv(index=False), path)
            files.append(path)
        for name, fig in figures:
            path = out_dir / f"{name}.png"
            fig.savefig(path, dpi=120, bbox_inches="tight")
            files.append(path)
        if figures:
            import matplotlib.pyplot as plt

            plt.close("all")
        fitted = {t: r.fitted for t, r in results.items()}
        atomic_write_text(json.dumps(fitted, indent=1, default=float), out_dir / "fitted_per_fold.json")
        atomic_write_text(to_yaml(cfg), out_dir / "config.yaml")
        files += [out_dir / "fitted_per_fold.json", out_dir / "config.yaml"]
        if cfg.evaluation.save_model:
            from fusion.persist import fit_and_save_final

            model_dir = fit_and_save_final(cfg, labels, frames, out_dir / "model")
            summary["model_dir"] = str(model_dir)
        summary["seconds"] = round(time.perf_counter() - t0, 3)
        summary["run_id"] = tracker.run_id
        summary["tracking_uri"] = cfg.tracking.uri if cfg.tracking.enabled else None
        summary["outputs"] = {"dir": str(out_dir), "files": [str(f) for f in files] + [str(out_dir / "metrics.json")]}
        atomic_write_text(json.dumps(summary, indent=1, default=_json), out_dir / "metrics.json")

        tracker.set_tags({**git_info(), "model": cfg.model.name, "targets": ",".join(cfg.targets),
                          "cv.scheme": cfg.cv.scheme,
                          **{f"features.{k}.param_hash": v["param_hash"] for k, v in provenance.items()},
                          **{f"features.{k}.file_digest": v["file_digest"] for k, v in provenance.items()}})
        tracker.log_params(flatten(cfg.model_dump(mode="json")))
        for tname, tsum in summary["targets"].items():
            flat = {}
            for variant, stats in tsum["metrics"].items():
                for metric, s in stats.items():
                    for stat, v in s.items():
                        flat[_key(f"{tname}.{variant}.{metric}.{stat}")] = v
            tracker.log_metrics(flat)
            for i, row in enumerate(results[tname].per_fold):
                tracker.log_metrics({_key(f"{tname}.fold.{k}"): v for k, v in row.items()
                                     if k not in ("repeat", "fold")}, step=i)
        for path in files + [out_dir / "metrics.json"]:
            tracker.log_artifact(path)
        if cfg.evaluation.save_model:
            tracker.log_artifact(out_dir / "model")
    return summary


def _json(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    return str(o)


def format_summary(summary: dict[str, Any]) -> str:
    """Plain-text report: headline metrics against chance, then ablation / robustness tables."""
    lines = []
    for w in summary.get("warnings", []):
        lines.append(w)
    for tname, t in summary["targets"].items():
        m, chance = t["metrics"]["model"], t["chance"]
        lines.append(f"\n{tname}: {t['label']} ({t['n_classes']} classes, counts {t['class_counts']}); "
                     f"{t['n_samples']} samples, {t['n_subjects']} subjects")
        lines.append(f"  {'metric':<18} {'mean ± sd [95% CI]':>34} {'chance':>8}")
        for k in HEADLINE:
            if k in m and not (k == "adjacent_accuracy" and t["n_classes"] == 2):
                lines.append(f"  {k:<18} {fmt(m[k]):>34} {chance[k]:>8.3f}")
        if "regression" in t["metrics"]:
            r = t["metrics"]["regression"]
            lines.append(f"  {'score MAE':<18} {fmt(r['mae']):>34}")
        for name in ("late:", "early:"):
            rows = [(k, v) for k, v in t["metrics"].items() if k.startswith(name)]
            if rows:
                lines.append(f"  ablation ({name[:-1]} fusion), weighted F1; model minus variant (paired):")
                lines.extend(f"    {k.split(':', 1)[1]:<22} {fmt(v['f1_weighted']):<32} "
                             f"{fmt(v['f1_weighted_gain_of_model']) if 'f1_weighted_gain_of_model' in v else ''}"
                             for k, v in rows)
        rows = [(k, v) for k, v in t["metrics"].items() if k.startswith(("drop:", "noise:"))]
        if rows:
            lines.append("  robustness, weighted F1 (drop vs. intact model):")
            base = m["f1_weighted"]["mean"]
            lines.extend(f"    {k:<22} {v['f1_weighted']['mean']:.3f}  ({v['f1_weighted']['mean'] - base:+.3f})"
                         for k, v in rows)
        if "uncalibrated" in t["metrics"] and summary.get("calibration") != "none":
            u = t["metrics"]["uncalibrated"]
            lines.append(f"  top-label ECE: calibrated {fmt(m['ece'])} vs uncalibrated {fmt(u['ece'])}")
    cv = summary["cv"]
    scheme = {"grouped-kfold": f"{cv['n_splits']}-fold subject-grouped CV × {cv['n_repeats']} seeds",
              "loso": "leave-one-subject-out",
              "official": f"official splits {'+'.join(cv['train_splits'])} → {'+'.join(cv['test_splits'])}",
              "turn-level": "TURN-LEVEL folds (not subject-grouped: leaky)"}[cv["scheme"]]
    inner = f", {cv['inner_splits']} inner folds" if cv["inner_splits"] > 1 else ""
    lines.append(f"({summary['model']}; {scheme}{inner}; CI: subject bootstrap)")
    return "\n".join(lines)
