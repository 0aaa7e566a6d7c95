"""E-DAIC (Extended DAIC, AVEC 2019) in its native layout.

    root/
      300_P/300_AUDIO.wav  300_Transcript.csv            (Start_Time, End_Time, Text[, Confidence])
      300_P/features/300_OpenFace2.1.0_Pose_gaze_AUs.csv
      300_P/features/300_OpenSMILE2.3.0_egemaps.csv       (`;`-separated: name;frameTime;…)
      300_P/features/300_OpenSMILE2.3.0_mfcc.csv
      labels/train_split.csv  dev_split.csv  test_split.csv
             (Participant_ID, Gender, PHQ_Binary, PHQ_Score, PCL-C (PTSD), PTSD Severity)
      labels/Detailed_PHQ8_Labels.csv                    (when present)

Participant ids 300–492 are the DAIC-WOZ sessions: the subject id is the bare participant
id in both adapters, so a combined dataset groups them as one person.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import Field

from features.base import Params, Sample
from fusion.datasets.base import DATASETS, DatasetAdapter, DatasetError
from fusion.datasets.labels import PTSD_BINS, add_severity_labels, check_label_file

LABEL_FILES = {"train": "train_split.csv", "dev": "dev_split.csv", "test": "test_split.csv"}
DETAILED = "Detailed_PHQ8_Labels.csv"
REQUIRED = ["Participant_ID", "PHQ_Score"]
MEDIA = {
    "audio": "{pid}_AUDIO.wav",
    "transcript": "{pid}_Transcript.csv",
    "face": "features/{pid}_OpenFace2.1.0_Pose_gaze_AUs.csv",
    "egemaps_lld": "features/{pid}_OpenSMILE2.3.0_egemaps.csv",
    "mfcc_lld": "features/{pid}_OpenSMILE2.3.0_mfcc.csv",
}


class EdaicParams(Params):
    splits: list[Literal["train", "dev", "test"]] = Field(default_factory=lambda: ["train", "dev", "test"])
    ptsd_bins: list[float] = Field(default_factory=lambda: list(PTSD_BINS))


def read_label_file(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read labels: {err}") from None
    df.columns = [c.strip() for c in df.columns]
    df = df.rename(columns={c: "Participant_ID" for c in df.columns if c.lower() == "participant_id"})
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
    df = check_label_file(df, path)
    return df.rename(columns={"PHQ_Score": "PHQ8_Score", "PHQ_Binary": "PHQ8_Binary"})


@DATASETS.register("e-daic")
class Edaic(DatasetAdapter):
    """E-DAIC sessions with PHQ-8 and PTSD labels and the shipped OpenFace / openSMILE features."""

    name = "e-daic"
    Params = EdaicParams

    def _load(self) -> list[Sample]:
        labels_dir = self.root / "labels"
        if not labels_dir.is_dir():
            raise DatasetError(f"e-daic: no labels/ folder under {self.root} "
                               f"(expected labels/{LABEL_FILES['train']} …)")
        detailed = None
        if (labels_dir / DETAILED).exists():
            detailed = pd.read_csv(labels_dir / DETAILED, skipinitialspace=True)
            detailed.columns = [c.strip() for c in detailed.columns]
            if "Participant_ID" not in detailed.columns:
                raise DatasetError(f"{labels_dir / DETAILED}: no Participant_ID column")
            detailed = detailed.set_index("Participant_ID")
        seen: dict[int, str] = {}
        samples = []
        for split in self.params.splits:
            path = labels_dir / LABEL_FILES[split]
            if not path.exists():
                self.problems.append(f"labels/{LABEL_FILES[split]} not found; no {split} split")
                continue
            for row in read_label_file(path).to_dict("records"):
                pid = int(row.pop("Participant_ID"))
                if pid in seen:
                    raise DatasetError(f"participant {pid} is in both labels/{LABEL_FILES[seen[pid]]} "
                                       f"and labels/{LABEL_FILES[split]}")
                seen[pid] = split
                if detailed is not None and pid in detailed.index:
                    extra = detailed.loc[pid].to_dict()
                    total = extra.get("PHQ_8Total")
                    if total is not None and not pd.isna(total) and total != row.get("PHQ8_Score"):
                        self.problems.append(f"participant {pid}: {DETAILED} PHQ_8Total {total} differs "
                                             f"from {LABEL_FILES[split]} PHQ_Score {row.get('PHQ8_Score')}")
                    row.update({k: v for k, v in extra.items() if k not in row})
                folder = self.root / f"{pid}_P"
                if not folder.is_dir():
                    self.problems.append(f"participant {pid} ({split}) has no folder {folder.name}")
                    continue
                media = {role: folder / pat.format(pid=pid) for role, pat in MEDIA.items()
                         if (folder / pat.format(pid=pid)).exists()}
                for role in ("audio", "transcript"):
                    if role not in media:
                        self.problems.append(f"participant {pid}: no {MEDIA[role].format(pid=pid)}")
                clean = {k: (None if isinstance(v, float) and pd.isna(v) else v) for k, v in row.items()}
                samples.append(Sample(str(pid), str(pid), media, split=split,
                                      labels=add_severity_labels(clean, self.params.ptsd_bins)))
        if not samples:
            raise DatasetError(f"e-daic: no sessions found under {self.root}")
        return samples
