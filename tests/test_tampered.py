"""Every subcommand on a small tampered input: each failure is one `error:` line that names the
file, folder or key at fault — never a bare exception class (`TypeError: …`) or a pointer to
--debug."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from fixtures import folder_configs, write_folder_study

from fusion.cli import main

ROOT = Path(__file__).resolve().parents[1]
IDS = {"a": "low", "b": "high", "c": "low", "d": "high"}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A folder study with log-Mel statistics extracted, a tracked run with its saved model,
    and a sweep config over it: the untouched originals each case copies and damages."""
    tmp = tmp_path_factory.mktemp("tamper_base")
    root = write_folder_study(tmp / "data", IDS)
    extract_cfg, train_cfg = folder_configs(tmp, root, tracking=True)
    assert main(["extract", "--config", str(extract_cfg)]) == 0
    train = yaml.safe_load(train_cfg.read_text())
    train["tracking"]["experiment"] = "exp"
    train_cfg.write_text(yaml.safe_dump(train))
    assert main(["train", "--config", str(train_cfg), "--json", str(tmp / "t.json")]) == 0
    (tmp / "sweep.yaml").write_text(yaml.safe_dump({
        "train": "train.yaml", "overrides": ["cv.scheme=holdout", "cv.test_groups=[subj3]"],
        "space": {"model.params.learner.params.C": {"type": "float", "low": 0.1, "high": 1.0}},
        "folds": 2, "n_trials": 1, "evaluate_best": False, "output_dir": str(tmp / "sweeps"), "objective": "uar"}))
    return tmp


@pytest.fixture
def work(base, tmp_path):
    """A private copy of the base folder with every path in its configs pointing into the copy."""
    dest = tmp_path / "w"
    shutil.copytree(base, dest, symlinks=True)
    for name in ("extract.yaml", "train.yaml", "sweep.yaml", "t.json"):
        path = dest / name
        path.write_text(path.read_text().replace(str(base), str(dest)))
    db = dest / "ml.db"
    with sqlite3.connect(db) as con:  # MLflow records artifact locations as absolute paths
        for table, col in (("experiments", "artifact_location"), ("runs", "artifact_uri")):
            con.execute(f"UPDATE {table} SET {col} = REPLACE({col}, ?, ?)", (str(base), str(dest)))
    return dest


def run_dir(w: Path) -> Path:
    return Path(json.loads((w / "t.json").read_text())["outputs"]["dir"])


def feature_file(w: Path) -> Path:
    (path,) = [p for p in (w / "store").glob("*/logmel-*.parquet") if ".errors." not in p.name]
    return path


def set_metadata(path: Path, change: Callable[[dict], None]) -> None:
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"fusion.features"])
    change(meta)
    pq.write_table(table.replace_schema_metadata({b"fusion.features": json.dumps(meta)}), path)


def write(path: Path, content: str | bytes) -> None:
    path.write_bytes(content if isinstance(content, bytes) else content.encode())


def edit_yaml(path: Path, change: Callable[[dict], None]) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def labels(w: Path) -> Path:
    return w / "data" / "labels.csv"


def data_config(w: Path) -> Path:
    path = w / "data.yaml"
    path.write_text(yaml.safe_dump({"dataset": {"name": "folder", "root": str(w / "data")}}))
    return path


# (case id, what to damage, the command's arguments in terms of the copy, text the error must hold)
CASES: list[tuple[str, Callable[[Path], None], Callable[[Path], list[str]], str]] = [
    ("demo: a corpus field of the wrong type",
     lambda w: None, lambda w: ["demo", "--set", "corpus.n_sessions=many"], "corpus.n_sessions"),
    ("demo: more folds than any class has samples",
     lambda w: None,
     lambda w: ["demo", "--set", f"extract.dataset.root={w / 'demo'}", "--set", "corpus.n_sessions=4",
                "--set", f"extract.store={w / 'dstore'}", "--set", "corpus.questions=2",
                "--set", f"train.output_dir={w / 'dout'}", "--set", "train.tracking.enabled=false",
                "--set", "train.cv.n_splits=4", "--set", "train.cv.n_repeats=1"],
     "target depression: cannot make 4 class-stratified folds"),
    ("extract: labels.csv without subject_id",
     lambda w: pd.read_csv(labels(w)).drop(columns="subject_id").to_csv(labels(w), index=False),
     lambda w: ["extract", "--config", str(w / "extract.yaml")], "labels.csv"),
    ("extract: labels.csv is binary",
     lambda w: write(labels(w), b"\x00\xff\xfe\x00garbage"),
     lambda w: ["extract", "--config", str(w / "extract.yaml")], "labels.csv"),
    ("extract: the digest cache of the wrong shape",
     lambda w: write(w / "store" / ".source-hashes.json", '["a", 1]'),
     lambda w: ["extract", "--config", str(w / "extract.yaml"), "--set", "features.logmel.extractor.params.n_mels=8"],
     None),
    ("extract: a feature file without sources",
     lambda w: set_metadata(feature_file(w), lambda m: m.pop("sources")),
     lambda w: ["extract", "--config", str(w / "extract.yaml")], None),
    ("extract: an unknown extractor",
     lambda w: None,
     lambda w: ["extract", "--config", str(w / "extract.yaml"), "--set", "features.logmel.extractor.name=nope"],
     "features.logmel.extractor.name"),
    ("extract: an emotion recogniser folder naming an unknown extractor",
     lambda w: (edit_yaml(w / "extract.yaml", lambda d: d["features"].update(
         emo={"extractor": {"name": "emotion", "params": {"model": str(run_dir(w) / "model" / "pitch")}}})),
         (run_dir(w) / "model" / "pitch" / "manifest.json").write_text(
             (run_dir(w) / "model" / "pitch" / "manifest.json").read_text().replace('"logmel"', '"nope"'))),
     lambda w: ["extract", "--config", str(w / "extract.yaml"), "--only", "emo"], "model" + "/pitch"),
    ("extract: an emotion recogniser folder without columns",
     lambda w: (edit_yaml(w / "extract.yaml", lambda d: d["features"].update(
         emo={"extractor": {"name": "emotion", "params": {"model": str(run_dir(w) / "model" / "pitch")}}})),
         (lambda p: p.write_text(json.dumps({k: v for k, v in json.loads(p.read_text()).items() if k != "columns"})))(
             run_dir(w) / "model" / "pitch" / "manifest.json")),
     lambda w: ["extract", "--config", str(w / "extract.yaml"), "--only", "emo"], "model/pitch"),
    ("train: a feature file that is not Parquet",
     lambda w: write(feature_file(w), b"PAR1 not really"),
     lambda w: ["train", "--config", str(w / "train.yaml")], "logmel-"),
    ("train: a feature file without its store metadata",
     lambda w: pq.write_table(pq.read_table(feature_file(w)).replace_schema_metadata(None), feature_file(w)),
     lambda w: ["train", "--config", str(w / "train.yaml")], "logmel-"),
    ("train: store metadata with sources of the wrong type",
     lambda w: set_metadata(feature_file(w), lambda m: m.update(sources=[1, 2])),
     lambda w: ["train", "--config", str(w / "train.yaml")], "sources"),
    ("train: a label column missing",
     lambda w: pd.read_csv(labels(w)).drop(columns="pitch").to_csv(labels(w), index=False),
     lambda w: ["train", "--config", str(w / "train.yaml")], "pitch"),
    ("train: a label value that is not a class",
     lambda w: pd.read_csv(labels(w)).assign(pitch="loud").to_csv(labels(w), index=False),
     lambda w: ["train", "--config", str(w / "train.yaml")], "pitch"),
    ("train: categorical grid values that are lists",
     lambda w: None,
     lambda w: ["train", "--config", str(w / "train.yaml"), "--set", "model.params.learner.grid={C: [[1], [2]]}"],
     "grid"),
    ("train: an extract section that is a list",
     lambda w: edit_yaml(w / "train.yaml", lambda d: d.update(extract=[1])),
     lambda w: ["train", "--config", str(w / "train.yaml")], "extract"),
    ("train: a config that is not UTF-8",
     lambda w: write(w / "train.yaml", b"modalities: \xff\xfe"),
     lambda w: ["train", "--config", str(w / "train.yaml")], "train.yaml"),
    ("train: a tracking database that is not SQLite",
     lambda w: write(w / "ml.db", b"garbage" * 100),
     lambda w: ["train", "--config", str(w / "train.yaml")], "ml.db"),
    ("sweep: a study database that is not SQLite",
     lambda w: ((w / "sweeps").mkdir(exist_ok=True), write(w / "sweeps" / "sweep.db", b"not a database" * 100)),
     lambda w: ["sweep", "--config", str(w / "sweep.yaml")], "sweep.db"),
    ("sweep: a space that is a list",
     lambda w: edit_yaml(w / "sweep.yaml", lambda d: d.update(space=[1, 2])),
     lambda w: ["sweep", "--config", str(w / "sweep.yaml")], "space"),
    ("sweep: a categorical choice of lists in a learner's parameter",
     lambda w: edit_yaml(w / "sweep.yaml", lambda d: d.update(space={
         "model.params.learner.params.C": {"type": "categorical", "choices": [[1], [2]]}})),
     lambda w: ["sweep", "--config", str(w / "sweep.yaml")], "model.params.learner.params.C"),
    ("compare: a run's metrics.json garbage",
     lambda w: write(next((w / "art").rglob("metrics.json")), "{"),
     lambda w: ["compare", "--experiment", "exp", "--tracking-uri", f"sqlite:///{w / 'ml.db'}",
                "--out", str(w / "cmp")], "exp"),
    ("compare: a tracking database that is not SQLite",
     lambda w: write(w / "ml.db", b"garbage" * 100),
     lambda w: ["compare", "--experiment", "exp", "--tracking-uri", f"sqlite:///{w / 'ml.db'}",
                "--out", str(w / "cmp")], "ml.db"),
    ("compare: a filter that is not one",
     lambda w: None,
     lambda w: ["compare", "--experiment", "exp", "--tracking-uri", f"sqlite:///{w / 'ml.db'}",
                "--filter", "tags.x ===", "--out", str(w / "cmp")], "--filter"),
    ("report: a model manifest naming an unknown model",
     lambda w: (lambda p: p.write_text(p.read_text().replace('"early-fusion"', '"nope"')))(
         run_dir(w) / "model" / "pitch" / "manifest.json"),
     lambda w: ["report", "--run", str(run_dir(w)), "--participant", "a", "--no-pdf", "--no-track",
                "--out", str(w / "r")], "model/pitch"),
    ("report: predictions without their probabilities",
     lambda w: pd.read_csv(run_dir(w) / "pitch_predictions.csv")[["sample_id", "y"]].to_csv(
         run_dir(w) / "pitch_predictions.csv", index=False),
     lambda w: ["report", "--run", str(run_dir(w)), "--cohort", "--no-pdf", "--no-track", "--out", str(w / "r")],
     "pitch_predictions.csv"),
    ("report: a run config that is not a train config",
     lambda w: write(run_dir(w) / "config.yaml", "just: text\n"),
     lambda w: ["report", "--run", str(run_dir(w)), "--participant", "a", "--no-pdf", "--no-track",
                "--out", str(w / "r")], "config.yaml"),
    ("data describe: a labels file with duplicated ids",
     lambda w: pd.concat([pd.read_csv(labels(w))] * 2).to_csv(labels(w), index=False),
     lambda w: ["data", "describe", "--config", str(data_config(w))], "labels.csv"),
    ("data vad-mixture: a norms file missing its columns",
     lambda w: (write(w / "norms.csv", "Word,foo\nhappy,1\n"),
                pd.read_csv(labels(w)).assign(valence=5, arousal=5).to_csv(labels(w), index=False)),
     lambda w: ["data", "vad-mixture", "--config", str(data_config(w)), "--columns", "valence", "arousal",
                "--norms", str(w / "norms.csv"), "--out", str(w / "mix.csv")], "norms.csv"),
    ("features ls: an errors table that is not Parquet",
     lambda w: write(feature_file(w).with_name(feature_file(w).stem + ".errors.parquet"), b"garbage"),
     lambda w: ["features", "ls", "--store", str(w / "store")], None),
    ("features ls: the digest cache of the wrong shape",
     lambda w: write(w / "store" / ".source-hashes.json", '{"x": 5}'),
     lambda w: ["features", "ls", "--store", str(w / "store")], None),
    ("features show: store metadata that is not JSON",
     lambda w: pq.write_table(pq.read_table(feature_file(w)).replace_schema_metadata(
         {b"fusion.features": b"{oops"}), feature_file(w)),
     lambda w: ["features", "show", "logmel", "--store", str(w / "store")], "logmel-"),
    ("features show: an errors table with other columns",
     lambda w: pq.write_table(pa.table({"x": [1]}), feature_file(w).with_name(
         feature_file(w).stem + ".errors.parquet")),
     lambda w: ["features", "show", "logmel", "--store", str(w / "store")], None),
]

BARE = re.compile(r"^error: (?:[A-Za-z_.]+\.)?[A-Z][A-Za-z]*(?:Error|Exception|Warning)\b")


@pytest.mark.parametrize(("name", "damage", "args", "named"), CASES, ids=[c[0] for c in CASES])
def test_a_tampered_input_gets_an_error_naming_what_is_wrong(work, name, damage, args, named, capsys):
    damage(work)
    capsys.readouterr()
    code = main(args(work))
    out, err = capsys.readouterr()
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    if named is None:  # damaged bookkeeping is rebuilt or reported, the command goes on
        assert code == 0 and not lines, err
        assert "damaged" in (out + err)
        return
    assert code in (1, 2) and lines, (out, err)
    for line in lines:
        assert not BARE.match(line), line
        assert "rerun with --debug" not in line, line
    assert any(named in line for line in lines), lines
