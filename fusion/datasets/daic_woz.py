"""DAIC-WOZ in its native layout.

    root/
      300_P/300_TRANSCRIPT.csv  300_AUDIO.wav  300_CLNF_AUs.txt  300_CLNF_gaze.txt
            300_CLNF_pose.txt  300_CLNF_features.txt  300_COVAREP.csv  300_FORMANT.csv
      train_split_Depression_AVEC2017.csv   dev_split_Depression_AVEC2017.csv
      test_split_Depression_AVEC2017.csv    full_test_split.csv

Train/dev split files: `Participant_ID, PHQ8_Binary, PHQ8_Score, Gender, PHQ8_NoInterest …
PHQ8_Moving` (extra columns, such as the demo corpus's PTSD severity, are kept as labels).
The test split file has a lower-case `participant_ID` and no labels; `full_test_split.csv`
has `PHQ_Binary, PHQ_Score`, renamed here to the PHQ8_ names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import Field

from features.base import Params, Sample
from fusion.datasets.base import DATASETS, DatasetAdapter, DatasetError
from fusion.datasets.labels import PTSD_BINS, add_severity_labels, check_label_file

SPLIT_FILES = {
    "train": "train_split_Depression_AVEC2017.csv",
    "dev": "dev_split_Depression_AVEC2017.csv",
    "test": "test_split_Depression_AVEC2017.csv",
}
FULL_TEST_FILE = "full_test_split.csv"
PHQ8_ITEMS = ["PHQ8_NoInterest", "PHQ8_Depressed", "PHQ8_Sleep", "PHQ8_Tired",
              "PHQ8_Appetite", "PHQ8_Failure", "PHQ8_Concentrating", "PHQ8_Moving"]
# Sessions the public release leaves out (DAIC-WOZ documentation, "Excluded sessions"),
# and included sessions the documentation flags.
KNOWN_EXCLUDED = {342, 394, 398, 460}
KNOWN_NOTES = {
    373: "interrupted around 5:52–7:00 (the confederate enters the room)",
    444: "interrupted around 4:46–6:27 (the participant's phone rings)",
    451: "transcript lacks Ellie's turns", 458: "transcript lacks Ellie's turns",
    480: "transcript lacks Ellie's turns",
    402: "video recording ends about 2 minutes before the conversation",
}
MEDIA = {
    "audio": "{pid}_AUDIO.wav",
    "transcript": "{pid}_TRANSCRIPT.csv",
    "face_au": "{pid}_CLNF_AUs.txt",
    "face_gaze": "{pid}_CLNF_gaze.txt",
    "face_pose": "{pid}_CLNF_pose.txt",
    "face_landmarks": "{pid}_CLNF_features.txt",
    "covarep": "{pid}_COVAREP.csv",
    "formant": "{pid}_FORMANT.csv",
}


class DaicParams(Params):
    splits: list[Literal["train", "dev", "test"]] = Field(default_factory=lambda: ["train", "dev", "test"])
    include_unlabelled: bool = False
    ptsd_bins: list[float] = Field(default_factory=lambda: list(PTSD_BINS))


def read_split_file(path: Path) -> pd.DataFrame:
    """Read one AVEC2017 split file, normalising the id and PHQ column names.

    Raises:
        DatasetError: naming the file and the column when the layout is wrong.
    """
    try:
        df = pd.read_csv(path, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise DatasetError(f"{path}: cannot read split file: {err}") from None
    df.columns = [c.strip() for c in df.columns]
    ren = {c: "Participant_ID" for c in df.columns if c.lower() == "participant_id"}
    ren.update({"PHQ_Binary": "PHQ8_Binary", "PHQ_Score": "PHQ8_Score"})
    df = df.rename(columns=ren)
    if "Participant_ID" not in df.columns:
        raise DatasetError(f"{path}: no Participant_ID column (found {list(df.columns)})")
    return check_label_file(df, path, ("Participant_ID", "PHQ8_Score", "PHQ8_Binary"))


@DATASETS.register("daic-woz")
class DaicWoz(DatasetAdapter):
    """DAIC-WOZ sessions with their AVEC2017 splits and PHQ-8 labels."""

    name = "daic-woz"
    # AVEC 2017 / DAIC-WOZ documentation: Gender 0 = female, 1 = male
    codebook = {"Gender": {"0": "female", "1": "male"}}
    Params = DaicParams

    def _labels_by_split(self) -> dict[str, pd.DataFrame]:
        out = {}
        for split in self.params.splits:
            path = self.root / SPLIT_FILES[split]
            if not path.exists():
                self.problems.append(f"{path.name} not found in {self.root}; no {split} split")
                continue
            df = read_split_file(path)
            if split == "test" and "PHQ8_Score" not in df.columns:
                full = self.root / FULL_TEST_FILE
                if full.exists():
                    labels = read_split_file(full).drop(columns=["Gender"], errors="ignore")
                    df = df.merge(labels, on="Participant_ID", how="left")
                    self.problems.append(f"test labels ({', '.join(labels.columns.drop('Participant_ID'))}) read "
                                         f"from {FULL_TEST_FILE}; {SPLIT_FILES['test']} has none")
                else:
                    self.problems.append(f"{FULL_TEST_FILE} not found: test sessions have no labels")
            out[split] = df
        return out

    def _load(self) -> list[Sample]:
        by_split = self._labels_by_split()
        seen: dict[int, str] = {}
        samples: list[Sample] = []
        for split, df in by_split.items():
            for row in df.to_dict("records"):
                pid = int(row.pop("Participant_ID"))
                if pid in seen:
                    raise DatasetError(f"participant {pid} is listed in both the {seen[pid]} and "
                                       f"the {split} split files of {self.root}")
                seen[pid] = split
                folder = self.root / f"{pid}_P"
                if not folder.is_dir():
                    why = (" (known to be excluded from the public release)" if pid in KNOWN_EXCLUDED
                           else "")
                    self.problems.append(f"participant {pid} ({split}) has no folder {folder.name}{why}")
                    continue
                samples.append(self._sample(pid, folder, split, row))
        if self.params.include_unlabelled:
            for folder in sorted(self.root.glob("*_P")):
                pid_s = folder.name.removesuffix("_P")
                if pid_s.isdigit() and int(pid_s) not in seen:
                    samples.append(self._sample(int(pid_s), folder, None, {}))
        if not samples:
            raise DatasetError(f"daic-woz: no sessions found under {self.root} "
                               f"(expected {{pid}}_P folders and {SPLIT_FILES['train']})")
        return samples

    def _sample(self, pid: int, folder: Path, split: str | None, labels: dict) -> Sample:
        media = {}
        for role, pattern in MEDIA.items():
            path = folder / pattern.format(pid=pid)
            if path.exists():
                media[role] = path
        if "audio" not in media or "transcript" not in media:
            missing = [r for r in ("audio", "transcript") if r not in media]
            self.problems.append(f"participant {pid}: {folder.name} has no {' or '.join(missing)} file")
        if pid in KNOWN_NOTES:
            self.problems.append(f"participant {pid}: {KNOWN_NOTES[pid]} (DAIC-WOZ documentation)")
        clean = {k: (None if isinstance(v, float) and pd.isna(v) else v) for k, v in labels.items()}
        missing_items = [k for k in PHQ8_ITEMS if k in clean and clean[k] is None]
        if missing_items:
            self.problems.append(
                f"participant {pid}: PHQ-8 item(s) {missing_items} missing in the split file")
        return Sample(sample_id=str(pid), subject_id=str(pid), media=media, split=split,
                      labels=add_severity_labels(clean, self.params.ptsd_bins))
