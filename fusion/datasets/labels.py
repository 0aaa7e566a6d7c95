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
