"""Your own data: a folder of media plus `labels.csv`, so a new study needs no code.

`labels.csv` columns: `sample_id`, `subject_id`, then media paths relative to the folder —
either explicit role columns (`audio`, `video`, `image`, `transcript`, `face`, `face_au`,
`face_gaze`, `face_pose`) or a generic `path` whose role follows from its extension — and
optionally `split`, `text` and `group` (a grouping other than the subject that splits keep
together with `cv.group_by: group`, e.g. a conversation). Every other column is a label. `params.labels` may declare a
label's allowed values or range, which are then checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from features.base import Params, Sample
from fusion.datasets.base import DATASETS, DatasetAdapter, DatasetError

ROLES = ("audio", "video", "image", "transcript", "face", "face_au", "face_gaze", "face_pose")
EXTENSIONS = {".wav": "audio", ".flac": "audio", ".mp3": "audio", ".ogg": "audio",
              ".mp4": "video", ".avi": "video", ".mov": "video", ".mkv": "video",
              ".jpg": "image", ".jpeg": "image", ".png": "image"}
RESERVED = {"sample_id", "subject_id", "path", "split", "text", "group", *ROLES}


class LabelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    values: list[Any] | None = None
    min: float | None = None
    max: float | None = None


class FolderParams(Params):
    labels_file: str = "labels.csv"
    labels: dict[str, LabelSpec] = Field(default_factory=dict)


@DATASETS.register("folder")
class Folder(DatasetAdapter):
    """A folder of media with a labels table."""

    name = "folder"
    Params = FolderParams

    def _load(self) -> list[Sample]:
        path = self.root / self.params.labels_file
        if not path.exists():
            raise DatasetError(f"folder: {path} not found (expected a table with sample_id, subject_id, "
                               "media path columns and labels)")
        try:
            df = pd.read_csv(path, dtype={"sample_id": str, "subject_id": str})
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise DatasetError(f"{path}: cannot read: {err}") from None
        missing = [c for c in ("sample_id", "subject_id") if c not in df.columns]
        if missing:
            raise DatasetError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
        media_cols = [c for c in df.columns if c in ROLES or c == "path"]
        if not media_cols and "text" not in df.columns:
            raise DatasetError(f"{path}: no media column (one of {['path', *ROLES]}) and no text column")
        for col in ("sample_id", "subject_id"):
            empty = df.index[df[col].isna() | (df[col].astype(str).str.strip() == "")]
            if len(empty):
                raise DatasetError(f"{path}: column {col!r} is empty on line(s) {[i + 2 for i in empty[:5]]}")
        dup = df["sample_id"][df["sample_id"].duplicated()].tolist()
        if dup:
            raise DatasetError(f"{path}: duplicated sample_id {dup[:5]}")
        label_cols = [c for c in df.columns if c not in RESERVED]
        for name, spec in self.params.labels.items():
            if name not in df.columns:
                raise DatasetError(f"{path}: declared label {name!r} is not a column "
                                   f"(columns: {list(df.columns)})")
            self._check_label(path, df, name, spec)
        samples = []
        for i, row in enumerate(df.to_dict("records")):
            media: dict[str, Path] = {}
            for col in media_cols:
                value = row[col]
                if value is None or (isinstance(value, float) and pd.isna(value)):
                    continue
                file = self.root / str(value)
                role = col if col != "path" else EXTENSIONS.get(file.suffix.lower())
                if role is None:
                    raise DatasetError(f"{path}: line {i + 2}: cannot tell the media type of {value!r}; "
                                       f"use a column named after its role ({', '.join(ROLES)})")
                if not file.exists():
                    self.problems.append(f"{path.name} line {i + 2}: {col} file {file} not found")
                    continue
                media[role] = file
            labels = {c: (None if isinstance(row[c], float) and pd.isna(row[c]) else row[c])
                      for c in label_cols}
            text = row.get("text")
            split, group = row.get("split"), row.get("group")
            samples.append(Sample(str(row["sample_id"]), str(row["subject_id"]), media, labels,
                                  split=None if split is None or pd.isna(split) else str(split),
                                  group=None if group is None or pd.isna(group) else str(group),
                                  text=None if text is None or pd.isna(text) else str(text)))
        return samples

    @staticmethod
    def _check_label(path: Path, df: pd.DataFrame, name: str, spec: LabelSpec) -> None:
        col = df[name].dropna()
        if spec.values is not None:
            bad = col[~col.isin(spec.values)]
            if len(bad):
                raise DatasetError(
                    f"{path}: column {name!r} has value(s) {sorted(set(bad.astype(str)))[:5]} on "
                    f"line(s) {[i + 2 for i in bad.index[:5]]}; expected one of {spec.values}")
        if spec.min is not None or spec.max is not None:
            num = pd.to_numeric(col, errors="coerce")
            lo = -float("inf") if spec.min is None else spec.min
            hi = float("inf") if spec.max is None else spec.max
            bad = num[num.isna() | (num < lo) | (num > hi)]
            if len(bad):
                raise DatasetError(f"{path}: column {name!r} must be a number in [{spec.min}, {spec.max}]; "
                                   f"line(s) {[i + 2 for i in bad.index[:5]]} are not")
