"""Decision rules: which class a classifier names, given its calibrated probabilities.

The most probable class maximises accuracy; it does not maximise weighted F1, macro F1 or the
unweighted average recall, which reward naming the rarer classes more often. A decision rule
adds one offset per class to the log probabilities and names the largest:

    label = argmax_k (log p_k + b_k)

The offsets `b` are chosen to maximise the target's metric on predictions of training samples
by models that were not fitted on them (`FusionModel.inner_predictions`: cross-fitted outputs,
a network's inner-validation predictions) — never on the samples the rule is then scored on.
The probabilities themselves are unchanged (AUC, calibration error, Brier score and conformal
sets read them), only the named class moves.

The search is coordinate ascent over a grid of offsets (`GRID`), class by class, repeated
until no offset changes; a tie keeps the offset nearest to 0, so that a metric flat in an
offset leaves the most probable class in charge. scikit-learn's `TunedThresholdClassifierCV`
tunes one threshold of a binary classifier; nothing there tunes the K offsets of a multi-class
decision, hence this module.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from fusion.evaluation.metrics import decide, f1_scores

__all__ = ["RULES", "decide", "fit_offsets", "rule_score"]

Rule = Literal["argmax", "f1_weighted", "f1_macro", "uar"]
RULES: tuple[str, ...] = ("argmax", "f1_weighted", "f1_macro", "uar")

#: offsets tried for each class (log-probability units; ±3 multiplies a class's odds by ≈ 20)
GRID = np.round(np.arange(-3.0, 3.0001, 0.1), 2)
#: fewest predicted training samples a rule is fitted on
MIN_SAMPLES = 30
MAX_PASSES = 10


def rule_score(rule: str, y: np.ndarray, pred: np.ndarray, k: int) -> float:
    """The metric a rule maximises, of labels `pred` against `y`."""
    if rule == "f1_weighted":
        return f1_scores(y, pred, k)[0]
    if rule == "f1_macro":
        return f1_scores(y, pred, k)[1]
    if rule == "uar":
        recalls = [(pred[y == c] == c).mean() for c in range(k) if (y == c).any()]
        return float(np.mean(recalls)) if recalls else float("nan")
    raise ValueError(f"unknown decision rule {rule!r} (choose from {', '.join(RULES)})")


#: parts over which the rule is cross-fitted for its own estimate (`fit_offsets`' "crossfit")
PARTS = 5


def fit_offsets(y: np.ndarray, proba: np.ndarray, rule: str, seed: int = 0) -> tuple[np.ndarray, dict[str, float]]:
    """The offsets (K,) that maximise `rule`'s metric of `decide(proba, offsets)` against `y`,
    over the rows of `proba` that have probabilities, and what was measured there: the metric
    with the most probable class (`before`), with the rule fitted on all the rows (`after`,
    optimistic: scored where it was chosen), with each of `PARTS` random parts named by the rule
    fitted on the others (`crossfit`: what the rule adds on samples it was not chosen on), and
    the number of rows.

    Raises:
        ValueError: an unknown rule, or fewer than `MIN_SAMPLES` predicted rows.
    """
    P = np.asarray(proba, dtype=float)
    k = P.shape[1]
    if rule == "argmax":
        return np.zeros(k), {}
    if rule not in RULES:
        raise ValueError(f"unknown decision rule {rule!r} (choose from {', '.join(RULES)})")
    ok = ~np.isnan(P).any(1)
    if ok.sum() < MIN_SAMPLES:
        raise ValueError(f"decision rule {rule}: only {int(ok.sum())} training samples have predictions by models "
                         f"not fitted on them; the rule needs at least {MIN_SAMPLES}")
    y = np.asarray(y, int)[ok]
    L = np.log(np.clip(P[ok], 1e-12, None))
    b, before, after = _ascend(y, L, rule, k)
    parts = np.random.default_rng(seed).permutation(len(y)) % PARTS
    named = np.empty(len(y), int)
    for part in range(PARTS):
        te = parts == part
        b_part = _ascend(y[~te], L[~te], rule, k)[0]
        named[te] = (L[te] + b_part).argmax(1)
    return b, {"before": float(before), "after": float(after), "crossfit": float(rule_score(rule, y, named, k)),
               "n": int(ok.sum())}


def _ascend(y: np.ndarray, L: np.ndarray, rule: str, k: int) -> tuple[np.ndarray, float, float]:
    """Coordinate ascent of the offsets on log probabilities `L`: (offsets, metric before, after)."""
    b = np.zeros(k)
    best = rule_score(rule, y, L.argmax(1), k)
    before = best
    order = np.argsort(np.abs(GRID), kind="stable")  # ties: the offset nearest to 0 wins
    for _ in range(MAX_PASSES):
        changed = False
        for c in range(k):
            trial = b.copy()
            values = []
            for v in GRID[order]:
                trial[c] = v
                values.append(rule_score(rule, y, (L + trial).argmax(1), k))
            j = int(np.argmax(values))  # first maximum in |offset| order
            if values[j] > best + 1e-12 and GRID[order][j] != b[c]:
                b[c], best, changed = GRID[order][j], values[j], True
        if not changed:
            break
    return b - b.mean(), float(before), float(best)  # only differences matter
