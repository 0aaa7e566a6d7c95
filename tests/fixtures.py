"""Helpers the tests share (pytest fixtures are in conftest.py): audio writers, a tiny
extractor for the store and runner, and writers of small corpora in the exact native layouts of
licence-restricted datasets (each reproduces the distribution's file names, separators, column
spellings and known quirks, with made-up content).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from features.audio import cut_segments, load_audio
from features.base import Extractor, Params, feature_frame
from fusion.synthetic.emotic_corpus import mat_cell, mat_struct


def write_wav(path: Path, signal: np.ndarray, sr: int = 16_000, subtype: str = "PCM_16") -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, signal, sr, subtype=subtype)
    return path


def tone(seconds: float, f0: float = 150.0, sr: int = 16_000, seed: int = 0) -> np.ndarray:
    """A harmonic-rich voiced-like tone with a little noise (openSMILE finds its pitch)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 12))
    return (0.2 * x / np.max(np.abs(x)) + 0.001 * rng.normal(size=t.size)).astype(np.float32)


class RmsParams(Params):
    scale: float = 1.0
    delay: float = 0.0
    nan_for: list[str] = []


class RmsExtractor(Extractor):
    """RMS level and peak of each segment, times `scale`; sleeps `delay` s per sample."""

    name = "rms"
    version = "1"
    modality = "audio"
    media = ("audio",)
    Params = RmsParams

    @property
    def feature_names(self):
        return ["rms", "peak"]

    def library_versions(self):
        return {"numpy": np.__version__}

    def process_sample(self, sample, segments):
        path = self.source_files(sample)["audio"]
        signal, sr = load_audio(path)
        spans, chunks, warnings = cut_segments(signal, sr, segments, path)
        values = [[self.params.scale * float(np.sqrt(np.mean(c ** 2))),
                   self.params.scale * float(np.max(np.abs(c)))] for c in chunks]
        time.sleep(self.params.delay)
        if sample.sample_id in self.params.nan_for:
            values[0][1] = float("nan")
        frame = feature_frame(sample.sample_id, spans, np.array(values), self.feature_names)
        frame.attrs["warnings"] = warnings
        return frame


OPENFACE2_COLUMNS = (["frame", "face_id", "timestamp", "confidence", "success"]
                     + [f"gaze_{e}_{a}" for e in (0, 1) for a in "xyz"] + ["gaze_angle_x", "gaze_angle_y"]
                     + ["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]
                     + [f"AU{n:02d}_r" for n in (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45)]
                     + [f"AU{n:02d}_c" for n in (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26,
                                                 28, 45)])


def write_daic_extras(root: Path) -> None:
    """Add DAIC-WOZ files and quirks to a demo corpus: COVAREP / FORMANT (no header),
    CLNF_features, a test split with lower-case `participant_ID`, `full_test_split.csv`, a
    listed-but-excluded session, and a missing PHQ-8 item."""
    rng = np.random.default_rng(0)
    for folder in sorted(root.glob("*_P")):
        pid = folder.name[:-2]
        np.savetxt(folder / f"{pid}_COVAREP.csv", rng.normal(size=(50, 74)), delimiter=",", fmt="%.6f")
        np.savetxt(folder / f"{pid}_FORMANT.csv", rng.uniform(300, 3000, size=(50, 5)), delimiter=",",
                   fmt="%.3f")
        cols = ["frame", "timestamp", "confidence", "success"] + [f"x{i}" for i in range(68)] + [
            f"y{i}" for i in range(68)]
        pd.DataFrame(rng.uniform(0, 1, (5, len(cols))), columns=cols).to_csv(
            folder / f"{pid}_CLNF_features.txt", index=False, sep=",")
    train = root / "train_split_Depression_AVEC2017.csv"
    df = pd.read_csv(train)
    df.loc[0, "PHQ8_Sleep"] = np.nan  # as participant 319 in the real file
    df = pd.concat([df, df.iloc[[0]].assign(Participant_ID=342)])  # listed, excluded from release
    df.to_csv(train, index=False)
    dev = pd.read_csv(root / "dev_split_Depression_AVEC2017.csv")
    test_ids = dev["Participant_ID"].tolist()[:1]
    dev = dev[~dev["Participant_ID"].isin(test_ids)]
    dev.to_csv(root / "dev_split_Depression_AVEC2017.csv", index=False)
    labels = pd.read_csv(root / "demo_latents.csv").set_index("pid")
    pd.DataFrame({"participant_ID": test_ids, "Gender": [1] * len(test_ids)}).to_csv(
        root / "test_split_Depression_AVEC2017.csv", index=False)
    pd.DataFrame({"Participant_ID": test_ids,
                  "PHQ_Binary": [int(labels.loc[i, "phq8"] >= 10) for i in test_ids],
                  "PHQ_Score": [int(labels.loc[i, "phq8"]) for i in test_ids],
                  "Gender": [1] * len(test_ids)}).to_csv(root / "full_test_split.csv", index=False)


def write_edaic(root: Path, pids=(300, 301, 302, 600, 601, 602)) -> Path:
    """E-DAIC: `{pid}_P/` with audio, `_Transcript.csv` (no speaker), `features/` (OpenFace 2.1
    CSV with `", "` separators, `;`-separated openSMILE LLDs), and `labels/*_split.csv`."""
    rng = np.random.default_rng(1)
    rows = []
    for k, pid in enumerate(pids):
        folder = root / f"{pid}_P"
        (folder / "features").mkdir(parents=True)
        write_wav(folder / f"{pid}_AUDIO.wav", tone(6.0, f0=120 + 10 * k, seed=k))
        pd.DataFrame({"Start_Time": [0.5, 2.0, 4.0], "End_Time": [1.8, 3.6, 5.5],
                      "Text": ["i feel okay", "work has been hard lately", "i sleep badly"],
                      "Confidence": [0.93, 0.88, 0.91]}).to_csv(folder / f"{pid}_Transcript.csv", index=False)
        n = 180
        of = pd.DataFrame(rng.uniform(0, 1, (n, len(OPENFACE2_COLUMNS))), columns=OPENFACE2_COLUMNS)
        of["frame"], of["face_id"], of["timestamp"] = np.arange(1, n + 1), 0, np.arange(n) / 30
        of["confidence"], of["success"] = 0.98, 1
        of.to_csv(folder / "features" / f"{pid}_OpenFace2.1.0_Pose_gaze_AUs.csv", index=False, sep=",")
        text = (folder / "features" / f"{pid}_OpenFace2.1.0_Pose_gaze_AUs.csv").read_text()
        (folder / "features" / f"{pid}_OpenFace2.1.0_Pose_gaze_AUs.csv").write_text(text.replace(",", ", "))
        lld = pd.DataFrame(rng.normal(size=(60, 3)), columns=["Loudness_sma3", "alphaRatio_sma3",
                                                                "F0semitoneFrom27.5Hz_sma3nz"])
        lld.insert(0, "frameTime", np.arange(60) / 100)
        lld.insert(0, "name", "'unknown'")
        lld.to_csv(folder / "features" / f"{pid}_OpenSMILE2.3.0_egemaps.csv", sep=";", index=False)
        score = int(rng.integers(0, 25))
        sev = int(rng.integers(17, 86))
        rows.append({"Participant_ID": pid, "Gender": "male" if k % 2 else "female",
                     "PHQ_Binary": int(score >= 10), "PHQ_Score": score,
                     "PCL-C (PTSD)": int(sev >= 44), "PTSD Severity": sev})
    labels = pd.DataFrame(rows)
    (root / "labels").mkdir()
    for split, idx in (("train", [0, 1, 3]), ("dev", [2, 4]), ("test", [5])):
        labels.iloc[idx].to_csv(root / "labels" / f"{split}_split.csv", index=False)
    detailed = labels[["Participant_ID"]].copy()
    detailed["PHQ_8Total"] = labels["PHQ_Score"]
    detailed["PHQ_8NoInterest"] = (labels["PHQ_Score"] // 8).clip(0, 3)
    detailed.to_csv(root / "labels" / "Detailed_PHQ8_Labels.csv", index=False)
    return root




def write_emotic_mat(root: Path) -> Path:
    """`Annotations/Annotations.mat` with `train`, `val`, `test` struct arrays in EMOTIC's
    field layout, and the images under `emotic/{folder}/`."""
    from scipy.io import savemat

    def image(filename, folder, persons, w=640, h=480):
        img = np.zeros((1, 1), dtype=[(k, "O") for k in ("filename", "folder", "image_size",
                                                          "original_database", "person")])
        rec = img[0, 0]
        rec["filename"], rec["folder"] = filename, folder
        rec["image_size"] = mat_struct(n_col=float(w), n_row=float(h))
        rec["original_database"] = mat_struct(name="mscoco", info=mat_struct(image_id=1.0))
        rec["person"] = persons
        (root / "emotic" / folder).mkdir(parents=True, exist_ok=True)
        (root / "emotic" / folder / filename).write_bytes(b"\xff\xd8\xff\xd9")
        return img

    def train_person(bbox, cats, vad, gender="Male", age="Adult"):
        return (np.array([bbox], dtype=float), mat_struct(categories=mat_cell(cats)),
                mat_struct(valence=float(vad[0]), arousal=float(vad[1]), dominance=float(vad[2])), gender, age)

    def persons(dtype_names, items):
        arr = np.zeros((1, len(items)), dtype=[(k, "O") for k in dtype_names])
        for i, item in enumerate(items):
            for k, v in zip(dtype_names, item, strict=True):
                arr[0, i][k] = v
        return arr

    train_fields = ("body_bbox", "annotations_categories", "annotations_continuous", "gender", "age")
    test_fields = ("body_bbox", "annotations_categories", "combined_categories", "annotations_continuous",
                   "combined_continuous", "gender", "age")

    def test_person(bbox, combined, vad):
        ann = np.zeros((1, 2), dtype=[("categories", "O")])
        ann[0, 0]["categories"], ann[0, 1]["categories"] = mat_cell(combined[:1]), mat_cell(combined)
        cont = np.zeros((1, 2), dtype=[("valence", "O"), ("arousal", "O"), ("dominance", "O")])
        for j in range(2):
            cont[0, j]["valence"], cont[0, j]["arousal"], cont[0, j]["dominance"] = map(float, vad)
        return (np.array([bbox], dtype=float), ann, mat_cell(combined), cont,
                mat_struct(valence=float(vad[0]), arousal=float(vad[1]), dominance=float(vad[2])),
                "Female", "Kid")

    train = np.concatenate([
        image("a.jpg", "mscoco/images", persons(train_fields, [
            train_person([10, 20, 200, 400], ["Happiness", "Peace"], [8, 4, 7]),
            train_person([300, 50, 700, 470], ["Doubt/Confusion"], [4, 6, 5], "Female", "Teenager")])),
        image("b.jpg", "framesdb/images", persons(train_fields, [
            train_person([0, 0, 100, 100], ["Sadness", "Fatigue", "Suffering"], [2, 3, 3])])),
    ], axis=1)
    val = image("c.jpg", "emodb_small/images", persons(test_fields, [
        test_person([5, 5, 300, 300], ["Engagement", "Anticipation"], [6, 7, 6])]))
    test = image("d.jpg", "ade20k/images", persons(test_fields, [
        test_person([20, 20, 120, 220], ["Fear"], [3, 8, 2])]))
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    savemat(root / "Annotations" / "Annotations.mat", {"train": train, "val": val, "test": test})
    return root


def write_emotic_csv(root: Path) -> Path:
    """The widely used CSV export: train/val/test.csv with list-valued columns."""
    root.mkdir(parents=True, exist_ok=True)
    header = ["Index", "Folder", "Filename", "Image Size", "BBox", "Categorical_Labels",
              "Continuous_Labels", "Gender", "Age"]
    rows = {
        "train": [[0, "mscoco/images", "a.jpg", [640, 480], [10, 20, 200, 400], ["Happiness", "Peace"],
                   [8, 4, 7], "Male", "Adult"],
                  [1, "mscoco/images", "a.jpg", [640, 480], [300, 50, 700, 470], ["Doubt/Confusion"],
                   [4, 6, 5], "Female", "Teenager"]],
        "val": [[0, "emodb_small/images", "c.jpg", [640, 480], [5, 5, 300, 300],
                 ["Engagement", "Anticipation"], [6, 7, 6], "Female", "Kid"]],
        "test": [[0, "ade20k/images", "d.jpg", [640, 480], [20, 20, 120, 220], ["Fear"], [3, 8, 2],
                  "Female", "Kid"]],
    }
    for split, data in rows.items():
        df = pd.DataFrame([[str(v) if isinstance(v, list) else v for v in r] for r in data], columns=header)
        df.to_csv(root / f"{split}.csv", index=False)
        for r in data:
            (root / "emotic" / r[1]).mkdir(parents=True, exist_ok=True)
            (root / "emotic" / r[1] / r[2]).write_bytes(b"\xff\xd8\xff\xd9")
    return root


COMPOUND = ["Fearfully Surprised", "Happily Surprised", "Sadly Surprised", "Disgustedly Surprised",
            "Angrily Surprised", "Sadly Fearful", "Sadly Angry"]


def write_cexpr(root: Path) -> Path:
    """C-EXPR-DB: videos/, per-segment `annotation/{video}.csv` (one-hot expression columns and
    `hh:mm:ss.ms` times, an `Other` column) and per-frame `annotations/{video}.txt`."""
    (root / "videos").mkdir(parents=True)
    (root / "annotation").mkdir()
    (root / "annotations").mkdir()
    for v in ("12-24-1920x1080", "135-24-1920x1080_left", "7"):
        (root / "videos" / f"{v}.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    rows = [("00:00:01.200", "00:00:03.000", "Happily Surprised"),
            ("00:00:04.000", "00:00:06.500", "Sadly Fearful"),
            ("00:00:07.000", "00:00:08.000", "Other")]
    table = pd.DataFrame([{ "Begin Time - hh:mm:ss.ms": b, "End Time - hh:mm:ss.ms": e,
                            **{c: int(c == lab) for c in [*COMPOUND, "Other"]}} for b, e, lab in rows])
    table.to_csv(root / "annotation" / "12-24-1920x1080.csv", index=False)
    table.iloc[:1].to_csv(root / "annotation" / "135-24-1920x1080_left.csv", index=False)
    frames = [-1] * 3 + [0] * 30 + [6] * 15 + [-1] * 2
    (root / "annotations" / "7.txt").write_text(",".join(COMPOUND) + "\n" + "\n".join(map(str, frames)) + "\n")
    return root


def ravdess_tree(root: Path, actors=(1, 2, 3, 4), emotions=(1, 3, 4, 5), seconds: float = 0.6) -> Path:
    """RAVDESS-named WAVs: the emotion is planted as pitch, each actor has their own voice."""
    for a in actors:
        for e in emotions:
            for rep in (1, 2):
                stem = f"03-01-{e:02d}-01-01-{rep:02d}-{a:02d}"
                f0 = 110 * (1 + 0.15 * a) * (1 + 0.35 * (e - 1))
                write_wav(root / f"Actor_{a:02d}" / f"{stem}.wav", tone(seconds, f0, seed=a * 100 + e * 10 + rep))
    return root


def write_configs(tmp_path: Path, corpus: Path, learner: dict, **target_extra) -> tuple[Path, Path]:
    extract = {"dataset": {"name": "ravdess", "root": str(corpus)}, "store": str(tmp_path / "store"),
               "progress": False,
               "features": {"logmel": {"extractor": {"name": "logmel", "params": {"n_mels": 16}}}}}
    train = {"extract": "extract.yaml",
             "modalities": {"acoustic": [{"features": "logmel", "normalise": "speaker", "speaker_min_rows": 4}]},
             "targets": {"emotion": {"label": "emotion", "classes": ["neutral", "happy", "sad", "angry"],
                                     **target_extra}},
             "model": {"name": "early-fusion", "params": {"learner": learner, "calibration": "none"}},
             "cv": {"scheme": "loso", "inner_splits": 3},
             "evaluation": {"n_bootstrap": 20, "save_model": True, "model_dir": str(tmp_path / "models")},
             "tracking": {"enabled": False}, "output_dir": str(tmp_path / "out")}
    (tmp_path / "extract.yaml").write_text(yaml.safe_dump(extract))
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train))
    return tmp_path / "extract.yaml", tmp_path / "train.yaml"


def write_folder_study(root: Path, ids: dict[str, str], seconds: float = 0.8) -> Path:
    """A `folder` dataset: one WAV per sample (sample id → label), pitch carrying the label,
    and `labels.csv`; file names are made from the row number, since ids may hold any character."""
    rows = []
    for i, (sid, label) in enumerate(ids.items()):
        f0 = 120.0 if label == "low" else 260.0
        write_wav(root / "audio" / f"clip{i:03d}.wav", tone(seconds, f0 * (1 + 0.02 * i), seed=i))
        rows.append({"sample_id": sid, "subject_id": f"subj{i}", "audio": f"audio/clip{i:03d}.wav", "pitch": label})
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return root


def folder_configs(tmp: Path, root: Path, tracking: bool = False) -> tuple[Path, Path]:
    """Extract (log-Mel statistics) and train (early fusion of a logistic regression, 2-fold,
    model saved) configs of a `write_folder_study` dataset."""
    extract = {"dataset": {"name": "folder", "root": str(root)}, "store": str(tmp / "store"), "progress": False,
               "features": {"logmel": {"extractor": {"name": "logmel", "params": {"n_mels": 16}}}}}
    train = {"extract": "extract.yaml", "modalities": {"audio": [{"features": "logmel"}]},
             "targets": {"pitch": {"label": "pitch", "classes": ["low", "high"]}},
             "model": {"name": "early-fusion", "params": {"learner": {"name": "logreg", "params": {"C": 1.0}},
                                                          "calibration": "none"}},
             "cv": {"scheme": "grouped-kfold", "n_splits": 2, "n_repeats": 1},
             "evaluation": {"n_bootstrap": 10, "save_model": True},
             "tracking": {"enabled": tracking, "uri": f"sqlite:///{tmp / 'ml.db'}", "artifacts": str(tmp / "art")},
             "output_dir": str(tmp / "out")}
    (tmp / "extract.yaml").write_text(yaml.safe_dump(extract))
    (tmp / "train.yaml").write_text(yaml.safe_dump(train))
    return tmp / "extract.yaml", tmp / "train.yaml"
