"""Extractors and adapters on the real public data in $AFFECT_SHARED_DATA."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.audio import OpenSmileExtractor
from features.runner import run_extraction
from features.store import FeatureStore
from fusion.datasets.meld import Meld
from fusion.datasets.ravdess import Ravdess

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def ravdess(shared_data):
    return Ravdess(shared_data / "ravdess_dev")


def test_ravdess_counts_per_emotion_and_actor(ravdess, shared_data):
    labels = ravdess.labels()
    assert len(labels) == 960 and labels["subject_id"].nunique() == 16
    assert labels.groupby("subject_id").size().eq(60).all()
    counts = labels["emotion"].value_counts()
    assert counts["neutral"] == 64 and (counts.drop("neutral") == 128).all()
    manifest = pd.read_csv(shared_data / "ravdess_dev" / "manifest.csv")
    manifest["stem"] = manifest["file"].str.split("/").str[-1].str.removesuffix(".wav")
    merged = labels.merge(manifest.set_index("stem"), left_index=True, right_index=True,
                          suffixes=("", "_m"))
    assert len(merged) == 960
    assert (merged["emotion"] == merged["emotion_m"]).all()
    assert (merged["gender"] == merged["gender_m"]).all()
    assert ravdess.problems == []


def test_egemaps_on_ravdess_clips_gives_plausible_pitch(ravdess, tmp_path):
    # two clips per actor, same emotion and statement, so pitch differences are the voice
    samples = [s for s in ravdess.samples() if s.labels["emotion"] == "neutral"
               and s.labels["statement"] == 1 and s.labels["repetition"] == 1]
    assert len(samples) == 16
    summary = run_extraction(samples, OpenSmileExtractor(), FeatureStore(tmp_path), "ravdess",
                             n_jobs=2, progress=False)
    assert summary.computed == 16 and summary.failed == 0
    df = FeatureStore(tmp_path).read(tmp_path / "ravdess" / f"{summary.feature_set.split('/')[1]}.parquet")
    assert df.shape == (16, 88)
    f0 = 27.5 * 2 ** (df["F0semitoneFrom27.5Hz_sma3nz_amean"].droplevel([1, 2]) / 12)
    gender = pd.Series({s.sample_id: s.labels["gender"] for s in samples})
    male, female = f0[gender == "male"], f0[gender == "female"]
    assert male.between(75, 190).all(), male
    assert female.between(140, 330).all(), female
    assert male.median() < female.median() - 50
    assert np.isfinite(df.to_numpy()).all()


def test_meld_counts_and_dialogue_grouping(shared_data):
    meld = Meld(shared_data / "meld", splits=["train", "dev"])
    samples = meld.samples()
    train = [s for s in samples if s.split == "train"]
    dev = [s for s in samples if s.split == "dev"]
    assert (len(train), len(dev)) == (9989, 1109)
    raw = pd.read_csv(shared_data / "meld" / "train_sent_emo.csv", encoding="utf-8")
    assert len({s.group for s in train}) == raw["Dialogue_ID"].nunique()
    counts = pd.Series([s.labels["emotion"] for s in train]).value_counts()
    pd.testing.assert_series_equal(counts.sort_index(), raw["Emotion"].value_counts().sort_index(),
                                   check_names=False)
    first = train[0]
    assert first.sample_id == "train_dia0_utt0" and first.group == "train_dia0"
    assert "company’s" in first.text  # curly quotes survive
    assert first.duration == pytest.approx(5.672)
    assert meld.problems == []


def test_meld_attaches_utterance_videos_when_present(shared_data, tmp_path):
    import shutil

    shutil.copy(shared_data / "meld" / "dev_sent_emo.csv", tmp_path / "dev_sent_emo.csv")
    (tmp_path / "dev_splits_complete").mkdir()
    (tmp_path / "dev_splits_complete" / "dia0_utt1.mp4").write_bytes(b"\x00")
    samples = {s.sample_id: s for s in Meld(tmp_path, splits=["dev"]).samples()}
    assert samples["dev_dia0_utt1"].media["video"].name == "dia0_utt1.mp4"
    assert samples["dev_dia0_utt0"].media == {}


def test_meld_official_split_keeps_dialogues_apart_while_its_speakers_recur(shared_data, tmp_path):
    from fusion.cli import main

    cfg = tmp_path / "data.yaml"
    cfg.write_text(f"dataset: {{name: meld, root: {shared_data / 'meld'}}}\ntarget: emotion\n"
                   "cv: {scheme: official, train_splits: [train], test_splits: [dev]}\n")
    assert main(["data", "describe", "--config", str(cfg), "--json", str(tmp_path / "d.json")]) == 0
    import json

    (fold,) = json.loads((tmp_path / "d.json").read_text())["folds"]
    assert (fold["n_train"], fold["n_test"], fold["test_groups"]) == (9989, 1109, 114)
    assert fold["subjects_on_both_sides"] > 20  # Ross, Rachel, … are in both, by MELD's design


def test_speaker_normalised_emotion_recognition_on_unseen_ravdess_actors(shared_data, tmp_path):
    """Four actors through `fusion extract` and `fusion train` (leave one actor out): the
    emotion is recognised far above chance (0.125) from eGeMAPS normalised per actor."""
    import json

    import yaml

    from fusion.cli import main

    corpus = tmp_path / "ravdess"
    corpus.mkdir()
    for a in (1, 2, 3, 4):  # a corpus assembled from links to actor folders
        (corpus / f"Actor_{a:02d}").symlink_to(shared_data / "ravdess_dev" / f"Actor_{a:02d}")
    (tmp_path / "extract.yaml").write_text(yaml.safe_dump({
        "dataset": {"name": "ravdess", "root": str(corpus)}, "store": str(tmp_path / "store"), "n_jobs": 2,
        "progress": False, "features": {"egemaps": {"extractor": {"name": "opensmile"}}}}))
    (tmp_path / "train.yaml").write_text(yaml.safe_dump({
        "extract": "extract.yaml", "modalities": {"acoustic": [{"features": "egemaps", "normalise": "speaker"}]},
        "targets": {"emotion": {"label": "emotion_code", "classes": list(range(1, 9))}},
        "model": {"name": "early-fusion", "params": {"learner": {"name": "logreg", "params": {"C": 0.1}},
                                                     "calibration": "none"}},
        "cv": {"scheme": "loso"}, "evaluation": {"n_bootstrap": 50}, "tracking": {"enabled": False},
        "output_dir": str(tmp_path / "out")}))
    assert main(["extract", "--config", str(tmp_path / "extract.yaml")]) == 0
    assert main(["train", "--config", str(tmp_path / "train.yaml"), "--json", str(tmp_path / "s.json")]) == 0
    t = json.loads((tmp_path / "s.json").read_text())["targets"]["emotion"]
    assert t["n_samples"] == 240 and t["n_subjects"] == 4 and t["kind"] == "nominal"
    assert t["classes"] == [str(c) for c in range(1, 9)]
    assert t["metrics"]["model"]["uar"]["mean"] > 0.4, t["metrics"]["model"]["uar"]
