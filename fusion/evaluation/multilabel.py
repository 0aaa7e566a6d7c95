"""Multi-label metrics as the EMOTIC evaluation computes them: per-category average precision
(the step-wise area under the precision-recall curve, equal to scikit-learn's
`average_precision_score`), their mean (mAP), per-category decision thresholds chosen on
validation data where precision equals recall, and the mean absolute error of valence, arousal
and dominance."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """AP = Σ_n (R_n − R_{n−1}) P_n over the distinct score thresholds, highest first (tied
    scores form one threshold). NaN when there is no positive."""
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, float)
    if not y.any():
        return float("nan")
    order = np.argsort(-score, kind="mergesort")
    y, score = y[order], score[order]
    last = np.r_[np.flatnonzero(np.diff(score) != 0), len(score) - 1]  # end of each tied run
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall = tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def per_category_ap(Y: np.ndarray, S: np.ndarray) -> np.ndarray:
    """(k,) AP of each column of (n, k) labels `Y` and scores `S` (NaN without positives)."""
    return np.array([average_precision(Y[:, j], S[:, j]) for j in range(Y.shape[1])])


def chance_ap(Y: np.ndarray, n_draws: int = 200, seed: int = 0) -> np.ndarray:
    """(k,) the expected AP of each category under random scores (a permutation baseline; with
    few positives it lies above the base rate)."""
    rng = np.random.default_rng(seed)
    draws = [per_category_ap(Y, rng.random(Y.shape)) for _ in range(n_draws)]
    return np.nanmean(draws, axis=0)


def equal_pr_thresholds(Y: np.ndarray, S: np.ndarray) -> np.ndarray:
    """(k,) per category the score threshold where precision and recall are closest (equal
    where the curve allows), chosen on validation data; NaN without positives."""
    out = np.full(Y.shape[1], np.nan)
    for j in range(Y.shape[1]):
        y = Y[:, j].astype(bool)
        if not y.any():
            continue
        s = S[:, j]
        order = np.argsort(-s, kind="mergesort")
        ys, ss = y[order], s[order]
        last = np.r_[np.flatnonzero(np.diff(ss) != 0), len(ss) - 1]
        tp = np.cumsum(ys)[last]
        precision, recall = tp / (last + 1), tp / y.sum()
        best = int(np.argmin(np.abs(precision - recall)))
        out[j] = ss[last[best]]
    return out


def thresholded_f1(Y: np.ndarray, S: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(k,) F1 of each category with predictions `S >= threshold`."""
    pred = thresholds[None, :] <= S
    tp = (pred & (Y == 1)).sum(0)
    fp = (pred & (Y == 0)).sum(0)
    fn = (~pred & (Y == 1)).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)


def vad_mae(V: np.ndarray, P: np.ndarray, names: Sequence[str] = ("valence", "arousal", "dominance")) -> dict:
    """Mean absolute error of each continuous dimension over the rows that have it."""
    out = {}
    for j, name in enumerate(names):
        ok = ~np.isnan(V[:, j]) & ~np.isnan(P[:, j])
        out[name] = float(np.abs(V[ok, j] - P[ok, j]).mean()) if ok.any() else float("nan")
    return out


def kl_divergence(P: np.ndarray, Q: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """(n,) KL(P ‖ Q) in nats of each row of (n, k) distributions (Q clipped at `eps` so a
    zero where P has mass stays finite); NaN for a row with a NaN."""
    P, Q = np.atleast_2d(np.asarray(P, float)), np.atleast_2d(np.asarray(Q, float))
    if P.shape != Q.shape:
        raise ValueError(f"distributions of shapes {P.shape} and {Q.shape} cannot be compared")
    Qc = np.clip(Q, eps, None)
    terms = np.where(P > 0, P * (np.log(np.where(P > 0, P, 1.0)) - np.log(Qc)), 0.0)
    out = terms.sum(1)
    out[np.isnan(P).any(1) | np.isnan(Q).any(1)] = np.nan
    return out


def js_divergence(P: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """(n,) Jensen–Shannon divergence in bits (0 to 1) of each row of (n, k) distributions:
    ½ KL(P ‖ M) + ½ KL(Q ‖ M), M = ½ (P + Q); its square root is SciPy's `jensenshannon`
    distance with base 2. NaN for a row with a NaN."""
    P, Q = np.atleast_2d(np.asarray(P, float)), np.atleast_2d(np.asarray(Q, float))
    M = (P + Q) / 2
    return (kl_divergence(P, M, eps=0.0) + kl_divergence(Q, M, eps=0.0)) / (2 * np.log(2))
