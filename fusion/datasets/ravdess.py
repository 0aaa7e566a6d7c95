"""RAVDESS: labels from the filename code, the actor as subject.

Files are named `MM-VV-EE-II-SS-RR-AA.ext` (modality, vocal channel, emotion, intensity,
statement, repetition, actor) under `Actor_AA/` folders. One sample per recording; the
audio-only file (modality 03, `.wav`) and the video (01 audio-visual, else 02 video-only,
`.mp4`) of the same recording are attached to the same sample when present.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from features.base import Params, Sample
from fusion.datasets.base import DATASETS, DatasetAdapter, DatasetError, walk_files

EMOTIONS = {1: "neutral", 2: "calm", 3: "happy", 4: "sad", 5: "angry", 6: "fearful",
            7: "disgust", 8: "surprised"}
STATEMENTS = {1: "Kids are talking by the door", 2: "Dogs are sitting by the door"}
PATTERN = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")


class RavdessParams(Params):
    """vocal_channel: which recordings to read. test_actors: actors (1–24) whose recordings
    form the `test` split, every other actor's the `train` split (RAVDESS has no official
    split; `cv.scheme: official` then trains on the others and tests on these)."""

    vocal_channel: Literal["speech", "song", "both"] = "both"
    test_actors: list[int] = Field(default_factory=list)

    @field_validator("test_actors")
    @classmethod
    def _actors(cls, v: list[int]) -> list[int]:
        bad = [a for a in v if not 1 <= a <= 24]
        if bad:
            raise ValueError(f"RAVDESS actors are 1–24, got {bad}")
        return v


def parse_code(stem: str) -> dict[str, int]:
    """`03-01-05-02-01-02-11` → its seven codes, checked against RAVDESS's ranges.

    Raises:
        ValueError: naming the code that is out of range or malformed.
    """
    m = PATTERN.match(stem)
    if not m:
        raise ValueError(f"{stem!r} is not a RAVDESS name MM-VV-EE-II-SS-RR-AA")
    keys = ["modality", "vocal_channel", "emotion", "intensity", "statement", "repetition", "actor"]
    code = dict(zip(keys, map(int, m.groups()), strict=True))
    ranges = {"modality": (1, 3), "vocal_channel": (1, 2), "emotion": (1, 8), "intensity": (1, 2),
              "statement": (1, 2), "repetition": (1, 2), "actor": (1, 24)}
    for k, (lo, hi) in ranges.items():
        if not lo <= code[k] <= hi:
            raise ValueError(f"{stem!r}: {k} code {code[k]:02d} is outside {lo:02d}–{hi:02d}")
    if code["emotion"] == 1 and code["intensity"] == 2:
        raise ValueError(f"{stem!r}: neutral has no strong intensity in RAVDESS")
    return code


@DATASETS.register("ravdess")
class Ravdess(DatasetAdapter):
    """RAVDESS speech and song, audio and/or video, labelled from the filename."""

    name = "ravdess"
    Params = RavdessParams

    def _load(self) -> list[Sample]:
        recordings: dict[tuple, dict] = {}
        files = walk_files(self.root, (".wav", ".mp4"))
        for path in files:
            try:
                code = parse_code(path.stem)
            except ValueError as err:
                self.problems.append(f"{path}: skipped: {err}")
                continue
            channel = "speech" if code["vocal_channel"] == 1 else "song"
            if self.params.vocal_channel not in ("both", channel):
                continue
            if path.parent.name.startswith("Actor_") and path.parent.name != f"Actor_{code['actor']:02d}":
                self.problems.append(f"{path}: actor code {code['actor']:02d} disagrees with its folder")
            key = tuple(code[k] for k in ("vocal_channel", "emotion", "intensity", "statement",
                                          "repetition", "actor"))
            rec = recordings.setdefault(key, {"code": code, "media": {}})
            role = "audio" if code["modality"] == 3 else "video"
            if role == "video" and "video" in rec["media"] and code["modality"] == 2:
                continue  # keep the audio-visual (01) version over video-only (02)
            rec["media"][role] = path
        samples = []
        for rec in recordings.values():
            code, media = rec["code"], rec["media"]
            stem = (media.get("audio") or media["video"]).stem
            labels = {
                "emotion": EMOTIONS[code["emotion"]], "emotion_code": code["emotion"],
                "intensity": "normal" if code["intensity"] == 1 else "strong",
                "statement": code["statement"], "repetition": code["repetition"],
                "vocal_channel": "speech" if code["vocal_channel"] == 1 else "song",
                "actor": code["actor"], "gender": "male" if code["actor"] % 2 else "female",
            }
            split = None
            if self.params.test_actors:
                split = "test" if code["actor"] in self.params.test_actors else "train"
            samples.append(Sample(sample_id=stem, subject_id=f"actor{code['actor']:02d}",
                                  media=dict(media), labels=labels, split=split,
                                  text=STATEMENTS[code["statement"]].lower()))
        if not samples:
            raise DatasetError(f"ravdess: no RAVDESS files (MM-VV-EE-II-SS-RR-AA.wav/.mp4) under {self.root}")
        return sorted(samples, key=lambda s: s.sample_id)
