"""VAD-mixture emotion labels: a (valence, arousal, dominance) rating → a probability
distribution over basic and compound emotions.

Each emotion is a Gaussian in VAD space taken from published rating norms: Warriner, Kuperman
& Brysbaert (2013) give, for each of 13,915 English lemmas, the mean and standard deviation of
its valence, arousal and dominance ratings (1–9 scales, about 20 raters a word). An emotion
named by a word ("happy") is the Gaussian of that word's ratings, diagonal covariance. A
compound emotion (Du, Tao & Martinez 2014: "happily surprised", "sadly angry", …) is named by
its two components; its Gaussian lies between theirs (`compound="midpoint"`, the default: the
mean of the two means and of the two variances, per dimension) or is the normalised product of
theirs (`compound="product"`: the states both words describe; the precision-weighted mean,
variance 1 / (1/s₁² + 1/s₂²), narrower than either, so it outweighs its own components near
the sharper one's mean).

A rating x is mapped to p(e | x) ∝ π_e N(x; μ_e, Σ_e)^(1/T): the posterior over the emotions with
priors π (equal by default) and temperature T (1: the plain posterior; larger: flatter). The
rating is first put on the norms' 1–9 scale from its own scale (EMOTIC: 1–10), linearly.

The shipped table (`data/warriner2013_emotion_words.csv`) holds the norms' rows for the emotion
words used here, verbatim; any file in the norms' layout (the full CSV included) can be given
instead, and any word of it used. Distributions compare with the Jensen–Shannon divergence and
the Kullback–Leibler divergence (`fusion.evaluation.multilabel`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

NORMS_FILE = Path(__file__).parent / "data" / "warriner2013_emotion_words.csv"
NORMS_SCALE = (1.0, 9.0)
DIMENSIONS = ("valence", "arousal", "dominance")
_COLUMNS = {"valence": ("V.Mean.Sum", "V.SD.Sum"), "arousal": ("A.Mean.Sum", "A.SD.Sum"),
            "dominance": ("D.Mean.Sum", "D.SD.Sum")}

# The six basic emotions (Ekman) as the adjectives that name the state, and the seven compound
# emotions of C-EXPR-DB (Du et al.'s compounds with surprise, fear and anger).
BASIC: dict[str, list[str]] = {"happy": ["happy"], "sad": ["sad"], "fearful": ["fearful"], "angry": ["angry"],
                               "surprised": ["surprised"], "disgusted": ["disgusted"]}
COMPOUND: dict[str, list[str]] = {
    "fearfully surprised": ["fearful", "surprised"], "happily surprised": ["happy", "surprised"],
    "sadly surprised": ["sad", "surprised"], "disgustedly surprised": ["disgusted", "surprised"],
    "angrily surprised": ["angry", "surprised"], "sadly fearful": ["sad", "fearful"],
    "sadly angry": ["sad", "angry"]}
EMOTION_SETS: dict[str, dict[str, list[str]]] = {"basic": BASIC, "compound": COMPOUND,
                                                 "basic+compound": {**BASIC, **COMPOUND}}


class NormsError(ValueError):
    """A norms table that cannot be used (missing file, column, word or a bad value)."""


def read_norms(path: str | Path | None = None) -> pd.DataFrame:
    """The norms table indexed by word (lower case), with the mean and SD columns of each
    dimension.

    Raises:
        NormsError: the file is missing or unreadable, lacks `Word` or a mean / SD column, or a
            mean lies outside 1–9, or an SD is not positive (naming the file and the word).
    """
    path = Path(path) if path is not None else NORMS_FILE
    if not path.exists():
        raise NormsError(f"{path}: no such norms file (expected the Warriner et al. 2013 CSV layout)")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise NormsError(f"{path}: cannot read as CSV ({e})") from None
    need = ["Word"] + [c for pair in _COLUMNS.values() for c in pair]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise NormsError(f"{path}: missing column(s) {missing}; expected the Warriner et al. 2013 layout "
                         f"({', '.join(need)})")
    table = table.dropna(subset=["Word"])
    table["Word"] = table["Word"].astype(str).str.strip().str.lower()
    table = table.drop_duplicates("Word").set_index("Word")[need[1:]]
    values = table.apply(pd.to_numeric, errors="coerce")
    for dim, (m, s) in _COLUMNS.items():
        bad = values.index[~values[m].between(*NORMS_SCALE) | ~(values[s] > 0)]
        if len(bad):
            raise NormsError(f"{path}: word {bad[0]!r} has a {dim} mean outside 1–9 or a non-positive SD "
                             f"({table.loc[bad[0], m]!r}, {table.loc[bad[0], s]!r})")
    return values


def _emotions(emotions: str | Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    if isinstance(emotions, str):
        if emotions not in EMOTION_SETS:
            raise ValueError(f"unknown emotion set {emotions!r}; known: {', '.join(EMOTION_SETS)}, or a mapping "
                             f"name → [word] / [word, word]")
        return dict(EMOTION_SETS[emotions])
    out = {str(k): [str(w).strip().lower() for w in v] for k, v in emotions.items()}
    bad = [k for k, v in out.items() if len(v) not in (1, 2)]
    if bad or len(out) < 2:
        raise ValueError(f"each emotion is named by one word or, for a compound, two; at least two emotions "
                         f"(offending: {bad or list(out)})")
    return out


@dataclass
class VadMixture:
    """The emotions' Gaussians and the mapping of ratings to distributions over them.

    Attributes:
        names: the emotions, in the order of the distribution's columns.
        words: the norm words each emotion is made of.
        mean, var: (k, d) per-emotion means and variances on the norms' 1–9 scale.
        dims: the dimensions used, among valence, arousal and dominance, in the ratings' column order.
        scale: (low, high) of the ratings given to `__call__`.
        temperature: T of p ∝ (π N)^(1/T).
        prior: (k,) the emotions' priors.
        source: the norms file.
    """

    names: list[str]
    words: list[list[str]]
    mean: np.ndarray
    var: np.ndarray
    dims: tuple[str, ...]
    scale: tuple[float, float]
    temperature: float
    prior: np.ndarray
    source: str

    @classmethod
    def build(cls, emotions: str | Mapping[str, Sequence[str]] = "basic+compound", *,
              norms: str | Path | None = None, dims: Sequence[str] = DIMENSIONS,
              scale: tuple[float, float] = NORMS_SCALE, temperature: float = 1.0,
              priors: Mapping[str, float] | None = None,
              compound: Literal["midpoint", "product"] = "midpoint") -> VadMixture:
        """Gaussians of the named emotions from the norms file (default: the shipped excerpt).

        Raises:
            NormsError: the file is unusable or lacks a word (naming both).
            ValueError: unknown emotion set or dimension, a bad scale, temperature or prior.
        """
        spec = _emotions(emotions)
        dims = tuple(dims)
        if not dims or any(d not in DIMENSIONS for d in dims) or len(set(dims)) != len(dims):
            raise ValueError(f"dims must be distinct names among {DIMENSIONS}, got {list(dims)}")
        lo, hi = (float(v) for v in scale)
        if not hi > lo:
            raise ValueError(f"scale must be (low, high) with high > low, got {scale}")
        if compound not in ("midpoint", "product"):
            raise ValueError(f"compound must be 'midpoint' or 'product', got {compound!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        table = read_norms(norms)
        source = str(Path(norms) if norms is not None else NORMS_FILE)
        missing = sorted({w for ws in spec.values() for w in ws} - set(table.index))
        if missing:
            raise NormsError(f"{source}: no norms for word(s) {missing} (the shipped excerpt holds "
                             f"{', '.join(table.index)}; give the full norms file as `norms`)")
        means, variances = [], []
        for ws in spec.values():
            mu = np.array([[table.loc[w, _COLUMNS[d][0]] for d in dims] for w in ws], float)
            var = np.array([[table.loc[w, _COLUMNS[d][1]] ** 2 for d in dims] for w in ws], float)
            if compound == "product":  # the normalised product of Gaussians: precisions add
                precision = (1.0 / var).sum(0)
                variances.append(1.0 / precision)
                means.append((mu / var).sum(0) / precision)
            else:  # midpoint: between the components, as wide as they are on average
                variances.append(var.mean(0))
                means.append(mu.mean(0))
        names = list(spec)
        if priors is None:
            prior = np.full(len(names), 1.0 / len(names))
        else:
            unknown = sorted(set(priors) - set(names))
            if unknown or any(not v > 0 for v in priors.values()):
                raise ValueError(f"priors must be positive and name emotions of the set (unknown: {unknown})")
            prior = np.array([float(priors.get(n, 0.0)) for n in names])
            if (prior <= 0).any():
                raise ValueError(f"priors must name every emotion; missing {[n for n in names if n not in priors]}")
            prior = prior / prior.sum()
        return cls(names, [list(w) for w in spec.values()], np.array(means), np.array(variances), dims,
                   (lo, hi), float(temperature), prior, source)

    def to_norms_scale(self, X: np.ndarray) -> np.ndarray:
        """Ratings on `scale` → the norms' 1–9 scale (linearly)."""
        lo, hi = self.scale
        return NORMS_SCALE[0] + (np.asarray(X, float) - lo) * (NORMS_SCALE[1] - NORMS_SCALE[0]) / (hi - lo)

    def log_likelihood(self, X: np.ndarray) -> np.ndarray:
        """(n, k) log N(x; μ_e, Σ_e) of (n, d) ratings on `scale`."""
        Z = self.to_norms_scale(X)[:, None, :]
        return -0.5 * (((Z - self.mean[None]) ** 2 / self.var[None]).sum(-1)
                       + np.log(2 * np.pi * self.var).sum(-1)[None])

    def outside(self, X: np.ndarray) -> np.ndarray:
        """(n,) whether each row of ratings is complete and has a rating outside `scale`."""
        X = np.atleast_2d(np.asarray(X, float))
        lo, hi = self.scale
        return ~np.isnan(X).any(1) & ((lo > X) | (hi < X)).any(1)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """(n, k) distributions of (n, d) ratings (columns in `dims` order, on `scale`); a row
        with a missing rating is all NaN.

        Raises:
            ValueError: X has the wrong number of columns, or a rating outside `scale`.
        """
        X = np.atleast_2d(np.asarray(X, float))
        if X.shape[1] != len(self.dims):
            raise ValueError(f"ratings have {X.shape[1]} column(s), expected {len(self.dims)} ({', '.join(self.dims)})")
        known = ~np.isnan(X).any(1)
        lo, hi = self.scale
        outside = self.outside(X)
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            raise ValueError(f"row {i}: rating {X[i].tolist()} outside the scale {lo:g}–{hi:g} of "
                             f"{', '.join(self.dims)}")
        out = np.full((len(X), len(self.names)), np.nan)
        if known.any():
            logp = (self.log_likelihood(X[known]) + np.log(self.prior)[None]) / self.temperature
            logp -= logp.max(1, keepdims=True)
            p = np.exp(logp)
            out[known] = p / p.sum(1, keepdims=True)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"names": self.names, "words": self.words, "mean": self.mean.tolist(), "var": self.var.tolist(),
                "dims": list(self.dims), "scale": list(self.scale), "temperature": self.temperature,
                "prior": self.prior.tolist(), "source": Path(self.source).name}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VadMixture:
        return cls(list(d["names"]), [list(w) for w in d["words"]], np.array(d["mean"], float),
                   np.array(d["var"], float), tuple(d["dims"]), tuple(d["scale"]), float(d["temperature"]),
                   np.array(d["prior"], float), str(d["source"]))


def mixture_labels(labels: pd.DataFrame, mixture: VadMixture,
                   columns: Sequence[str]) -> tuple[pd.DataFrame, dict[str, str]]:
    """Per-sample distributions of a dataset's labels table (index: sample ids): one column per
    emotion, `vad_mixture_top` (the most probable), and the ratings used. A sample without all
    ratings has empty cells; one whose rating lies outside the scale is recorded in the errors
    {sample id: why} with empty cells too, the others kept.

    Raises:
        ValueError: a column is not in the labels, or the columns do not match `mixture.dims`.
    """
    columns = list(columns)
    missing = [c for c in columns if c not in labels.columns]
    if missing:
        raise ValueError(f"label column(s) {missing} not in the dataset's labels "
                         f"({', '.join(map(str, labels.columns))})")
    if len(columns) != len(mixture.dims):
        raise ValueError(f"{len(columns)} column(s) {columns} for the dimensions {list(mixture.dims)}")
    X = labels[columns].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    lo, hi = mixture.scale
    bad = mixture.outside(X)
    errors = {str(labels.index[i]): f"{dict(zip(columns, X[i].tolist(), strict=True))} outside the scale {lo:g}–{hi:g}"
              for i in np.flatnonzero(bad)}
    P = np.full((len(X), len(mixture.names)), np.nan)
    P[~bad] = mixture(X[~bad])
    out = pd.DataFrame(P, index=labels.index, columns=mixture.names)
    top = [mixture.names[int(np.argmax(p))] if not np.isnan(p).any() else None for p in P]
    out.insert(0, "vad_mixture_top", top)
    for j, c in enumerate(columns):
        out.insert(j, c, X[:, j])
    return out, errors
