"""Figures of an evaluation: confusion matrix, reliability diagram, decision curve, ablation."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from fusion.evaluation.metrics import confusion, reliability  # noqa: E402


def _pooled(P: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stack every repeat's out-of-fold predictions (rows scored in each)."""
    ys, ps = [], []
    for r in range(len(P)):
        ok = ~np.isnan(P[r]).any(1)
        ys.append(y[ok])
        ps.append(P[r, ok])
    return np.concatenate(ys), np.concatenate(ps)


def confusion_figure(title: str, y: np.ndarray, labels: np.ndarray, class_names: list[str]):
    """Row-normalised confusion of the named classes `labels` ((repeats, n), -1 unscored)."""
    scored = labels >= 0
    yy = np.concatenate([y[scored[r]] for r in range(len(labels))])
    m = confusion(yy, labels[scored], len(class_names)).astype(float)
    norm = m / np.clip(m.sum(1, keepdims=True), 1, None)
    fig, ax = plt.subplots(figsize=(1.1 * len(class_names) + 2, 1.0 * len(class_names) + 1.5))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            ax.text(j, i, f"{norm[i, j]:.2f}\n({int(m[i, j] / len(labels))})", ha="center", va="center",
                    fontsize=8, color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(class_names)), class_names, rotation=30, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}\nrow-normalised; counts per repeat in brackets", fontsize=9)
    return fig


def reliability_figure(title: str, y: np.ndarray, variants: dict[str, np.ndarray]):
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    for label, P in variants.items():
        yy, pp = _pooled(P, y)
        rel = reliability(yy, pp)
        ok = rel["count"] > 0
        ax.plot(rel["confidence"][ok], rel["accuracy"][ok], marker="o", label=label)
    ax.set_xlabel("top-label confidence")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    return fig


def decision_figure(title: str, dc: dict[str, Any]):
    t = np.asarray(dc["threshold"])
    fig, ax = plt.subplots(figsize=(5.5, 4))
    model, sd = np.asarray(dc["model"]), np.asarray(dc["model_sd"])
    ax.plot(t, model, label="model", lw=2)
    ax.fill_between(t, model - sd, model + sd, alpha=0.2)
    ax.plot(t, dc["treat_all"], label="treat all", ls="--")
    ax.plot(t, dc["treat_none"], label="treat none", ls=":")
    ax.set_ylim(min(-0.05, float(np.min(model)) - 0.02), max(0.05, float(np.max(dc["treat_all"])) + 0.05))
    ax.set_xlabel("threshold probability")
    ax.set_ylabel("net benefit")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    return fig


def ablation_figure(title: str, metrics: dict[str, dict[str, dict[str, float]]],
                    ablation: dict[str, tuple[str, str]]):
    rows = [(k, v["f1_weighted"]) for k, v in metrics.items() if k in ablation]
    if not rows:
        return None
    fusions = list(dict.fromkeys(f for f, _ in ablation.values()))
    palette = {f: f"C{i % 10}" for i, f in enumerate(fusions)}
    rows.sort(key=lambda kv: kv[1]["mean"])
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(rows) + 1.2))
    means = [r[1]["mean"] for r in rows]
    err = [[r[1]["mean"] - r[1].get("ci_low", r[1]["mean"]) for r in rows],
           [r[1].get("ci_high", r[1]["mean"]) - r[1]["mean"] for r in rows]]
    colors = [palette.get(ablation[k][0], "grey") for k, _ in rows]
    ax.barh(range(len(rows)), means, xerr=err, color=colors, capsize=2)
    ax.set_yticks(range(len(rows)), [k for k, _ in rows], fontsize=8)
    ax.set_xlabel("weighted F1 (mean over seeds, 95 % CI)")
    ax.legend(handles=[Patch(color=c, label=f) for f, c in palette.items()], fontsize=8, loc="lower right")
    ax.set_title(title, fontsize=9)
    return fig


def conformal_figure(title: str, conformal: dict[str, Any]):
    """Empirical coverage of the conformal sets against the nominal 1 − α, per score (left), and
    the selective accuracy against the share of people decided when abstaining above each set
    size, at each reported level (right)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
    left.plot([0.5, 1], [0.5, 1], ls="--", c="grey", lw=1, label="nominal")
    for score, grid in conformal.get("grid", {}).items():
        alphas = sorted(grid, key=float)
        left.plot([1 - float(a) for a in alphas], [grid[a] for a in alphas], marker="o", ms=3, label=score)
    left.set_xlabel("nominal coverage 1 − α")
    left.set_ylabel("empirical coverage (out of fold)")
    left.legend(fontsize=8)
    for alpha, by_score in conformal.get("sets", {}).items():
        for score, e in by_score.items():
            pts = [(a["decided"]["mean"], a["accuracy"]["mean"]) for a in e["abstention"]]
            right.plot(*zip(*pts, strict=True), marker="o", ms=3, label=f"{score}, α = {alpha}")
    right.set_xlabel("share of people decided (set ≤ k classes)")
    right.set_ylabel("accuracy on them")
    right.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def target_figures(tname: str, spec, result, y: np.ndarray, dc: dict[str, Any] | None):
    names = spec.class_names
    curves = {"model": result.variants["model"]}
    if "uncalibrated" in result.variants:
        curves = {"calibrated": result.variants["model"], "uncalibrated": result.variants["uncalibrated"]}
    figs = [(f"{tname}_confusion", confusion_figure(f"{tname}: confusion (out-of-fold)", y,
                                                     result.labels("model"), names)),
            (f"{tname}_reliability", reliability_figure(f"{tname}: reliability of the prediction", y, curves))]
    if dc is not None:
        figs.append((f"{tname}_decision_curve", decision_figure(
            f"{tname}: decision curve for {spec.positive_name or f'class ≥ {spec.positive_from}'}", dc)))
    summary = result.conformal.summary if result.conformal is not None else None
    if summary and summary.get("sets"):
        figs.append((f"{tname}_conformal", conformal_figure(f"{tname}: conformal sets", summary)))
    fig = ablation_figure(f"{tname}: ablation", result.metrics, result.ablation)
    if fig is not None:
        figs.append((f"{tname}_ablation", fig))
    return figs
