"""The dataset adapter interface: a corpus on disk, in its native layout → samples + labels."""

from __future__ import annotations

import functools
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from features.base import Params, Sample, validate_params
from features.registry import Registry

DATASETS: Registry[type] = Registry("dataset", package="fusion.datasets")


class DatasetError(ValueError):
    """A corpus on disk does not match the layout its adapter expects."""


def walk_files(root: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Files under `root` whose suffix (lower-cased) is one of `suffixes`, sorted, following
    symlinked folders (a corpus assembled from links to its parts) but never a link cycle."""
    out: list[Path] = []
    seen: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        out.extend(Path(folder) / f for f in files if Path(f).suffix.lower() in suffixes)
    return sorted(out)


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
    #: what splits must keep together by default (`cv.group_by: auto`): "subject" or "group"
    group_by: ClassVar[str] = "subject"
    #: why, when it is not the subject (shown with every result grouped that way)
    grouping_note: ClassVar[str | None] = None
    #: what coded label values mean, as the corpus documents them ({column: {code: meaning}});
    #: a data config's `dataset.codebook` adds to it or overrides it
    codebook: ClassVar[dict[str, dict[str, str]]] = {}

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
        """One row per sample: subject_id, split, group (the adapter's grouping other than the
        subject, e.g. a MELD dialogue; None where it has none) and every label column, indexed by
        sample_id, in the adapter's order."""
        rows = [{"sample_id": s.sample_id, "subject_id": s.subject_id, "split": s.split, "group": s.group,
                 **dict(s.labels)} for s in self._samples]
        if not rows:
            return pd.DataFrame(columns=["subject_id", "split", "group"]).rename_axis("sample_id")
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
        for col in df.columns.drop(["subject_id", "split", "group"]):
            values = df[col].dropna()
            if 0 < values.nunique() <= 12:
                counts = values.value_counts()
                out["labels"][col] = {str(k): int(counts[k]) for k in sorted(counts.index, key=str)}
            elif len(values) and pd.api.types.is_numeric_dtype(values):
                out["labels"][col] = {"min": float(values.min()), "max": float(values.max()),
                                      "mean": round(float(values.mean()), 3), "n": int(len(values))}
        return out


def group_column(dataset: DatasetAdapter, labels: pd.DataFrame, group_by: str) -> tuple[pd.Series, str]:
    """The column splits keep together: `auto` (the dataset's own), `subject`, `group`, or a
    label column; and the name it resolved to.

    Raises:
        DatasetError: a grouping the dataset does not have, or samples without a group.
    """
    name = dataset.group_by if group_by == "auto" else group_by
    column = {"subject": "subject_id"}.get(name, name)
    if column not in labels.columns:
        raise DatasetError(f"cv.group_by {group_by!r}: {dataset.name} has no column {column!r} "
                           f"(choose subject, group or a label: {', '.join(map(str, labels.columns))})")
    values = labels[column]
    if values.isna().any():
        missing = list(labels.index[values.isna()][:5])
        raise DatasetError(f"cv.group_by {name!r}: samples {missing} of {dataset.name} have no {column}")
    return values.astype(str), name


def build_dataset(spec) -> DatasetAdapter:
    """Instantiate the adapter a dataset spec (`name`, `root`, `params`) names."""
    return DATASETS.get(spec.name)(spec.root, **spec.params)


def codebook_of(spec) -> dict[str, dict[str, str]]:
    """The meanings of coded label values for a dataset spec: its adapter's own codebook, with
    the spec's `codebook` entries added or taking precedence."""
    book = {col: dict(codes) for col, codes in DATASETS.get(spec.name).codebook.items()}
    for col, codes in (getattr(spec, "codebook", None) or {}).items():
        book.setdefault(col, {}).update({str(k): str(v) for k, v in codes.items()})
    return book


def decode(book: dict[str, dict[str, str]], column: str, value) -> str:
    """A label value as its meaning (`Gender` 0 → female), or as itself when not coded."""
    text = str(int(value)) if isinstance(value, float) and float(value).is_integer() else str(value)
    return book.get(column, {}).get(text, text)
