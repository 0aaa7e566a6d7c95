"""Evaluation used by every model: metrics, seeds and intervals (splits: `fusion.splits`).

Figures are reported as mean ± sd over repeated cross-validation (different seeds)
with a subject-level bootstrap 95 % interval, never as the best of several runs.
"""

from __future__ import annotations

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


def binary_metrics(y: np.ndarray, p1: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """AUC, balanced accuracy, F1 (positive class), accuracy and Brier score."""
    y = np.asarray(y).astype(int)
    p1 = np.asarray(p1, dtype=float)
    pred = (p1 >= threshold).astype(int)
    tp = int(((pred == 1) & (y == 1)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    sens = tp / (tp + fn) if tp + fn else float("nan")
    spec = tn / (tn + fp) if tn + fp else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return {
        "auc": roc_auc(y, p1),
        "balanced_accuracy": float(np.nanmean([sens, spec])),
        "f1": f1,
        "accuracy": float((pred == y).mean()),
        "brier": float(np.mean((p1 - y) ** 2)),
    }


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return float(np.nanmean(v)), float(np.nanstd(v, ddof=1)) if len(v) > 1 else 0.0


def bootstrap_ci(metric: Callable[[np.ndarray, np.ndarray], float], y: np.ndarray,
                 scores: np.ndarray, groups: np.ndarray, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Subject-level bootstrap interval of a metric averaged over repeats.

    Args:
        scores: (n_repeats, n_samples) out-of-fold scores, one row per CV repeat.
        groups: subject of each sample; subjects, not rows, are resampled.
    """
    if n_boot == 0:
        return float("nan"), float("nan")
    scores = np.atleast_2d(scores)
    subjects, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == k) for k in range(len(subjects))]
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    for b in range(n_boot):
        pick = rng.integers(0, len(subjects), len(subjects))
        idx = np.concatenate([members[k] for k in pick])
        stats[b] = np.nanmean([metric(y[idx], s[idx]) for s in scores])
    alpha = (1 - level) / 2
    lo, hi = np.nanquantile(stats, [alpha, 1 - alpha])
    return float(lo), float(hi)
