"""MELD: the `{split}_sent_emo.csv` tables, dialogue grouping, optional utterance videos.

Columns: `Sr No., Utterance, Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID, Season,
Episode, StartTime, EndTime` (times `HH:MM:SS,mmm`). Videos, when present, are
`dia{D}_utt{U}.mp4` in the split's folder (`train_splits/`, `dev_splits_complete/`,
`output_repeated_splits_test/`, or `{split}/`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import Field

from features.base import Params, Sample
from fusion.datasets.base import DATASETS, DatasetAdapter, DatasetError

CSV = {"train": "train_sent_emo.csv", "dev": "dev_sent_emo.csv", "test": "test_sent_emo.csv"}
VIDEO_DIRS = {"train": ["train_splits", "train"], "dev": ["dev_splits_complete", "dev"],
              "test": ["output_repeated_splits_test", "test"]}
EMOTIONS = ["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"]
SENTIMENTS = ["neutral", "positive", "negative"]
REQUIRED = ["Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
            "StartTime", "EndTime"]


class MeldParams(Params):
    splits: list[Literal["train", "dev", "test"]] = Field(default_factory=lambda: ["train", "dev", "test"])


def parse_time(value: str) -> float:
    """`00:16:16,059` → 976.059 seconds."""
    hms, _, ms = str(value).strip().partition(",")
    h, m, s = hms.split(":")
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms or 0) / 1000


@DATASETS.register("meld")
class Meld(DatasetAdapter):
    """MELD utterances with emotion and sentiment; dialogues as groups (what splits keep
    together), speakers as subjects (what speaker normalisation uses)."""

    name = "meld"
    Params = MeldParams
    group_by = "group"
    grouping_note = ("MELD is split by dialogue: its speakers (the show's characters) recur across its "
                     "official train / dev / test splits by design, so its figures are dialogue-, not "
                     "speaker-independent (group_by: subject gives speaker-independent folds)")

    def _read(self, path: Path) -> pd.DataFrame:
        try:
            df = pd.read_csv(path, encoding="utf-8", dtype=str, keep_default_na=False)
        except UnicodeDecodeError as err:
            raise DatasetError(f"{path}: not valid UTF-8 ({err})") from None
        missing = [c for c in REQUIRED if c not in df.columns]
        if missing:
            raise DatasetError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
        for col, allowed in (("Emotion", EMOTIONS), ("Sentiment", SENTIMENTS)):
            bad = sorted(set(df[col]) - set(allowed))
            if bad:
                raise DatasetError(f"{path}: column {col!r} has values {bad[:5]}; expected {allowed}")
        return df

    def _load(self) -> list[Sample]:
        samples = []
        for split in self.params.splits:
            path = self.root / CSV[split]
            if not path.exists():
                self.problems.append(f"{CSV[split]} not found in {self.root}; no {split} split")
                continue
            df = self._read(path)
            video_dir = next((self.root / d for d in VIDEO_DIRS[split] if (self.root / d).is_dir()), None)
            n_bad_time = 0
            said: dict[int, dict[int, tuple[str, str]]] = {}
            for row in df.itertuples(index=False):
                said.setdefault(int(row.Dialogue_ID), {})[int(row.Utterance_ID)] = (str(row.Speaker),
                                                                                    str(row.Utterance))
            for row in df.itertuples(index=False):
                d, u = int(row.Dialogue_ID), int(row.Utterance_ID)
                try:
                    duration = parse_time(row.EndTime) - parse_time(row.StartTime)
                except ValueError:
                    duration, n_bad_time = None, n_bad_time + 1
                media = {}
                if video_dir is not None and (video_dir / f"dia{d}_utt{u}.mp4").exists():
                    media["video"] = video_dir / f"dia{d}_utt{u}.mp4"
                samples.append(Sample(
                    sample_id=f"{split}_dia{d}_utt{u}", subject_id=str(row.Speaker),
                    media=media, split=split, text=str(row.Utterance),
                    group=f"{split}_dia{d}", duration=duration, speaker=str(row.Speaker),
                    context=tuple(said[d][v] for v in sorted(said[d]) if v < u),
                    labels={"emotion": row.Emotion, "sentiment": row.Sentiment,
                            "dialogue": d, "utterance": u},
                ))
            if n_bad_time:
                self.problems.append(f"{path}: {n_bad_time} row(s) with unreadable StartTime/EndTime")
        if not samples:
            raise DatasetError(f"meld: no {', '.join(CSV[s] for s in self.params.splits)} under {self.root}")
        return samples
