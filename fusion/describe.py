"""`fusion data describe`: what a corpus holds, per split and per label, and how it splits."""

from __future__ import annotations

from typing import Any

import numpy as np

from fusion.config.schema import ConfigError, DataConfig
from fusion.datasets.base import build_dataset, group_column
from fusion.evaluation.splits import make_folds


def describe(cfg: DataConfig) -> dict[str, Any]:
    """Counts per split and label, subjects, the adapter's problems, and (with `cv`) the folds."""
    dataset = build_dataset(cfg.dataset)
    out = dataset.describe()
    if cfg.cv is not None:
        labels = dataset.labels()
        if cfg.target is None or cfg.target not in labels.columns:
            raise ConfigError(f"describing folds needs `target`, one of the labels: "
                              f"{', '.join(labels.columns.drop(['subject_id', 'split', 'group']))}")
        labels = labels[labels[cfg.target].notna()]
        groups, out["group_by"] = group_column(dataset, labels, cfg.cv.group_by)
        folds = make_folds(cfg.cv, labels[cfg.target].astype(str).to_numpy(), groups.to_numpy(),
                           labels["split"].to_numpy())
        subjects = labels["subject_id"].astype(str).to_numpy()
        out["folds"] = [{"repeat": f.repeat, "fold": f.fold, "n_train": int(len(f.train)),
                         "n_test": int(len(f.test)), "n_inner": len(f.inner),
                         "test_groups": int(len(np.unique(groups.to_numpy()[f.test]))),
                         "test_subjects": int(len(np.unique(subjects[f.test]))),
                         "subjects_on_both_sides": int(len(np.intersect1d(subjects[f.train], subjects[f.test])))}
                        for f in folds]
    return out


def format_description(d: dict[str, Any], indent: str = "") -> str:
    lines = [f"{indent}{d['dataset']} at {d['root']}: {d['n_samples']} samples, {d['n_subjects']} subjects"]
    lines.append(f"{indent}  per split: " + ", ".join(f"{k} {v}" for k, v in d["per_split"].items()))
    for name, counts in d["labels"].items():
        if "mean" in counts and "min" in counts:
            lines.append(f"{indent}  {name}: min {counts['min']:g}, max {counts['max']:g}, "
                         f"mean {counts['mean']:g} (n={counts['n']})")
        else:
            lines.append(f"{indent}  {name}: " + ", ".join(f"{k}: {v}" for k, v in counts.items()))
    for p in d["problems"]:
        lines.append(f"{indent}  note: {p}")
    for m in d.get("members", []):
        lines.append(format_description(m, indent + "  "))
    if "folds" in d:
        sizes = [f"{f['n_train']}/{f['n_test']}" for f in d["folds"]]
        group = d.get("group_by", "subject")
        lines.append(f"{indent}  folds (train/test samples): {', '.join(sizes)}; no {group} on both sides")
        shared = [f["subjects_on_both_sides"] for f in d["folds"] if f.get("subjects_on_both_sides")]
        if group != "subject" and shared:
            lines.append(f"{indent}  subjects on both sides of a fold: up to {max(shared)} (grouped by {group})")
    return "\n".join(lines)
