"""Severity labels derived from questionnaire scores, shared by the DAIC-derived corpora."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

PHQ8_BINS = (4, 9, 14, 19)  # 0–4 none, 5–9 mild, 10–14 moderate, 15–19 moderately severe, 20–24 severe
PHQ8_CLASSES = ["none", "mild", "moderate", "moderately severe", "severe"]
# The tri-modal severity code bins PTSD severity at ≤ 20, 21–40, > 40.
PTSD_BINS = (20, 40)
PTSD_CLASSES = ["low", "moderate", "high"]


def phq8_severity(score: float) -> int | None:
    """PHQ-8 score (0–24) → 0..4 (none, mild, moderate, moderately severe, severe)."""
    if score is None or pd.isna(score):
        return None
    if not 0 <= score <= 24:
        raise ValueError(f"PHQ-8 score must be in 0–24, got {score}")
    return int(np.searchsorted(PHQ8_BINS, score, side="left"))


def ptsd_class(severity: float, bins: Sequence[float] = PTSD_BINS) -> int | None:
    """PTSD severity → class index: ≤ bins[0] → 0, ≤ bins[1] → 1, … above the last → len(bins)."""
    if severity is None or pd.isna(severity):
        return None
    return int(np.searchsorted(np.asarray(bins, dtype=float), severity, side="left"))


def add_severity_labels(labels: dict, ptsd_bins: Sequence[float] = PTSD_BINS) -> dict:
    """Add PHQ8_Severity, PHQ8_Binary (score ≥ 10 when absent), PTSD_Class and PTSD_Binary."""
    out = dict(labels)
    score = out.get("PHQ8_Score")
    if score is not None and not pd.isna(score):
        out["PHQ8_Severity"] = phq8_severity(float(score))
        if out.get("PHQ8_Binary") is None or pd.isna(out.get("PHQ8_Binary")):
            out["PHQ8_Binary"] = int(score >= 10)
    severity = out.get("PTSD Severity")
    if severity is not None and not pd.isna(severity):
        out["PTSD_Class"] = ptsd_class(float(severity), ptsd_bins)
    pcl = out.get("PCL-C (PTSD)")
    if pcl is not None and not pd.isna(pcl):
        out["PTSD_Binary"] = int(pcl)
    return out


# What each label column of the DAIC-derived corpora may hold: (test, description).
PHQ8_ITEM_COLUMNS = ["PHQ8_NoInterest", "PHQ8_Depressed", "PHQ8_Sleep", "PHQ8_Tired", "PHQ8_Appetite",
                     "PHQ8_Failure", "PHQ8_Concentrating", "PHQ8_Moving"]


def _integers(lo: int, hi: int):
    return lambda v: np.isfinite(v) & (v == np.round(v)) & (v >= lo) & (v <= hi)


LABEL_RULES: dict[str, tuple] = {
    "Participant_ID": (lambda v: np.isfinite(v) & (v == np.round(v)), "an integer"),
    "PHQ8_Score": (_integers(0, 24), "an integer in 0–24"),
    "PHQ_Score": (_integers(0, 24), "an integer in 0–24"),
    "PHQ8_Binary": (_integers(0, 1), "0 or 1"),
    "PHQ_Binary": (_integers(0, 1), "0 or 1"),
    "PCL-C (PTSD)": (_integers(0, 1), "0 or 1"),
    "PTSD Severity": (lambda v: np.isfinite(v) & (v >= 0) & (v <= 85), "a number in 0–85 (a PCL-C total)"),
    **{c: (_integers(0, 3), "an integer in 0–3") for c in PHQ8_ITEM_COLUMNS},
}


def label_problems(df: pd.DataFrame, path) -> list[str]:
    """Every cell of a label file that is not what its column means, as one message per column
    naming the file, the column, the lines and the allowed values; and binary PHQ-8 labels that
    contradict the score (≥ 10 is depressed). Missing values are allowed (they are reported by
    the adapters as missing items)."""
    problems = []
    for col, (ok, allowed) in LABEL_RULES.items():
        if col not in df.columns:
            continue
        raw = df[col]
        present = raw.notna() & (raw.astype(str).str.strip() != "")
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            bad = present.to_numpy() & ~ok(values)
        if bad.any():
            rows = np.flatnonzero(bad)
            shown = ", ".join(f"line {r + 2}: {raw.iloc[r]!r}" for r in rows[:5])
            problems.append(f"{path}: column {col!r} must be {allowed}; {len(rows)} row(s) are not "
                            f"({shown}{' …' if len(rows) > 5 else ''})")
    for binary, score in (("PHQ8_Binary", "PHQ8_Score"), ("PHQ_Binary", "PHQ_Score")):
        if binary in df.columns and score in df.columns:
            b = pd.to_numeric(df[binary], errors="coerce")
            s = pd.to_numeric(df[score], errors="coerce")
            wrong = np.flatnonzero((b.notna() & s.notna() & (b != (s >= 10).astype(float))).to_numpy())
            if len(wrong):
                shown = ", ".join(f"line {r + 2}: {binary} {b.iloc[r]:g} with {score} {s.iloc[r]:g}" for r in wrong[:5])
                problems.append(f"{path}: column {binary!r} contradicts {score!r} (binary = score ≥ 10) in "
                                f"{len(wrong)} row(s) ({shown})")
    return problems


def check_label_file(df: pd.DataFrame, path, required: tuple[str, ...] = ("Participant_ID",)) -> pd.DataFrame:
    """A label file's rows with integer participant ids, after checking that `required`
    columns have a value in every row, every label means what its column says
    (`label_problems`) and no participant is listed twice.

    Raises:
        DatasetError: listing every problem with the file, column and lines.
    """
    from fusion.datasets.base import DatasetError

    problems = [f"{path}: column {c!r} has no value in line(s) "
                f"{', '.join(str(i + 2) for i in np.flatnonzero(df[c].isna())[:5])}"
                for c in required if c in df.columns and df[c].isna().any()]
    problems += label_problems(df, path)
    if problems:
        raise DatasetError("\n".join(problems))
    df["Participant_ID"] = pd.to_numeric(df["Participant_ID"]).astype(int)
    dup = df["Participant_ID"][df["Participant_ID"].duplicated()].tolist()
    if dup:
        raise DatasetError(f"{path}: duplicated Participant_ID {dup[:5]}")
    return df
