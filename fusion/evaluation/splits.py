"""Leakage-proof splits: subject-grouped stratified K-fold (repeated), nested inner folds,
leave-one-subject-out and official splits — all deterministic by seed, and all checked so
that no subject is ever on two sides of a split.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sklearn.model_selection import LeaveOneGroupOut, StratifiedGroupKFold

# NumPy, scikit-learn and PyTorch take seeds in 0..2**32 - 1; seeds derived from a configured one
# (per repeat, fold, trial) add small offsets, so a configured seed keeps below 2**31.
Seed = Annotated[int, Field(ge=0, le=2**31 - 1, description="a non-negative integer below 2**31")]


class SplitError(ValueError):
    """Data cannot be split as asked (too few subjects for the folds, …)."""


class LeakageError(SplitError):
    """A subject appears on both sides of a split."""


def check_disjoint(groups: np.ndarray, train_idx: np.ndarray, test_idx: np.ndarray,
                   where: str = "split") -> None:
    """Raise LeakageError if any subject is in both `train_idx` and `test_idx`."""
    shared = np.intersect1d(np.asarray(groups)[train_idx], np.asarray(groups)[test_idx])
    if len(shared):
        raise LeakageError(f"{where}: {len(shared)} subject(s) on both sides, e.g. {list(shared[:5])}")


@dataclass(frozen=True)
class Fold:
    """One outer fold: training and test indices, and inner (train, validation) folds drawn
    from the training part only."""

    repeat: int
    fold: int
    seed: int
    train: np.ndarray
    test: np.ndarray
    inner: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)


class SplitConfig(BaseModel):
    """How samples are split for evaluation.

    scheme: `grouped-kfold` (subject-grouped, label-stratified, repeated over seeds),
    `loso` (leave one subject out), `official` (the corpus's own splits: `train_splits` for
    training, `test_splits` for testing), `holdout` (the groups listed in `test_groups` are
    the test set, every other group trains), or `turn-level` (NOT subject-grouped; only for
    demonstrating leakage). `inner_splits` > 1 adds nested grouped validation folds inside
    every training fold (for early stopping, calibration, stacking, hyper-parameters).

    seeds: for the fixed schemes (`loso`, `official`, `holdout`), repeat the same split once per
    seed, the models refitted with each (mean ± sd over seeds for stochastic models such as
    networks); `grouped-kfold` draws new folds per repeat instead (`n_repeats`).
    group_by: what no split may separate: `auto` (the dataset's own grouping: the subject for
    most corpora, the dialogue for MELD), `subject`, `group` (the adapter's grouping) or any
    label column. "Subject" in the other settings means this group.
    val_splits: the corpus's own validation split(s), for a protocol that early-stops and
    chooses thresholds on it (multi-label targets, the `official-multilabel` protocol); empty: a grouped
    fifth of the training samples.
    """

    model_config = ConfigDict(extra="forbid")

    scheme: Literal["grouped-kfold", "loso", "official", "holdout", "turn-level"] = "grouped-kfold"
    n_splits: int = Field(5, ge=2)
    n_repeats: int = Field(3, ge=1)
    seed: Seed = 0
    inner_splits: int = Field(0, ge=0)
    train_splits: list[str] = Field(default_factory=lambda: ["train"])
    test_splits: list[str] = Field(default_factory=lambda: ["dev"])
    val_splits: list[str] = Field(default_factory=list)
    test_groups: list[str] = Field(default_factory=list)
    group_by: str = "auto"
    seeds: list[Seed] | None = Field(None, min_length=1)


@contextlib.contextmanager
def rare_class_warning_said_elsewhere() -> Iterator[None]:
    """scikit-learn's "The least populated class in y has only …" silenced: a class rarer than
    the folds is said once per target, in the project's words (`rare_classes`)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class in y has only")
        yield


def grouped_kfold(y: np.ndarray, groups: np.ndarray, n_splits: int,
                  seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Subject-grouped, label-stratified K-fold (deterministic for a seed).

    Raises:
        SplitError: if there are fewer subjects than folds.
    """
    n_groups = len(np.unique(groups))
    if n_groups < n_splits:
        raise SplitError(f"cannot make {n_splits} subject-grouped folds from {n_groups} subjects")
    # Stratify on the subject's label: StratifiedGroupKFold balances groups per class.
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    counts = np.unique(y, return_counts=True)[1]
    if counts.max() < n_splits:  # scikit-learn's own check, said in terms of the data
        raise SplitError(f"cannot make {n_splits} class-stratified folds: no class has {n_splits} samples "
                         f"(the largest has {counts.max()}); use fewer folds (cv.n_splits, cv.inner_splits)")
    with rare_class_warning_said_elsewhere():
        folds = list(cv.split(np.zeros(len(y)), y, groups))
    for i, (tr, te) in enumerate(folds):
        check_disjoint(groups, tr, te, f"fold {i} (seed {seed})")
    return folds


def rare_classes(y: np.ndarray, cfg: SplitConfig, names: list[str] | None = None) -> str | None:
    """A note when a class has fewer samples than the folds (some folds then test none of it,
    and a training fold may lack it); None otherwise."""
    folds = max(cfg.n_splits if cfg.scheme in ("grouped-kfold", "turn-level") else 0, cfg.inner_splits)
    counts = np.bincount(np.asarray(y, int))
    rare = [(names[c] if names else str(c), int(n)) for c, n in enumerate(counts) if 0 < n < folds]
    if not rare:
        return None
    return (f"class(es) {', '.join(f'{c} ({n} samples)' for c, n in rare)} have fewer samples than the {folds} "
            "folds: some folds test none of them, and a training fold may lack them")


def inner_folds(y: np.ndarray, groups: np.ndarray, train: np.ndarray, n_splits: int,
                seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Subject-grouped folds inside `train` (indices into the full arrays)."""
    n = min(n_splits, len(np.unique(groups[train])))
    out = []
    for tr, va in grouped_kfold(y[train], groups[train], n, seed):
        out.append((train[tr], train[va]))
    return out


def check_two_classes(y: np.ndarray, train: np.ndarray, what: str) -> None:
    """Refuse a fold whose training part holds one class only (no classifier can be fitted).

    Raises:
        SplitError: naming the fold, the class and what to change.
    """
    present = np.unique(np.asarray(y)[train])
    if len(present) < 2:
        raise SplitError(f"{what} trains on samples of one class only (class {present[0] if len(present) else '?'}, "
                         f"{len(train)} samples): use fewer folds (cv.n_splits, cv.inner_splits) or more samples")


def make_folds(cfg: SplitConfig, y: np.ndarray, groups: np.ndarray,
               splits: np.ndarray | None = None) -> list[Fold]:
    """Outer folds (with nested inner folds when asked) for labels `y` and subjects `groups`.

    Every fold — outer and inner — is checked with `check_disjoint` (except the deliberately
    leaky `turn-level` scheme, which exists to demonstrate leakage).
    """
    y, groups = np.asarray(y), np.asarray(groups).astype(str)
    outer: list[tuple[int, int, int, np.ndarray, np.ndarray]] = []
    if cfg.scheme == "grouped-kfold":
        for r in range(cfg.n_repeats):
            for f, (tr, te) in enumerate(grouped_kfold(y, groups, cfg.n_splits, cfg.seed + r)):
                outer.append((r, f, cfg.seed + r, tr, te))
    elif cfg.scheme == "loso":
        for f, (tr, te) in enumerate(LeaveOneGroupOut().split(np.zeros(len(y)), y, groups)):
            outer.append((0, f, cfg.seed, tr, te))
    elif cfg.scheme == "official":
        if splits is None:
            raise SplitError("the official scheme needs the samples' official splits")
        splits = np.asarray(splits).astype(str)
        tr = np.flatnonzero(np.isin(splits, cfg.train_splits))
        te = np.flatnonzero(np.isin(splits, cfg.test_splits))
        if not len(tr) or not len(te):
            raise SplitError(f"official splits {cfg.train_splits} / {cfg.test_splits} leave "
                             f"{len(tr)} training and {len(te)} test samples "
                             f"(splits present: {sorted(set(splits))})")
        outer.append((0, 0, cfg.seed, tr, te))
    elif cfg.scheme == "holdout":
        wanted = [str(g) for g in cfg.test_groups]
        unknown = sorted(set(wanted) - set(groups))
        if not wanted or unknown:
            raise SplitError(f"holdout scheme: test_groups {unknown or '(none given)'} are not groups of "
                             f"the data (groups: {sorted(set(groups))[:12]}…)")
        te = np.flatnonzero(np.isin(groups, wanted))
        tr = np.flatnonzero(~np.isin(groups, wanted))
        outer.append((0, 0, cfg.seed, tr, te))
    else:  # turn-level: samples, not subjects, are shuffled into folds
        from sklearn.model_selection import StratifiedKFold

        for r in range(cfg.n_repeats):
            cv = StratifiedKFold(cfg.n_splits, shuffle=True, random_state=cfg.seed + r)
            with rare_class_warning_said_elsewhere():
                split = list(cv.split(np.zeros(len(y)), y))
            for f, (tr, te) in enumerate(split):
                outer.append((r, f, cfg.seed + r, tr, te))
    if cfg.seeds and cfg.scheme in ("loso", "official", "holdout"):
        outer = [(r, f, s, tr, te) for r, s in enumerate(cfg.seeds) for _, f, _, tr, te in outer]
    folds = []
    for r, f, seed, tr, te in outer:
        if cfg.scheme != "turn-level":
            check_disjoint(groups, tr, te, f"outer fold {f} of repeat {r}")
        check_two_classes(y, tr, f"outer fold {f} of repeat {r}")
        inner = []
        if cfg.inner_splits > 1 and cfg.scheme == "turn-level":  # naive all the way down
            from sklearn.model_selection import StratifiedKFold

            cv = StratifiedKFold(cfg.inner_splits, shuffle=True, random_state=seed + 1000)
            with rare_class_warning_said_elsewhere():
                inner = [(tr[a], tr[b]) for a, b in cv.split(np.zeros(len(tr)), y[tr])]
        elif cfg.inner_splits > 1:
            inner = inner_folds(y, groups, tr, cfg.inner_splits, seed + 1000)
            for i, (itr, iva) in enumerate(inner):
                if cfg.scheme != "turn-level":
                    check_disjoint(groups, itr, iva, f"inner fold {i} of outer fold {f}")
                check_two_classes(y, itr, f"inner fold {i} of outer fold {f} (repeat {r})")
                if np.intersect1d(iva, te).size:
                    raise LeakageError(f"inner validation of outer fold {f} contains test samples")
        folds.append(Fold(r, f, seed, tr, te, inner))
    return folds
