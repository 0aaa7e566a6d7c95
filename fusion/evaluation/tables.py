"""Tables and the printed report of an evaluation: chance levels, ablation, robustness,
calibration, attributions, predictions."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from fusion.data.blocks import TargetData
from fusion.evaluation.crossval import TargetResult
from fusion.evaluation.flags import format_flags

HEADLINE = ["uar", "accuracy", "balanced_accuracy", "f1_weighted", "f1_macro", "qwk", "auc_ovr",
            "adjacent_accuracy", "ece", "brier"]


def chance_levels(y: np.ndarray, k: int) -> dict[str, float]:
    """Scores of always predicting the majority class (and of a constant prior)."""
    prior = np.bincount(y, minlength=k) / len(y)
    p = prior.max()
    maj = int(prior.argmax())
    return {"accuracy": p, "balanced_accuracy": 1 / k, "uar": 1 / k, "f1_weighted": p * 2 * p / (1 + p),
            "f1_macro": 2 * p / (1 + p) / k, "qwk": 0.0, "auc_ovr": 0.5,
            "adjacent_accuracy": float(prior[max(0, maj - 1):maj + 2].sum()), "ece": float("nan"),
            "brier": float(1 - (prior ** 2).sum())}


def mlflow_key(name: str) -> str:
    """An MLflow-safe metric key."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", name.replace(":", ".").replace("+", "_"))


def fmt(stat: dict[str, float]) -> str:
    s = f"{stat['mean']:.3f} ± {stat['sd']:.3f}"
    if "ci_low" in stat:
        s += f" [{stat['ci_low']:.3f}, {stat['ci_high']:.3f}]"
    return s


def tables(result: TargetResult, classes: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Ablation, robustness, calibration, per-class and confusion tables of one target."""
    out: dict[str, pd.DataFrame] = {}
    m = result.metrics
    classes = classes or [str(k) for k in range(result.n_classes)]
    if result.per_class:
        out["per_class"] = pd.DataFrame({"class": classes, **{
            f"{stat}_{s}": result.per_class[stat][s] for stat in ("recall", "precision", "f1", "support")
            for s in ("mean", "sd")}})
    if result.confusion is not None:
        out["confusion"] = pd.DataFrame(result.confusion, index=pd.Index(classes, name="true"),
                                        columns=[f"pred_{c}" for c in classes]).reset_index()
    rows = []
    for name, stats in m.items():
        if name == "model" or name in result.ablation:
            fusion, mods = result.ablation.get(name, ("model", "all"))
            gain = stats.get("f1_weighted_gain_of_model")
            rows.append({"variant": name, "fusion": fusion, "modalities": mods,
                         **{f"{k}": fmt(stats[k]) for k in ("uar", "f1_weighted", "accuracy", "qwk", "ece")
                            if k in stats},
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
            for v, label in (("uncalibrated", "uncalibrated"), ("model", "calibrated (ours)"))])
    return out


def predictions_table(target: TargetData, result: TargetResult) -> pd.DataFrame:
    """Every sample's out-of-fold probabilities (and predicted score) per repeat."""
    preds = pd.DataFrame({"sample_id": target.index, "subject_id": target.subjects, "group": target.groups,
                          "y": target.y, "label": [target.classes[k] for k in target.y]})
    P = result.variants["model"]
    labels = result.labels("model")
    for r in range(len(P)):
        for k in range(result.n_classes):
            preds[f"p{k}_repeat{r}"] = P[r, :, k]
        # the class the model names (its decision rule's, or the most probable one); -1 unscored
        preds[f"pred_repeat{r}"] = labels[r]
    if result.regression is not None:
        preds["score"] = target.score
        for r in range(len(result.regression)):
            preds[f"score_pred_repeat{r}"] = result.regression[r]
    return preds


def per_group_table(target: TargetData, result: TargetResult) -> pd.DataFrame:
    """Each split group's (video's, subject's, dialogue's) scored samples, accuracy and macro F1
    of their predictions (mean over repeats), and, with per-window predictions, its windows'
    accuracy: where the errors concentrate."""
    from fusion.evaluation.metrics import f1_scores

    P = result.variants["model"]
    labels = result.labels("model")
    scored = ~np.isnan(P[0]).any(1)
    rows = []
    for g in pd.unique(target.groups[scored]):
        idx = np.flatnonzero(scored & (target.groups == g))
        y = target.y[idx]
        acc = [float((labels[r, idx] == y).mean()) for r in range(len(P))]
        f1 = [f1_scores(y, labels[r, idx], result.n_classes)[1] for r in range(len(P))]
        row = {"group": g, "n_samples": len(idx), "accuracy": float(np.mean(acc)), "f1_macro": float(np.mean(f1))}
        if result.windows is not None:
            W = result.windows[:, idx]  # (repeats, samples, T, K)
            present = ~np.isnan(W[0]).any(-1)
            yw = np.broadcast_to(y[:, None], present.shape)[present]
            row["n_windows"] = int(present.sum())
            row["window_accuracy"] = float(np.mean([(W[r][present].argmax(-1) == yw).mean() for r in range(len(W))]))
        rows.append(row)
    return pd.DataFrame(rows).sort_values("accuracy", kind="stable").reset_index(drop=True)


def conformal_table(target: TargetData, result: TargetResult) -> pd.DataFrame | None:
    """Every sample's conformal sets (the classes in it, repeat 0) for each level and score,
    and its score interval: `<target>_conformal.csv`."""
    c = result.conformal
    if c is None or not c.sets or c.spec is None:
        return None
    out = pd.DataFrame({"sample_id": target.index, "label": [target.classes[k] for k in target.y]})
    if c.spec.groups is not None:
        out[c.spec.group_by or "group"] = c.spec.groups
    for alpha in c.spec.alphas:
        for score in c.spec.scores:
            S = c.sets.get(f"{score}@{alpha:g}")
            if S is None:
                continue
            out[f"set_{score}_alpha{alpha:g}"] = ["" if np.isnan(row).any() else
                                                  "|".join(target.classes[k] for k in np.flatnonzero(row > 0.5))
                                                  for row in S[0]]
        iv = c.intervals.get(f"{alpha:g}")
        if iv is not None:
            out[f"score_low_alpha{alpha:g}"], out[f"score_high_alpha{alpha:g}"] = iv[0, :, 0], iv[0, :, 1]
    return out


def conformal_keys(target: str, conformal: dict[str, Any]) -> dict[str, float]:
    """The conformal summary's coverage and size as MLflow keys
    `target.conformal.<score>.alpha<α>.<stat>` (and `.interval.` for scores)."""
    flat = {}
    for alpha, by_score in conformal.get("sets", {}).items():
        for score, entry in by_score.items():
            for stat in ("coverage", "size", "singleton", "empty", "contiguous"):
                flat[mlflow_key(f"{target}.conformal.{score}.alpha{alpha}.{stat}")] = entry[stat]["mean"]
            for g, e in entry.get("per_group", {}).items():
                flat[mlflow_key(f"{target}.conformal.{score}.alpha{alpha}.group.{g}.coverage")] = e["coverage"]["mean"]
    for alpha, entry in conformal.get("intervals", {}).items():
        for stat in ("coverage", "width"):
            flat[mlflow_key(f"{target}.conformal.interval.alpha{alpha}.{stat}")] = entry[stat]["mean"]
    return flat


def format_conformal(conformal: dict[str, Any]) -> list[str]:
    """The printed lines of a target's conformal sets and intervals."""
    lines = []
    for alpha, by_score in conformal.get("sets", {}).items():
        parts = [f"{score} coverage {fmt(e['coverage'])}, size {e['size']['mean']:.2f}"
                 for score, e in by_score.items()]
        lines.append(f"  conformal sets, α = {alpha} (target coverage ≥ {1 - float(alpha):.2f}; "
                     f"all {conformal['n_classes']} classes is the trivial set):")
        lines.extend(f"    {p}" for p in parts)
        first = next(iter(by_score.values()))
        if first.get("per_group"):
            lines.append(f"    per {conformal['group_by']} ({next(iter(by_score))}): " + ", ".join(
                f"{g} {e['coverage']['mean']:.3f} (n {e['n']})" for g, e in first["per_group"].items()))
    for alpha, e in conformal.get("intervals", {}).items():
        lines.append(f"  score interval, α = {alpha}: coverage {fmt(e['coverage'])}, mean width "
                     f"{e['width']['mean']:.2f}")
    return lines


def metric_keys(target: str, metrics: dict[str, dict[str, dict[str, float]]]) -> dict[str, float]:
    """Nested metrics → flat MLflow-safe keys `target.variant.metric.stat`."""
    flat = {}
    for variant, stats in metrics.items():
        for metric, s in stats.items():
            for stat, v in s.items():
                flat[mlflow_key(f"{target}.{variant}.{metric}.{stat}")] = v
    return flat


def attribution_tables(result: TargetResult, ids: list[str], columns: dict[str, list[str]],
                       modalities: list[str]) -> dict[str, pd.DataFrame]:
    """Per-prediction and cohort attributions (repeat 0 out-of-fold predictions), on the scale
    of the fused decision (`fusion.models.attribution`): per modality the mean |contribution|
    to the fused log-odds of the predicted class; per feature family (`features.glossary`: the
    sentence embedding's dimensions, a face's action units, …) the mean |sum of its features'
    contributions| of each prediction; per feature its mean |contribution| (or, for a modality
    without exact contributions, the permutation importance, on its own scale)."""
    from features.glossary import describe

    out = {}
    has_modalities = result.modality_contrib is not None and not np.isnan(result.modality_contrib).all()
    if has_modalities:
        per = pd.DataFrame(result.modality_contrib, columns=[f"modality:{m}" for m in modalities])
        per.insert(0, "sample_id", ids)
        proba = result.variants["model"][0]
        per.insert(1, "predicted_class", result.labels("model")[0])
        per.insert(2, "confidence", np.nanmax(proba, axis=1))
        for m in modalities:
            if m in result.feature_contrib:
                c = result.feature_contrib[m]
                top = np.argsort(-np.abs(np.nan_to_num(c)), axis=1)[:, :3]
                per[f"top_features:{m}"] = [", ".join(f"{columns[m][j]} ({c[i, j]:+.3f})" for j in top[i])
                                            if not np.isnan(c[i]).all() else "" for i in range(len(ids))]
        out["attributions_per_prediction"] = per
    rows, families = [], []
    for m in modalities:
        c = result.feature_contrib.get(m)
        described = [describe(name) for name in columns[m]]
        if c is not None:
            scored = ~np.isnan(c).all(1)
            imp, kind = np.nanmean(np.abs(c[scored]), axis=0), "mean |contribution to the fused log-odds|"
            by_family: dict[str, list[int]] = {}
            for j, d in enumerate(described):
                by_family.setdefault(d.family, []).append(j)
            for family, cols in by_family.items():
                families.append({"modality": m, "family": family, "n_features": len(cols), "measure": kind,
                                 "importance": float(np.mean(np.abs(np.nansum(c[scored][:, cols], axis=1))))})
        elif m in result.permutation:
            imp, kind = np.mean(result.permutation[m], axis=0), "permutation: increase in log loss"
        else:
            continue
        for name, d, v in zip(columns[m], described, imp, strict=True):
            rows.append({"modality": m, "feature": name, "family": d.family, "interpretable": d.interpretable,
                         "importance": float(v), "measure": kind})
    if rows:
        out["attributions_features"] = pd.DataFrame(rows).sort_values("importance", ascending=False)
    if families:
        out["attributions_families"] = pd.DataFrame(families).sort_values("importance", ascending=False)
    if has_modalities:
        out["attributions_modalities"] = pd.DataFrame({
            "modality": modalities,
            "mean_abs_contribution": np.nanmean(np.abs(result.modality_contrib), axis=0)})
    return out


def format_summary(summary: dict[str, Any]) -> str:
    """Plain-text report: headline metrics against chance, then ablation / robustness tables."""
    lines = []
    for w in summary.get("warnings", []):
        lines.append(w)
    for tname, t in summary["targets"].items():
        m, chance = t["metrics"]["model"], t["chance"]
        names = t.get("classes") or [str(k) for k in range(t["n_classes"])]
        counts = ", ".join(f"{c} {n}" for c, n in zip(names, t["class_counts"], strict=True))
        groups = (f", {t['n_groups']} {t['group_by']} groups" if t.get("group_by", "subject") != "subject"
                  else "")
        binary = t["n_classes"] == 2
        kind = "binary, 2 classes" if binary else f"{t['n_classes']} {t.get('kind', 'ordinal')} classes"
        lines.append(f"\n{tname}: {t['label']} ({kind}: {counts}); "
                     f"{t['n_samples']} samples, {t['n_subjects']} subjects{groups}")
        lines.append(f"  {'metric':<18} {'mean ± sd [95% CI]':>34} {'chance':>8}")
        for k in HEADLINE:
            if k in m and not (binary and k in ("adjacent_accuracy", "qwk")):
                c = chance.get(k, float("nan"))
                lines.append(f"  {k:<18} {fmt(m[k]):>34} {'–' if c != c else f'{c:.3f}':>8}")
        if t.get("kind") == "nominal" and t.get("per_class"):
            lines.append("  recall per class: " + ", ".join(
                f"{c} {v['recall']['mean']:.2f}" for c, v in t["per_class"].items()))
        if "regression" in t["metrics"]:
            r = t["metrics"]["regression"]
            lines.append(f"  {'score MAE':<18} {fmt(r['mae']):>34}")
        if "per_window" in t["metrics"]:
            w = t["metrics"]["per_window"]
            lines.append(f"  per window ({int(w['n_windows']['mean'])} windows, each with its sample's label): "
                         f"macro F1 {fmt(w['f1_macro'])}, UAR {fmt(w['uar'])}")
        ablation = t.get("ablation", {})
        for fusion in dict.fromkeys(f for f, _ in ablation.values()):
            rows = [(mods, t["metrics"][k]) for k, (f, mods) in ablation.items() if f == fusion and k in t["metrics"]]
            if rows:
                lines.append(f"  ablation ({fusion}), weighted F1; model minus variant (paired):")
                lines.extend(f"    {mods:<22} {fmt(v['f1_weighted']):<32} "
                             f"{fmt(v['f1_weighted_gain_of_model']) if 'f1_weighted_gain_of_model' in v else ''}"
                             for mods, v in rows)
        rows = [(k, v) for k, v in t["metrics"].items() if k.startswith(("drop:", "noise:"))]
        if rows:
            lines.append("  robustness, weighted F1 (drop vs. intact model):")
            base = m["f1_weighted"]["mean"]
            lines.extend(f"    {k:<22} {v['f1_weighted']['mean']:.3f}  ({v['f1_weighted']['mean'] - base:+.3f})"
                         for k, v in rows)
        if "uncalibrated" in t["metrics"]:
            u = t["metrics"]["uncalibrated"]
            lines.append(f"  top-label ECE: calibrated {fmt(m['ece'])} vs uncalibrated {fmt(u['ece'])}")
        if t.get("conformal"):
            lines.extend(format_conformal(t["conformal"]))
    cv = summary["cv"]
    seeds = f"{cv['n_repeats']} seed{'s' if cv['n_repeats'] != 1 else ''}"
    scheme = {"grouped-kfold": f"{cv['n_splits']}-fold subject-grouped CV × {seeds}",
              "loso": "leave-one-subject-out",
              "official": f"official splits {'+'.join(cv['train_splits'])} → {'+'.join(cv['test_splits'])}",
              "holdout": f"held-out groups {', '.join(map(str, cv.get('test_groups', [])))}",
              "turn-level": "TURN-LEVEL folds (not subject-grouped: leaky)"}[cv["scheme"]]
    inner = f", {cv['inner_splits']} inner folds" if cv["inner_splits"] > 1 else ""
    group_by = next((t.get("group_by") for t in summary["targets"].values()), "subject") or "subject"
    lines.append(f"({summary['model']}; {scheme}{inner}; grouped by {group_by}; CI: {group_by} bootstrap)")
    lines.extend(f"note: {n}" for n in summary.get("notes", []))
    lines.extend(format_flags(summary.get("flags", [])))
    return "\n".join(lines)
