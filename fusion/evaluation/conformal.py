"""Conformal prediction sets and score intervals on top of calibrated probabilities.

Split conformal prediction (Vovk et al., 2005; Angelopoulos & Bates, 2023): conformity scores
of held-out samples give a threshold q̂ — the ⌈(n + 1)(1 − α)⌉-th smallest of n scores — and a
new sample's set holds every class whose score is at most q̂. If the new sample is exchangeable
with the held-out ones, its true class is in the set with probability at least 1 − α.

Scores (`SCORES`), each a function of a sample's class probabilities p and a class y:

- `lac` (least ambiguous set-valued classifier, Sadinle et al., 2019): 1 − p_y. The smallest
  sets on average; a set may be empty.
- `aps` (adaptive prediction sets, Romano et al., 2020): the probability mass of the classes
  more probable than y, plus u · p_y with u uniform on [0, 1] (randomised, seeded).
- `ordinal`: a contiguous set of adjacent classes for ordered targets (severities). The
  intervals S₁ ⊂ S₂ ⊂ … grow from the most probable class, each step adding the more probable
  of the two neighbours; the score is the mass of the first interval holding y minus u · p_y.
  Because the masses grow along the sequence, {y : score ≤ q̂} is always one of the intervals,
  so the set is contiguous and the guarantee is that of any conformal score (the ordinal APS
  of Lu et al., 2022).

Randomised scores give exact coverage on average and may give an empty set; `conservative`
sets (u = 1: a class is in when the mass before it is within q̂) are never empty and contain
the randomised set for every u, so they keep the guarantee — reports show those.

Group-conditional (Mondrian) thresholds: one q̂ per group value with enough held-out samples
(at least `min_group_size(α)`), the marginal one for the others (said by `thresholds`).

Score intervals: the absolute residuals |y − ŷ| of held-out predictions give q̂, the interval
is ŷ ± q̂ clipped to the scale (split conformal regression; Lei et al., 2018).

MAPIE 1.6 (`mapie.classification.SplitConformalClassifier`) computes the same LAC and APS
thresholds and sets (tests compare them); this module keeps its own few lines because a saved
model stores its thresholds as JSON (MAPIE's objects would need pickling), and MAPIE has neither
the contiguous ordinal score nor Mondrian thresholds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Score = Literal["lac", "aps", "ordinal"]
SCORES: tuple[str, ...] = ("lac", "aps", "ordinal")


def min_group_size(alpha: float) -> int:
    """The fewest held-out samples that give a finite threshold at level 1 − α: the smallest
    n with ⌈(n + 1)(1 − α)⌉ ≤ n."""
    n = 1
    while math.ceil((n + 1) * (1 - alpha) - 1e-12) > n:
        n += 1
    return n


def threshold(scores: np.ndarray, alpha: float) -> float:
    """q̂: the ⌈(n + 1)(1 − α)⌉-th smallest held-out score (inf when there are too few scores
    for the level: every class is then in the set)."""
    s = np.sort(np.asarray(scores, float)[np.isfinite(np.asarray(scores, float))])
    k = math.ceil((len(s) + 1) * (1 - alpha) - 1e-12)
    return float(s[k - 1]) if 1 <= k <= len(s) else math.inf


def _order(p: np.ndarray, ordinal: bool) -> np.ndarray:
    """Per sample, the classes in the order a set takes them in: by decreasing probability
    (ties: the lower class first), or for `ordinal` the growing interval around the mode."""
    n, k = p.shape
    if not ordinal:
        return np.argsort(-p, axis=1, kind="stable")
    out = np.empty((n, k), int)
    rows = np.arange(n)
    lo = hi = np.argmax(p, axis=1)
    out[:, 0] = lo
    padded = np.pad(p, ((0, 0), (1, 1)), constant_values=-np.inf)  # padded[:, c + 1] = p[:, c]
    for step in range(1, k):
        left, right = padded[rows, lo], padded[rows, hi + 2]
        go_left = left >= right
        lo = np.where(go_left, lo - 1, lo)
        hi = np.where(go_left, hi, hi + 1)
        out[:, step] = np.where(go_left, lo, hi)
    return out


def _cumulative(p: np.ndarray, score: str) -> tuple[np.ndarray, np.ndarray]:
    """(mass up to and including each class, the class's own probability), per sample and
    class, along the order of `score`."""
    order = _order(p, score == "ordinal")
    sorted_p = np.take_along_axis(p, order, axis=1)
    cum_sorted = np.cumsum(sorted_p, axis=1)
    cum = np.empty_like(p)
    np.put_along_axis(cum, order, cum_sorted, axis=1)
    return cum, p


def conformity(p: np.ndarray, y: np.ndarray, score: str, u: np.ndarray | None = None) -> np.ndarray:
    """The held-out samples' conformity scores (larger: less conforming).

    Args:
        p: (n, k) class probabilities (rows sum to 1).
        y: (n,) true classes.
        u: (n,) uniform draws for the randomised scores (`aps`, `ordinal`); None: u = 1.
    """
    p = np.asarray(p, float)
    y = np.asarray(y, int)
    rows = np.arange(len(y))
    if score == "lac":
        return 1.0 - p[rows, y]
    if score not in SCORES:
        raise ValueError(f"unknown conformity score {score!r}; expected one of {', '.join(SCORES)}")
    cum, own = _cumulative(p, score)
    u = np.ones(len(y)) if u is None else np.asarray(u, float)
    return cum[rows, y] - u * own[rows, y]


def prediction_sets(p: np.ndarray, q: float | np.ndarray, score: str, u: np.ndarray | None = None) -> np.ndarray:
    """(n, k) booleans: class c is in sample i's set when its score is at most q̂ (one q̂, or
    one per sample for group thresholds). `u` as in `conformity`; None gives the conservative
    sets (u = 1)."""
    p = np.asarray(p, float)
    q = np.broadcast_to(np.asarray(q, float), (len(p),))[:, None]
    if score == "lac":
        return (1.0 - p) <= q + 1e-12
    if score not in SCORES:
        raise ValueError(f"unknown conformity score {score!r}; expected one of {', '.join(SCORES)}")
    cum, own = _cumulative(p, score)
    u = np.ones(len(p)) if u is None else np.asarray(u, float)
    return cum - u[:, None] * own <= q + 1e-12


@dataclass(frozen=True)
class Thresholds:
    """q̂ for one level and score: the marginal one and one per group with enough samples.

    Attributes:
        groups: group value → q̂ (only groups with at least `min_group_size(alpha)` samples).
        fallback: group values that had too few held-out samples, and how many (they use `marginal`).
    """

    alpha: float
    score: str
    marginal: float
    n: int
    groups: Mapping[str, float]
    group_sizes: Mapping[str, int]
    fallback: Mapping[str, int]

    def for_groups(self, values: Iterable[Any] | None, n: int) -> np.ndarray:
        """q̂ per sample: its group's where the group has one, the marginal one otherwise."""
        if values is None or not self.groups:
            return np.full(n, self.marginal)
        return np.array([self.groups.get(str(v), self.marginal) for v in values], float)

    def to_dict(self) -> dict[str, Any]:
        def num(x: float) -> float | str:
            return x if math.isfinite(x) else "inf"
        return {"alpha": self.alpha, "score": self.score, "marginal": num(self.marginal), "n": self.n,
                "groups": {g: num(v) for g, v in self.groups.items()}, "group_sizes": dict(self.group_sizes),
                "fallback": dict(self.fallback)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Thresholds:
        def num(x: Any) -> float:
            return math.inf if x == "inf" else float(x)
        return cls(alpha=float(d["alpha"]), score=str(d["score"]), marginal=num(d["marginal"]), n=int(d["n"]),
                   groups={str(g): num(v) for g, v in d["groups"].items()},
                   group_sizes={str(g): int(v) for g, v in d.get("group_sizes", {}).items()},
                   fallback={str(g): int(v) for g, v in d.get("fallback", {}).items()})


def thresholds(scores: np.ndarray, alpha: float, score: str, groups: np.ndarray | None = None) -> Thresholds:
    """The marginal q̂ and, with `groups`, one q̂ per group value that has at least
    `min_group_size(α)` finite held-out scores (the others are listed in `fallback`)."""
    scores = np.asarray(scores, float)
    ok = np.isfinite(scores)
    per, sizes, fallback = {}, {}, {}
    if groups is not None:
        groups = np.asarray([str(g) for g in groups])
        need = min_group_size(alpha)
        for g in sorted(set(groups[ok])):
            sel = ok & (groups == g)
            sizes[g] = int(sel.sum())
            if sizes[g] >= need:
                per[g] = threshold(scores[sel], alpha)
            else:
                fallback[g] = sizes[g]
    return Thresholds(alpha=alpha, score=score, marginal=threshold(scores[ok], alpha), n=int(ok.sum()),
                      groups=per, group_sizes=sizes, fallback=fallback)


def interval_threshold(y: np.ndarray, predicted: np.ndarray, alpha: float) -> float:
    """q̂ of the absolute residuals of held-out score predictions."""
    r = np.abs(np.asarray(y, float) - np.asarray(predicted, float))
    return threshold(r[np.isfinite(r)], alpha)


def score_intervals(predicted: np.ndarray, q: float, low: float | None = None,
                    high: float | None = None) -> np.ndarray:
    """(n, 2) intervals ŷ ± q̂, clipped to the scale [low, high] where given."""
    pred = np.asarray(predicted, float)
    lo, hi = pred - q, pred + q
    if low is not None:
        lo, hi = np.maximum(lo, low), np.maximum(hi, low)
    if high is not None:
        lo, hi = np.minimum(lo, high), np.minimum(hi, high)
    return np.stack([lo, hi], axis=1)


def set_summary(sets: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Coverage (true class in the set), mean set size, shares of singleton and empty sets, and
    the share of sets that are a run of adjacent classes (`contiguous`; empty and single-class
    sets count as such) — what matters for ordered targets."""
    sets = np.asarray(sets, bool)
    y = np.asarray(y, int)
    size = sets.sum(1)
    idx = np.arange(sets.shape[1])
    first = np.where(sets, idx, sets.shape[1]).min(1)
    last = np.where(sets, idx, -1).max(1)
    contiguous = (size == 0) | (last - first + 1 == size)
    return {"coverage": float(sets[np.arange(len(y)), y].mean()), "size": float(size.mean()),
            "singleton": float((size == 1).mean()), "empty": float((size == 0).mean()),
            "contiguous": float(contiguous.mean())}


def selective(sets: np.ndarray, p: np.ndarray, y: np.ndarray, max_size: int) -> dict[str, float]:
    """Abstain when a set holds more than `max_size` classes: the share of samples decided and
    the accuracy of the most probable class on them."""
    decided = np.asarray(sets, bool).sum(1) <= max_size
    acc = float((np.asarray(p).argmax(1)[decided] == np.asarray(y)[decided]).mean()) if decided.any() else math.nan
    return {"decided": float(decided.mean()), "accuracy": acc}


def describe_set(members: np.ndarray, names: list[str], ordinal: bool) -> str:
    """A set in words: "mild to moderate" for adjacent ordered classes, a list otherwise."""
    idx = np.flatnonzero(members)
    if len(idx) == 0:
        return "no class"
    if len(idx) == len(names):
        return "any class"
    if len(idx) == 1:
        return names[idx[0]]
    if ordinal and idx[-1] - idx[0] == len(idx) - 1:
        return f"{names[idx[0]]} to {names[idx[-1]]}"
    return ", ".join(names[i] for i in idx[:-1]) + f" or {names[idx[-1]]}"
