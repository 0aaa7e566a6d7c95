"""C-EXPR-DB: videos with compound-expression annotations.

Two annotation layouts are read, whichever is present:

- per segment: `annotation/{video}.csv` with `Begin Time - hh:mm:ss.ms`,
  `End Time - hh:mm:ss.ms` and one column per compound expression holding 1 for the
  segment's expression (an `Other` column may exist);
- per frame (ABAW style): `annotations/{video}.txt`, first line the comma-separated class
  names, then one class index per frame (-1: not annotated); runs of one label become
  segments, timed by `fps`.

Videos are `videos/{video}.mp4` (or `{video}.mp4` at the root). What was extracted from a
video beforehand is found beside it: its sound track `audio/{video}.wav` (media role `audio`)
and per-frame face features `face/{video}.csv` (OpenFace 2.x or py-feat output, role `face`;
the extract config's `face` extractor names the layout), and, where one exists, a timed
transcript `transcripts/{video}.csv` (`Start_Time, End_Time, Text`, e.g. from a speech
recogniser; role `transcript`: text windows gather the words said in them). One sample per annotated segment, as
a span of its video; the video is the subject.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field

from features.base import Params, Sample
from fusion.datasets.base import DATASETS, DatasetAdapter, DatasetError

COMPOUND = ["Fearfully Surprised", "Happily Surprised", "Sadly Surprised", "Disgustedly Surprised",
            "Angrily Surprised", "Sadly Fearful", "Sadly Angry"]
BEGIN, END = "Begin Time - hh:mm:ss.ms", "End Time - hh:mm:ss.ms"


class CexprParams(Params):
    fps: float = Field(30.0, gt=0)
    include_other: bool = False


def parse_clock(value: str) -> float:
    """`hh:mm:ss.ms` (or `mm:ss.ms`, or seconds) → seconds."""
    parts = str(value).strip().split(":")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"cannot read time {value!r} (expected hh:mm:ss.ms)") from None
    secs = 0.0
    for n in nums:
        secs = secs * 60 + n
    return secs


def _norm(name: str) -> str:
    return " ".join(name.replace("_", " ").split()).lower()


@DATASETS.register("c-expr-db")
class CexprDb(DatasetAdapter):
    """C-EXPR-DB compound-expression segments."""

    name = "c-expr-db"
    Params = CexprParams

    def _video(self, stem: str) -> Path | None:
        for p in (self.root / "videos" / f"{stem}.mp4", self.root / f"{stem}.mp4"):
            if p.exists():
                return p
        return None

    def _load(self) -> list[Sample]:
        seg_files = sorted((self.root / "annotation").glob("*.csv"))
        frame_files = sorted((self.root / "annotations").glob("*.txt"))
        if not seg_files and not frame_files:
            raise DatasetError(f"c-expr-db: no annotation/*.csv or annotations/*.txt under {self.root}")
        segments: list[tuple[str, float, float, str, Path]] = []
        for path in seg_files:
            segments.extend(self._segments_csv(path))
        for path in frame_files:
            segments.extend(self._segments_frames(path))
        samples = []
        skipped_other = 0
        counters: dict[str, int] = {}
        for video, start, end, label, source in segments:
            if label == "Other" and not self.params.include_other:
                skipped_other += 1
                continue
            k = counters[video] = counters.get(video, -1) + 1
            media = {}
            path = self._video(video)
            if path is not None:
                media["video"] = path
            for role, found in (("audio", self.root / "audio" / f"{video}.wav"),
                                ("face", self.root / "face" / f"{video}.csv"),
                                ("transcript", self.root / "transcripts" / f"{video}.csv")):
                if found.exists():
                    media[role] = found
            if not media:
                self.problems.append(f"{source.name}: neither video {video}.mp4 nor audio/{video}.wav or "
                                     f"face/{video}.csv found")
            labels = {"expression": label,
                      "expression_id": COMPOUND.index(label) if label in COMPOUND else len(COMPOUND)}
            samples.append(Sample(f"{video}_{k:03d}", video, media, labels, span=(start, end),
                                  duration=end - start))
        if skipped_other:
            self.problems.append(f"{skipped_other} segment(s) labelled Other left out (include_other: false)")
        return samples

    def _segments_csv(self, path: Path):
        try:
            df = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise DatasetError(f"{path}: cannot read annotation: {err}") from None
        cols = {_norm(c): c for c in df.columns}
        missing = [c for c in (BEGIN, END) if _norm(c) not in cols]
        label_cols = [(name, cols[_norm(name)]) for name in [*COMPOUND, "Other"] if _norm(name) in cols]
        if missing or not label_cols:
            raise DatasetError(f"{path}: expected columns {BEGIN!r}, {END!r} and the compound expressions "
                               f"{COMPOUND}; found {list(df.columns)}")
        onehot = df[[c for _, c in label_cols]].fillna(0).to_numpy(dtype=float)
        out = []
        begins, ends = df[cols[_norm(BEGIN)]].tolist(), df[cols[_norm(END)]].tolist()
        for i in range(len(df)):
            line = i + 2
            hot = np.flatnonzero(onehot[i] == 1)
            if len(hot) != 1:
                raise DatasetError(f"{path}: line {line}: expected exactly one expression column set to 1, "
                                   f"found {len(hot)}")
            try:
                start, end = parse_clock(begins[i]), parse_clock(ends[i])
            except ValueError as err:
                raise DatasetError(f"{path}: line {line}: {err}") from None
            if end <= start:
                raise DatasetError(f"{path}: line {line}: end time {end:.3f} s is not after begin "
                                   f"time {start:.3f} s")
            out.append((path.stem, start, end, label_cols[hot[0]][0], path))
        return out

    def _segments_frames(self, path: Path):
        lines = path.read_text(encoding="utf-8").splitlines()
        if not lines:
            raise DatasetError(f"{path}: empty annotation file")
        header = [h.strip() for h in lines[0].split(",")]
        names = []
        for h in header:
            match = next((c for c in [*COMPOUND, "Other"] if _norm(c) == _norm(h)), None)
            if match is None:
                raise DatasetError(f"{path}: unknown class {h!r} in the header; expected {COMPOUND}")
            names.append(match)
        try:
            codes = np.array([int(x) for x in lines[1:] if x.strip()], dtype=int)
        except ValueError as err:
            raise DatasetError(f"{path}: frame labels must be integers ({err})") from None
        bad = np.flatnonzero((codes < -1) | (codes >= len(names)))
        if len(bad):
            raise DatasetError(f"{path}: line {bad[0] + 2}: label {codes[bad[0]]} is outside "
                               f"-1…{len(names) - 1}")
        out = []
        fps = self.params.fps
        start = 0
        for i in range(1, len(codes) + 1):
            if i == len(codes) or codes[i] != codes[start]:
                if codes[start] >= 0:
                    out.append((path.stem, start / fps, i / fps, names[codes[start]], path))
                start = i
        return out
