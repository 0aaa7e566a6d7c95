"""The synthetic demo corpus: exact DAIC-WOZ layout, determinism, real pitch, sane labels."""

from __future__ import annotations

import filecmp

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from fusion.datasets.daic_woz import PHQ8_ITEMS, DaicWoz
from fusion.synthetic.demo_corpus import AU_C, AU_R, GAZE, POSE, generate_demo_corpus

SPLIT_COLUMNS = ["Participant_ID", "PHQ8_Binary", "PHQ8_Score", "Gender", *PHQ8_ITEMS,
                 "PTSD Severity", "PCL-C (PTSD)"]
CLNF = {
    "CLNF_AUs.txt": ["frame", "timestamp", "confidence", "success", *AU_R, *AU_C],
    "CLNF_gaze.txt": ["frame", "timestamp", "confidence", "success", *GAZE],
    "CLNF_pose.txt": ["frame", "timestamp", "confidence", "success", *POSE],
}


def test_daic_column_layouts(demo_corpus_master):
    root = demo_corpus_master
    for split in ("train", "dev"):
        df = pd.read_csv(root / f"{split}_split_Depression_AVEC2017.csv")
        assert list(df.columns) == SPLIT_COLUMNS
    assert CLNF["CLNF_AUs.txt"][4:] == [
        "AU01_r", "AU02_r", "AU04_r", "AU05_r", "AU06_r", "AU09_r", "AU10_r", "AU12_r", "AU14_r",
        "AU15_r", "AU17_r", "AU20_r", "AU25_r", "AU26_r", "AU04_c", "AU12_c", "AU15_c", "AU23_c",
        "AU28_c", "AU45_c"]
    folders = sorted(p.name for p in root.glob("*_P"))
    assert folders == ["300_P", "301_P", "302_P", "303_P", "304_P", "305_P"]
    for folder in folders:
        pid = folder[:-2]
        t = pd.read_csv(root / folder / f"{pid}_TRANSCRIPT.csv", sep="\t")
        assert list(t.columns) == ["start_time", "stop_time", "speaker", "value"]
        assert set(t["speaker"]) == {"Ellie", "Participant"}
        assert (t["stop_time"] > t["start_time"]).all() and t["start_time"].is_monotonic_increasing
        assert t["value"].str.len().gt(0).all()
        info = sf.info(root / folder / f"{pid}_AUDIO.wav")
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert info.duration >= t["stop_time"].max()
        for name, columns in CLNF.items():
            path = root / folder / f"{pid}_{name}"
            header = path.read_text(encoding="utf-8").splitlines()[0]
            assert header == ", ".join(columns)  # the DAIC ", " separator
            df = pd.read_csv(path, sep=", ", engine="python")
            assert list(df.columns) == columns
            assert (df["frame"].diff().dropna() == 1).all()
            assert set(df["success"].unique()) <= {0, 1} and df["success"].mean() > 0.6
            assert df["confidence"].between(0, 1).all()
            failed = df[df["success"] == 0]
            assert (failed[columns[4:]] == 0).all().all()  # OpenFace writes zeros when tracking fails
            assert df["timestamp"].max() == pytest.approx(info.duration, abs=0.1)


def test_labels_are_consistent(demo_corpus_master):
    ds = DaicWoz(demo_corpus_master)
    labels = ds.labels()
    assert len(labels) == 6 and set(labels["split"]) == {"train", "dev"}
    assert (labels["PHQ8_Binary"] == (labels["PHQ8_Score"] >= 10).astype(int)).all()
    assert (labels[PHQ8_ITEMS].sum(axis=1) == labels["PHQ8_Score"]).all()
    assert labels[PHQ8_ITEMS].isin([0, 1, 2, 3]).all().all()
    assert labels["PTSD Severity"].between(17, 85).all()
    assert (labels["PCL-C (PTSD)"] == (labels["PTSD Severity"] >= 44).astype(int)).all()
    assert ds.problems == ["test_split_Depression_AVEC2017.csv not found in "
                           f"{demo_corpus_master}; no test split"]


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a, _ = generate_demo_corpus(tmp_path / "a", n_sessions=3, seed=11, questions=2)
    b, _ = generate_demo_corpus(tmp_path / "b", n_sessions=3, seed=11, questions=2)
    c, _ = generate_demo_corpus(tmp_path / "c", n_sessions=3, seed=12, questions=2)
    files = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    assert len(files) == 3 * 5 + 4
    match, mismatch, errors = filecmp.cmpfiles(a, b, files, shallow=False)
    assert not mismatch and not errors
    assert not filecmp.cmp(a / "300_P" / "300_AUDIO.wav", c / "300_P" / "300_AUDIO.wav", shallow=False)


def test_larger_corpus_extends_smaller_one_and_is_reused(tmp_path):
    small, _ = generate_demo_corpus(tmp_path / "s", n_sessions=2, seed=5, questions=2)
    big, reused = generate_demo_corpus(tmp_path / "b", n_sessions=3, seed=5, questions=2)
    assert not reused
    assert filecmp.cmp(small / "301_P" / "301_AUDIO.wav", big / "301_P" / "301_AUDIO.wav", shallow=False)
    _, reused = generate_demo_corpus(tmp_path / "b", n_sessions=3, seed=5, questions=2)
    assert reused
    (big / "302_P" / "302_CLNF_pose.txt").unlink()
    _, reused = generate_demo_corpus(tmp_path / "b", n_sessions=3, seed=5, questions=2)
    assert not reused and (big / "302_P" / "302_CLNF_pose.txt").exists()


def test_opensmile_finds_real_pitch_in_participant_speech(demo_corpus_master):
    import opensmile

    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02)
    latents = pd.read_csv(demo_corpus_master / "demo_latents.csv").set_index("pid")
    for pid, lat in latents.iterrows():
        t = pd.read_csv(demo_corpus_master / f"{pid}_P" / f"{pid}_TRANSCRIPT.csv", sep="\t")
        turn = t[t["speaker"] == "Participant"].iloc[0]
        f = smile.process_file(str(demo_corpus_master / f"{pid}_P" / f"{pid}_AUDIO.wav"),
                               start=turn["start_time"], end=turn["stop_time"]).iloc[0]
        f0_hz = 27.5 * 2 ** (f["F0semitoneFrom27.5Hz_sma3nz_amean"] / 12)
        assert f["VoicedSegmentsPerSec"] > 0.5
        if lat["gender"] == 1:
            assert 80 < f0_hz < 190, (pid, f0_hz)
        else:
            assert 150 < f0_hz < 320, (pid, f0_hz)
        # outside speech there is only the quiet noise floor
        silence = smile.process_file(str(demo_corpus_master / f"{pid}_P" / f"{pid}_AUDIO.wav"),
                                     start=0.0, end=0.4).iloc[0]
        assert silence["loudness_sma3_amean"] < 0.2 * f["loudness_sma3_amean"]


def test_latent_severity_shapes_each_modality(tmp_path):
    """Across 40 sessions, depression severity moves prosody, wording and the face."""
    root, _ = generate_demo_corpus(tmp_path / "c", n_sessions=40, seed=3, questions=3, n_jobs=2)
    lat = pd.read_csv(root / "demo_latents.csv").set_index("pid")
    rows = []
    for pid in lat.index:
        t = pd.read_csv(root / f"{pid}_P" / f"{pid}_TRANSCRIPT.csv", sep="\t")
        words = " ".join(t.loc[t["speaker"] == "Participant", "value"])
        negative = sum(w in words for w in ("down", "hopeless", "failure", "tired", "worthless",
                                            "empty", "sad", "interest", "sleep"))
        au = pd.read_csv(root / f"{pid}_P" / f"{pid}_CLNF_AUs.txt", sep=", ", engine="python")
        au = au[au["success"] == 1]
        rows.append({"pid": pid, "negative_words": negative, "AU12": au["AU12_r"].mean(),
                     "AU15": au["AU15_r"].mean()})
    df = pd.DataFrame(rows).set_index("pid").join(lat)
    assert df["negative_words"].corr(df["d"], method="spearman") > 0.3
    assert df["AU15"].corr(df["d"], method="spearman") > 0.3
    assert df["AU12"].corr(df["d"], method="spearman") < -0.2
    assert 0.15 < (df["phq8"] >= 10).mean() < 0.5
    assert df["masked"].sum() >= 1


def test_the_interviewer_reacts_to_what_the_participant_said(tmp_path):
    """As in DAIC-WOZ, Ellie's follow-ups depend on the answers: empathy only right after an
    answer with negative or trauma-related words, praise only after positive ones."""
    from fusion.synthetic.demo_corpus import ELLIE_EMPATHY, ELLIE_PRAISE, FILLERS, NEGATIVE, POSITIVE, TRAUMA

    def phrase(text: str) -> str:
        text = text.replace(" <laughter>", "")
        filler = next((f for f in FILLERS if text.startswith(f + " ")), None)
        return text[len(filler) + 1:] if filler else text

    root, _ = generate_demo_corpus(tmp_path / "c", n_sessions=12, seed=2, questions=6)
    negative, positive = set(NEGATIVE) | set(TRAUMA), set(POSITIVE)
    seen = {"empathy": 0, "praise": 0}
    for transcript in sorted(root.glob("*_P/*_TRANSCRIPT.csv")):
        rows = pd.read_csv(transcript, sep="\t")
        answer: set[str] = set()
        for speaker, text in zip(rows["speaker"], rows["value"], strict=True):
            if speaker == "Participant":
                answer.add(phrase(text))
                continue
            if text in ELLIE_EMPATHY:
                seen["empathy"] += 1
                assert answer & negative, f"{transcript}: empathy after {answer}"
            elif text in ELLIE_PRAISE:
                seen["praise"] += 1
                assert answer & positive and not answer & negative, f"{transcript}: praise after {answer}"
            answer = set()
    assert seen["empathy"] > 5 and seen["praise"] > 5


def test_the_limiter_keeps_quiet_samples_and_never_reaches_full_scale():
    from fusion.synthetic.demo_corpus import LIMIT_KNEE, limit

    x = np.linspace(-3, 3, 6001)
    y = limit(x)
    quiet = np.abs(x) <= LIMIT_KNEE
    assert np.array_equal(y[quiet], x[quiet]) and np.abs(y).max() < 0.99
    assert np.all(np.diff(y) >= 0)  # monotone: no fold-back


@pytest.mark.slow
def test_the_demo_corpus_is_clean(tmp_path):
    """`make demo`'s 60 sessions: no recording the extractors would call clipped (or anything else)."""
    import soundfile as sf

    from features.audio import check_signal
    from fusion.synthetic.demo_corpus import generate_demo_corpus

    root, _ = generate_demo_corpus(tmp_path / "demo", n_sessions=60, seed=0)
    warnings: list[str] = []
    for path in sorted(root.glob("*_P/*_AUDIO.wav")):
        check_signal(sf.read(path, dtype="float32")[0], path, warnings)
    assert warnings == []
