"""Evaluation used by every model: metrics, seeds and intervals (splits: `fusion.evaluation.splits`).

Figures are reported as mean ± sd over repeated cross-validation (different seeds)
with a subject-level bootstrap 95 % interval, never as the best of several runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import rankdata

# --- metrics (numpy; fast enough to bootstrap) -------------------------------------------

def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney); NaN when only one class is present."""
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return float(np.nanmean(v)), float(np.nanstd(v, ddof=1)) if len(v) > 1 else 0.0


def bootstrap_intervals(metrics: Callable[[np.ndarray, np.ndarray], dict[str, float]], y: np.ndarray,
                        scores: np.ndarray, groups: np.ndarray, n_boot: int = 1000, seed: int = 0,
                        level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Subject-level bootstrap intervals of several metrics averaged over repeats.

    Args:
        metrics: (y, scores of one repeat) → {name: value}; computed once per resample.
        scores: (n_repeats, n_samples, …) out-of-fold scores, one row per CV repeat.
        groups: subject of each sample; subjects, not rows, are resampled.
    """
    if n_boot == 0:
        return {}
    scores = np.asarray(scores)
    if scores.ndim == 1:
        scores = scores[None, :]
    subjects, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == k) for k in range(len(subjects))]
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(n_boot):
        pick = rng.integers(0, len(subjects), len(subjects))
        idx = np.concatenate([members[k] for k in pick])
        per_rep = [metrics(y[idx], s[idx]) for s in scores]
        for name in per_rep[0]:
            draws.setdefault(name, []).append(finite_mean([m[name] for m in per_rep]))
    alpha = (1 - level) / 2
    out = {}
    for name, vals in draws.items():
        v = np.asarray(vals, float)
        v = v[~np.isnan(v)]  # a resample on which the metric is undefined (e.g. AUC of one class)
        out[name] = tuple(float(q) for q in np.quantile(v, [alpha, 1 - alpha])) if v.size else (math.nan, math.nan)
    return out


def finite_mean(values: Sequence[float]) -> float:
    """The mean of the finite values; NaN, without numpy's empty-slice warning, when there is
    none (a metric undefined on every fold, repeat or resample)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


def bootstrap_ci(metric: Callable[[np.ndarray, np.ndarray], float], y: np.ndarray,
                 scores: np.ndarray, groups: np.ndarray, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Subject-level bootstrap interval of one metric averaged over repeats (see
    `bootstrap_intervals`)."""
    if n_boot == 0:
        return float("nan"), float("nan")
    out = bootstrap_intervals(lambda yy, ss: {"m": metric(yy, ss)}, y, scores, groups, n_boot, seed, level)
    return out["m"]


# --- multi-class, ordinal, calibration and regression metrics ----------------------------

def confusion(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    m = np.zeros((k, k), dtype=np.int64)
    np.add.at(m, (np.asarray(y, int), np.asarray(pred, int)), 1)
    return m


def quadratic_kappa(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    """Cohen's kappa with quadratic weights (ordinal agreement)."""
    o = confusion(y, pred, k).astype(float)
    n = o.sum()
    if n == 0:
        return float("nan")
    w = (np.subtract.outer(np.arange(k), np.arange(k)) ** 2) / max((k - 1) ** 2, 1)
    e = np.outer(o.sum(1), o.sum(0)) / n
    denom = (w * e).sum()
    return float(1 - (w * o).sum() / denom) if denom > 0 else float("nan")


def f1_scores(y: np.ndarray, pred: np.ndarray, k: int) -> tuple[float, float]:
    """(weighted F1, macro F1) over the classes present in `y`."""
    m = confusion(y, pred, k)
    tp = np.diag(m).astype(float)
    support = m.sum(1)
    denom = m.sum(0) + support
    f1 = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
    present = support > 0
    weighted = float((f1 * support).sum() / support.sum()) if support.sum() else float("nan")
    return weighted, float(f1[present].mean()) if present.any() else float("nan")


def ece_top_label(y: np.ndarray, proba: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error of the top-label confidence (equal-width bins)."""
    conf = proba.max(1)
    correct = (proba.argmax(1) == y).astype(float)
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            total += sel.sum() * abs(correct[sel].mean() - conf[sel].mean())
    return float(total / len(y))


def decide(proba: np.ndarray, offsets: np.ndarray | None = None) -> np.ndarray:
    """Class indices named by a decision rule's per-class log-probability `offsets` ((K,) or one
    row per sample; None: the most probable class), `fusion.evaluation.decision`; -1 for a row
    without probabilities (NaN)."""
    P = np.asarray(proba, dtype=float)
    missing = np.isnan(P).any(1)
    scores = np.log(np.clip(np.nan_to_num(P, nan=1.0), 1e-12, None))
    if offsets is not None:
        scores = scores + np.asarray(offsets, dtype=float)  # (K,) or (n, K): broadcast
    out = scores.argmax(1)
    out[missing] = -1
    return out


def multiclass_metrics(y: np.ndarray, proba: np.ndarray, kind: str = "ordinal",
                       offsets: np.ndarray | None = None) -> dict[str, float]:
    """Accuracy, weighted/macro F1, one-vs-rest AUC (macro), top-label ECE and the multi-class
    Brier score; for ordered classes (`kind="ordinal"`) also balanced accuracy, quadratic
    kappa and adjacent-class accuracy (|error| ≤ 1 class); for nominal classes the unweighted
    average recall (UAR, the mean of the per-class recalls: balanced accuracy by its
    emotion-recognition name), and no metric that assumes an order.

    The metrics of labels use the most probable class, or, with `offsets` ((K,) or one row per
    sample), the class a decision rule names (`fusion.evaluation.decision`); AUC, ECE and Brier
    read the probabilities."""
    y = np.asarray(y, int)
    k = proba.shape[1]
    pred = proba.argmax(1) if offsets is None else decide(proba, offsets)
    wf1, mf1 = f1_scores(y, pred, k)
    aucs = [roc_auc(y == c, proba[:, c]) for c in range(k)]
    onehot = np.eye(k)[y]
    recalls = [(pred[y == c] == c).mean() for c in range(k) if (y == c).any()]
    out = {"accuracy": float((pred == y).mean())}
    if kind == "nominal":
        out["uar"] = float(np.mean(recalls))
    else:
        out["balanced_accuracy"] = float(np.mean(recalls))
    out.update({"f1_weighted": wf1, "f1_macro": mf1})
    if kind != "nominal":
        out["qwk"] = quadratic_kappa(y, pred, k)
    out["auc_ovr"] = float(np.nanmean(aucs)) if not np.all(np.isnan(aucs)) else float("nan")
    if kind != "nominal":
        out["adjacent_accuracy"] = float((np.abs(pred - y) <= 1).mean())
    out["ece"] = ece_top_label(y, proba)
    out["brier"] = float(((proba - onehot) ** 2).sum(1).mean())
    return out


def per_class_metrics(y: np.ndarray, pred: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Recall, precision, F1 and support of each class (NaN where undefined)."""
    m = confusion(y, pred, k).astype(float)
    tp, support, predicted = np.diag(m), m.sum(1), m.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, tp / support, np.nan)
        precision = np.where(predicted > 0, tp / predicted, np.nan)
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), np.nan)
    return {"recall": recall, "precision": precision, "f1": f1, "support": support}


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    err = np.asarray(pred, float) - np.asarray(y, float)
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean()))}


def reliability(y: np.ndarray, proba: np.ndarray, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Per-bin mean confidence, accuracy and count of the top label (for reliability diagrams)."""
    conf = proba.max(1)
    correct = (proba.argmax(1) == y).astype(float)
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore"):
        mean_conf = np.bincount(bins, conf, n_bins) / counts
        acc = np.bincount(bins, correct, n_bins) / counts
    return {"confidence": mean_conf, "accuracy": acc, "count": counts}


def net_benefit(y: np.ndarray, risk: np.ndarray, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """Decision-curve analysis: net benefit of treating when risk ≥ threshold, against
    treating everyone and no one (Vickers & Elkin 2006)."""
    y = np.asarray(y).astype(bool)
    n = len(y)
    prevalence = y.mean()
    odds = thresholds / (1 - thresholds)
    model = np.array([((risk >= t) & y).sum() / n - ((risk >= t) & ~y).sum() / n * o
                      for t, o in zip(thresholds, odds, strict=True)])
    return {"threshold": thresholds, "model": model,
            "treat_all": prevalence - (1 - prevalence) * odds, "treat_none": np.zeros_like(thresholds)}
