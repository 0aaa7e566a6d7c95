"""The dataset adapter interface: a corpus on disk, in its native layout → samples + labels."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from features.base import Params, Sample, validate_params
from features.registry import Registry

DATASETS: Registry[type] = Registry("dataset", package="fusion.datasets")


class DatasetError(ValueError):
    """A corpus on disk does not match the layout its adapter expects."""


class DatasetAdapter(ABC):
    """Reads one corpus layout.

    Subclasses implement `_load()` returning the samples; problems that do not stop the
    corpus from loading (a session listed in a split file but absent on disk, …) are appended
    to `self.problems` so that commands can report them.

    Args:
        root: the corpus folder as its owners ship it.
    """

    name: ClassVar[str]
    Params: ClassVar[type[Params]] = Params

    def __init__(self, root: str | Path, **params: Any) -> None:
        self.root = Path(root)
        self.params = validate_params(type(self).__name__, self.Params, params)
        self.problems: list[str] = []
        if not self.root.is_dir():
            raise DatasetError(f"{self.name}: dataset root {self.root} does not exist or is not a folder")

    @abstractmethod
    def _load(self) -> list[Sample]:
        """Read the corpus and return its samples."""

    @functools.cached_property
    def _samples(self) -> list[Sample]:
        samples = self._load()
        ids = [s.sample_id for s in samples]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise DatasetError(f"{self.name} at {self.root}: duplicated sample ids {dup[:10]}")
        return samples

    def samples(self) -> list[Sample]:
        return list(self._samples)

    def labels(self) -> pd.DataFrame:
        """One row per sample: subject_id, split and every label column, indexed by sample_id."""
        rows = [{"sample_id": s.sample_id, "subject_id": s.subject_id, "split": s.split,
                 **dict(s.labels)} for s in self._samples]
        if not rows:
            return pd.DataFrame(columns=["subject_id", "split"]).rename_axis("sample_id")
        return pd.DataFrame(rows).set_index("sample_id")

    def describe(self) -> dict[str, Any]:
        """Counts per split, per label value (for labels with few values) and subjects."""
        df = self.labels()
        out: dict[str, Any] = {
            "dataset": self.name,
            "root": str(self.root),
            "n_samples": len(df),
            "n_subjects": int(df["subject_id"].nunique()) if len(df) else 0,
            "per_split": {str(k): int(v)
                          for k, v in df["split"].fillna("none").value_counts().sort_index().items()},
            "labels": {},
            "problems": list(self.problems),
        }
        for col in df.columns.drop(["subject_id", "split"]):
            values = df[col].dropna()
            if 0 < values.nunique() <= 12:
                counts = values.value_counts()
                out["labels"][col] = {str(k): int(counts[k]) for k in sorted(counts.index, key=str)}
            elif len(values) and pd.api.types.is_numeric_dtype(values):
                out["labels"][col] = {"min": float(values.min()), "max": float(values.max()),
                                      "mean": round(float(values.mean()), 3), "n": int(len(values))}
        return out


def build_dataset(spec) -> DatasetAdapter:
    """Instantiate the adapter a dataset spec (`name`, `root`, `params`) names."""
    return DATASETS.get(spec.name)(spec.root, **spec.params)
