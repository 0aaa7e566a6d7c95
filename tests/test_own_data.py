"""Your own data without reading the source: `fusion data init` on a folder of recordings, and
the shipped worked example (configs/extract/folder.yaml, configs/train/folder_emotion.yaml)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from fixtures import tone, write_wav

from fusion.cli import main

ROOT = Path(__file__).resolve().parents[1]
EMOTIONS = {"neutral": 110.0, "happy": 220.0, "sad": 95.0, "angry": 300.0}


def recordings(folder: Path, people: int = 6, flat: bool = False) -> Path:
    """One clip per person and emotion (pitch carries the emotion), in a folder per person or flat."""
    for i in range(people):
        for j, (emotion, f0) in enumerate(EMOTIONS.items()):
            name = f"p{i:02d}_{emotion}.wav" if flat else f"person{i:02d}/{emotion}.wav"
            write_wav(folder / name, tone(0.7, f0 * (1 + 0.03 * i), seed=10 * i + j))
    return folder


@pytest.mark.slow
def test_data_init_writes_labels_and_configs_that_run_once_filled_in(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study = recordings(tmp_path / "study")
    (study / "person00" / "neutral.txt").write_text("a quiet  day\n")
    assert main(["data", "init", "study", "--json", "init.json"]) == 0
    out = capsys.readouterr().out
    r = json.loads((tmp_path / "init.json").read_text())
    assert r["n_samples"] == 24 and r["n_subjects"] == 6 and r["roles"] == ["audio", "text"]
    assert "fill the 'label' column" in out and "then: fusion extract --config configs/extract/study.yaml" in out
    labels = pd.read_csv(study / "labels.csv", dtype=str)
    assert list(labels.columns) == ["sample_id", "subject_id", "audio", "text", "split", "label"]
    row = labels.set_index("sample_id").loc["person00/neutral"]
    assert row["subject_id"] == "person00" and row["audio"] == "person00/neutral.wav" and row["text"] == "a quiet day"
    # nothing is overwritten
    assert main(["data", "init", "study"]) == 2
    assert "exist(s) already; nothing was written" in capsys.readouterr().err
    # filled in as told: the labels, the classes, and (for a test this small) fewer folds
    labels["label"] = labels["sample_id"].str.split("/").str[1]
    labels.to_csv(study / "labels.csv", index=False)
    train = yaml.safe_load((tmp_path / "configs/train/study.yaml").read_text())
    train["targets"]["label"]["classes"] = list(EMOTIONS)
    (tmp_path / "configs/train/study.yaml").write_text(yaml.safe_dump(train))
    assert main(["extract", "--config", "configs/extract/study.yaml", "--set", "progress=false",
                 "--only", "egemaps", "--only", "text"]) == 0
    assert main(["train", "--config", "configs/train/study.yaml", "--set", "modalities={egemaps: [{features: "
                 "egemaps}]}", "--set", "cv.n_splits=3", "--set", "cv.n_repeats=1", "--set", "evaluation.n_bootstrap=50",
                 "--set", "tracking.enabled=false", "--json", "train.json"]) == 0
    s = json.loads((tmp_path / "train.json").read_text())
    assert s["targets"]["label"]["n_subjects"] == 6 and s["targets"]["label"]["metrics"]["model"]["uar"]["mean"] > 0.5


def test_data_init_names_what_it_cannot_do(tmp_path, capsys):
    flat = recordings(tmp_path / "flat", people=2, flat=True)
    assert main(["data", "init", str(flat), "--configs", str(tmp_path / "c"), "--json", str(tmp_path / "r.json")]) == 0
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["n_subjects"] == r["n_samples"] == 8  # flat: each sample its own subject, and said so
    assert any("each sample is its own subject" in t for t in r["todo"])
    (flat / "labels.csv").unlink()
    assert main(["data", "init", str(flat), "--configs", str(tmp_path / "d"), "--subject-pattern", r"p(\d+)_"]) == 0
    assert set(pd.read_csv(flat / "labels.csv", dtype=str)["subject_id"]) == {"00", "01"}
    (flat / "labels.csv").unlink()
    capsys.readouterr()
    assert main(["data", "init", str(flat), "--configs", str(tmp_path / "e"), "--subject-pattern", "q(\\d+)"]) == 2
    assert "finds no subject in 8 path(s)" in capsys.readouterr().err
    assert main(["data", "init", str(flat), "--subject-pattern", "("]) == 2
    assert "not a regular expression" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["data", "init", str(tmp_path / "empty")]) == 2
    assert "no media found" in capsys.readouterr().err


@pytest.mark.slow
def test_the_shipped_folder_example_runs_on_a_folder_in_its_layout(tmp_path):
    """configs/extract/folder.yaml and configs/train/folder_emotion.yaml as shipped, on a folder
    written in the layout their comments describe (audio/, a text column for some samples)."""
    root = tmp_path / "my_study"
    rows = []
    for i in range(6):
        for j, (emotion, f0) in enumerate(EMOTIONS.items()):
            sid = f"p{i:02d}_{emotion}"
            write_wav(root / "audio" / f"{sid}.wav", tone(0.7, f0 * (1 + 0.03 * i), seed=10 * i + j))
            rows.append({"sample_id": sid, "subject_id": f"p{i:02d}", "audio": f"audio/{sid}.wav",
                         "text": f"i feel {emotion} today" if i % 2 else "", "emotion": emotion})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    common = ["--set", f"extract.dataset.root={root}", "--set", f"extract.store={tmp_path / 'store'}"]
    assert main(["extract", "--config", str(ROOT / "configs/extract/folder.yaml"), "--set", f"dataset.root={root}",
                 "--set", f"store={tmp_path / 'store'}", "--set", "progress=false"]) == 0
    assert main(["train", "--config", str(ROOT / "configs/train/folder_emotion.yaml"), *common,
                 "--set", "cv.n_splits=3", "--set", "cv.n_repeats=1", "--set", "evaluation.n_bootstrap=50",
                 "--set", "tracking.enabled=false", "--set", f"output_dir={tmp_path / 'out'}",
                 "--json", str(tmp_path / "s.json")]) == 0
    t = json.loads((tmp_path / "s.json").read_text())["targets"]["emotion"]
    assert t["n_samples"] == 24 and t["modality_available"]["text"] == 12 and t["modality_available"]["egemaps"] == 24
