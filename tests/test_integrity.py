"""Integrity of what the commands write and read: run folders and report files never shared,
configs parsed within bounds, bad data refused naming the feature set, images of any bit depth."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from fixtures import folder_configs, write_folder_study

from fusion.cli import main
from fusion.config.load import load_config
from fusion.config.schema import ConfigError, TrainConfig

IDS = {"s 1": "low", "s_1": "high", "s/2": "low", "s_2": "high", "a": "low", "b": "high", "c": "low", "d": "high"}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A folder dataset whose ids sanitise alike (`s 1` / `s_1`, `s/2` / `s_2`), with log-Mel
    statistics extracted."""
    tmp = tmp_path_factory.mktemp("folder")
    root = write_folder_study(tmp / "data", IDS)
    extract_cfg, train_cfg = folder_configs(tmp, root)
    assert main(["extract", "--config", str(extract_cfg)]) == 0
    return tmp, extract_cfg, train_cfg


def test_reports_of_ids_that_sanitise_alike_get_their_own_files(study, capsys):
    tmp, _, train_cfg = study
    assert main(["train", "--config", str(train_cfg), "--json", str(tmp / "t.json")]) == 0
    run = json.loads((tmp / "t.json").read_text())["outputs"]["dir"]
    capsys.readouterr()
    args = ["report", "--run", run, "--no-pdf", "--no-track", "--out", str(tmp / "reports"), "--json",
            str(tmp / "r.json")]
    for sid in ("s 1", "s_1", "s/2", "s_2", "s_1"):  # the last twice: one report
        args += ["--participant", sid]
    assert main(args) == 0
    files = json.loads((tmp / "r.json").read_text())["files"]
    assert len(files) == len(set(files)) == 4 and all(Path(f).is_file() for f in files)
    names = sorted(Path(f).name for f in files)
    assert "participant_s_1.html" in names and "participant_s_2.html" in names  # safe ids keep their name
    for sid in ("s 1", "s/2"):
        page = next(Path(f).read_text() for f in files if f"Participant {sid}<" in Path(f).read_text())
        assert f"Participant {sid}" in page
    # without --out, a run's reports go to a folder of their own
    assert main(["report", "--run", run, "--no-pdf", "--no-track", "--participant", "a", "--json",
                 str(tmp / "d.json")]) == 0
    (written,) = json.loads((tmp / "d.json").read_text())["files"]
    assert Path(written).parent.name == Path(run).name


def test_ids_that_differ_only_in_case_are_refused_naming_them():
    from fusion.report.build import check_unique_names
    from fusion.report.sources import ReportError

    check_unique_names(["s 1", "s_1", "s/2", "s_2"])
    with pytest.raises(ReportError, match="participants 'S1' and 's1' would be written to the same report file"):
        check_unique_names(["S1", "s1"])


def test_untracked_runs_that_start_in_the_same_second_get_their_own_folders(study, monkeypatch):
    import fusion.outputs

    tmp, _, train_cfg = study
    monkeypatch.setattr(fusion.outputs.time, "strftime", lambda fmt, *a: "20261204-120000")
    dirs = []
    for i in range(2):
        assert main(["train", "--config", str(train_cfg), "--set", "evaluation.save_model=false",
                     "--set", f"model.params.learner.params.C={0.5 + i}", "--json", str(tmp / f"u{i}.json")]) == 0
        dirs.append(json.loads((tmp / f"u{i}.json").read_text())["outputs"]["dir"])
    assert dirs[0] != dirs[1] and all(Path(d).name.startswith("20261204-120000-") for d in dirs)
    configs = [yaml.safe_load((Path(d) / "config.yaml").read_text()) for d in dirs]
    assert [c["model"]["params"]["learner"]["params"]["C"] for c in configs] == [0.5, 1.5]  # neither overwritten


def test_a_run_folder_is_never_reused(tmp_path):
    from fusion.outputs import new_run_dir

    first = new_run_dir(tmp_path, "abc")
    with pytest.raises(FileExistsError, match="exists already; it is not overwritten"):
        new_run_dir(tmp_path, "abc")
    assert first.is_dir() and len({new_run_dir(tmp_path) for _ in range(20)}) == 20


def test_a_modality_without_any_sample_is_refused_naming_it_and_its_feature_set(study, capsys):
    tmp, extract_cfg, train_cfg = study
    cfg = yaml.safe_load(extract_cfg.read_text())
    cfg["dataset"]["root"] = str(tmp / "data")
    cfg["features"]["silence"] = {"extractor": {"name": "logmel", "params": {"n_mels": 8}}}
    other = tmp / "extract_empty.yaml"
    other.write_text(yaml.safe_dump(cfg))
    assert main(["extract", "--config", str(other), "--only", "silence"]) == 0
    store = Path(cfg["store"])
    (path,) = [p for p in store.glob("*/silence-*.parquet") if ".errors." not in p.name]
    table = pq.read_table(path)
    pq.write_table(table.slice(0, 0).replace_schema_metadata(table.schema.metadata), path)  # no rows at all
    train = yaml.safe_load(train_cfg.read_text())
    train.update(extract="extract_empty.yaml", modalities={"audio": [{"features": "logmel"}],
                                                           "voice": [{"features": "silence"}]})
    for model in ("early-fusion", "late-fusion"):
        params = {"learner": {"name": "logreg"}}
        if model == "late-fusion":
            params["calibration"] = "none"
        train["model"] = {"name": model, "params": params}
        train["cv"] = {"scheme": "grouped-kfold", "n_splits": 2, "n_repeats": 1, "inner_splits": 2}
        (tmp / "train_empty.yaml").write_text(yaml.safe_dump(train))
        capsys.readouterr()
        assert main(["train", "--config", str(tmp / "train_empty.yaml")]) == 2
        err = capsys.readouterr().err
        assert "modality 'voice' has no features for any sample" in err and "'silence'" in err, (model, err)


def test_a_target_with_one_class_is_named(study, capsys):
    tmp, _, train_cfg = study
    labels = pd.read_csv(tmp / "data" / "labels.csv")
    labels["same"] = "low"
    labels.to_csv(tmp / "data" / "labels.csv", index=False)
    try:
        assert main(["train", "--config", str(train_cfg), "--set", "targets.pitch.label=same"]) == 2
        err = capsys.readouterr().err
        assert "target pitch: all 8 usable samples have the same 'same' ('low')" in err
    finally:
        labels.drop(columns="same").to_csv(tmp / "data" / "labels.csv", index=False)


def test_a_fold_that_trains_on_one_class_is_named():
    from fusion.evaluation.splits import SplitConfig, SplitError, make_folds

    y, groups = np.array([0, 0, 1, 1, 0, 1]), np.array(["a", "a", "b", "b", "c", "c"])
    make_folds(SplitConfig(scheme="loso"), y, groups)  # every training part has both classes
    with pytest.raises(SplitError, match=r"outer fold 0 of repeat 0 trains on samples of one class only \(class 1"):
        make_folds(SplitConfig(scheme="loso"), np.array([0, 0, 1, 1, 1, 1]), groups)
    with pytest.raises(SplitError, match="cannot make 3 class-stratified folds: no class has 3 samples"):
        make_folds(SplitConfig(n_splits=3), np.array([0, 0, 1, 1]), np.array(["a", "b", "c", "d"]))


def test_infinite_feature_values_name_the_feature_set_column_and_samples(tmp_path, capsys):
    root = write_folder_study(tmp_path / "data", {k: v for k, v in list(IDS.items())[4:]})
    extract_cfg, train_cfg = folder_configs(tmp_path, root)
    assert main(["extract", "--config", str(extract_cfg)]) == 0
    (path,) = [p for p in (tmp_path / "store").glob("*/logmel-*.parquet") if ".errors." not in p.name]
    frame = pq.read_table(path)
    df = frame.to_pandas()
    col = [c for c in df.columns if c not in ("sample_id", "start", "end")][3]
    df.loc[df["sample_id"] == "b", col] = np.inf
    import pyarrow as pa

    pq.write_table(pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(frame.schema.metadata), path)
    capsys.readouterr()
    assert main(["train", "--config", str(train_cfg)]) == 2
    err = capsys.readouterr().err
    assert "feature set 'logmel'" in err and "infinite values in 1 column(s)" in err and col in err
    assert "of 1 sample(s) (b)" in err and "Input X contains" not in err


BOMB = """
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


@pytest.mark.parametrize("where", ["field", "learner"])
def test_a_yaml_alias_bomb_is_refused_before_anything_is_built(tmp_path, where):
    body = {"modalities": "{audio: [{features: x}]}", "targets": "{t: {label: x, n_classes: 2}}",
            "model": "{name: late-fusion, params: {learner: {name: logreg}}}"}
    if where == "field":
        body["targets"] = "{t: {label: x, n_classes: 2, names: *i}}"
    else:
        body["model"] = "{name: late-fusion, params: {learner: {name: logreg, params: {C: *i}}}}"
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB + "".join(f"{k}: {v}\n" for k, v in body.items()))
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"expands to more than 200,000 values .* alias bomb"):
        load_config(TrainConfig, path)
    assert time.perf_counter() - t0 < 1.0


def test_recursive_aliases_and_bombs_in_set_values_are_refused(tmp_path):
    path = tmp_path / "rec.yaml"
    path.write_text("modalities: &m {audio: [*m]}\n")
    with pytest.raises(ConfigError, match="recursive YAML alias"):
        load_config(TrainConfig, path)
    bomb = "[" + ",".join(["&a [1,1,1,1,1,1,1,1,1,1]"] + ["*a"] * 9) + "]"
    nested = bomb
    for level in range(6):
        nested = f"[&x{level} " + nested + "," + ",".join([f"*x{level}"] * 9) + "]"
    with pytest.raises(ConfigError, match=r"--set model.params.x=.*expands to more than"):
        load_config(TrainConfig, ROOT / "configs/train/demo_baseline.yaml", [f"model.params.x={nested}"])


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("overrides", "message"), [
    (["cv.seed=3", "cv=5"], "invalid value for 'cv' in --set cv=5"),
    (["cv=5", "cv.seed=3"], "'cv' is a value (5), not a section"),
    (["modalities={}"], "invalid value for 'modalities' in --set modalities={}: Dictionary should have at least 1"),
    (["modalities.egemaps=[]"], "invalid value for 'modalities.egemaps' in --set modalities.egemaps=[]"),
    (["targets={}"], "invalid value for 'targets' in --set targets={}"),
    (["cv.seed=99999999999999999999"], "invalid value for 'cv.seed' in --set cv.seed=99999999999999999999"),
    (["cv.seeds=[1, -1]"], "invalid value for 'cv.seeds.1'"),
])
def test_set_errors_name_the_set_that_made_them(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config(TrainConfig, ROOT / "configs/train/demo_baseline.yaml", overrides)
    assert message in str(err.value)


def test_16_bit_images_are_rescaled_not_clipped(tmp_path):
    from PIL import Image

    from features.image import to_rgb8

    gradient = np.linspace(0, 65535, 96 * 64).reshape(96, 64).astype(np.uint16)
    Image.fromarray(gradient).save(tmp_path / "g16.png")
    Image.fromarray((gradient >> 8).astype(np.uint8)).save(tmp_path / "g8.png")
    with Image.open(tmp_path / "g16.png") as im16, Image.open(tmp_path / "g8.png") as im8:
        assert im16.mode.startswith("I")
        a, b = np.asarray(to_rgb8(im16), int), np.asarray(to_rgb8(im8), int)
    assert a.shape == b.shape == (96, 64, 3) and np.abs(a - b).max() <= 1 and 120 < a.mean() < 135
    floats = Image.fromarray(gradient.astype(np.float32) / 65535.0, "F")
    assert np.abs(np.asarray(to_rgb8(floats), int) - b).max() <= 1


def test_a_16_bit_image_embeds_as_its_8_bit_copy(tmp_path):
    """Through the extractor: the crop of a 16-bit PNG equals the crop of the same picture
    saved with 8 bits (before, Pillow's conversion left it ~99.5 % white)."""
    from PIL import Image

    from features.base import Sample
    from features.image import ImageEmbeddingExtractor

    yy, xx = np.mgrid[0:80, 0:120]
    picture = ((np.sin(xx / 9.0) + np.cos(yy / 7.0) + 2) / 4 * 65535).astype(np.uint16)
    Image.fromarray(picture).save(tmp_path / "deep.png")
    Image.fromarray((picture >> 8).astype(np.uint8)).save(tmp_path / "shallow.png")
    ex = ImageEmbeddingExtractor(backbone="resnet18", crop="context", image_size=32)
    crops = [ex.crop(Sample(name, "s", {"image": tmp_path / f"{name}.png"}, {}), [])
             for name in ("deep", "shallow")]
    assert np.abs(crops[0] - crops[1]).max() < 0.05 and crops[0].std() > 0.5


def summary_with(**overrides):
    """A target summary as `fusion train` writes it: a good model unless overridden."""
    def stat(mean, lo=None, hi=None):
        s = {"mean": mean, "sd": 0.01}
        if lo is not None:
            s.update(ci_low=lo, ci_high=hi)
        return s

    t = {"n_groups": 60, "group_by": "subject", "chance": {"accuracy": 0.43, "f1_weighted": 0.30, "brier": 0.69,
                                                          "ece": float("nan")},
         "metrics": {"model": {"accuracy": stat(0.60, 0.5, 0.7), "f1_weighted": stat(0.55, 0.45, 0.65),
                               "brier": stat(0.55, 0.5, 0.6), "ece": stat(0.05, 0.03, 0.08)},
                     "uncalibrated": {"ece": stat(0.09)},
                     "late:text+audio": {"f1_weighted": stat(0.5), "f1_weighted_gain_of_model": stat(0.05, -0.01, 0.1)}}}
    for key, value in overrides.items():
        node = t
        *path, last = key.split("/")
        for part in path:
            node = node[part]
        node[last] = value
    return t


def test_results_flag_themselves():
    from fusion.evaluation.flags import flag_tags, target_flags

    assert target_flags("depression", summary_with()) == []
    below = target_flags("atei", summary_with(**{"metrics/model/accuracy": {"mean": 0.367, "sd": 0.02, "ci_low": 0.30,
                                                                            "ci_high": 0.41},
                                                  "metrics/model/brier": {"mean": 0.749, "sd": 0.01}}))
    (f,) = below
    assert f["code"] == "below_chance" and "accuracy 0.367 vs chance 0.430, its 95 % interval excludes chance" in \
        f["message"] and "brier 0.749 vs chance 0.690 (lower is better)" in f["message"]
    beaten = target_flags("ptsd", summary_with(**{"metrics/early:text+audio+face": {
        "f1_weighted": {"mean": 0.6}, "f1_weighted_gain_of_model": {"mean": -0.06, "sd": 0.01, "ci_low": -0.114,
                                                                    "ci_high": -0.003}}}))
    assert [f["code"] for f in beaten] == ["beaten_by_variant"]
    assert "early:text+audio+face" in beaten[0]["message"] and "-0.060 [-0.114, -0.003]" in beaten[0]["message"]
    worse = target_flags("d", summary_with(**{"metrics/model/ece": {"mean": 0.182, "sd": 0.0},
                                              "metrics/uncalibrated/ece": {"mean": 0.086, "sd": 0.0}}))
    assert [f["code"] for f in worse] == ["calibration_worse"] and "0.182 calibrated vs 0.086" in worse[0]["message"]
    few = target_flags("d", summary_with(n_groups=4))
    assert [f["code"] for f in few] == ["few_groups"] and "over 4 subject groups" in few[0]["message"]
    tags = flag_tags(below + few)
    assert tags["flags"] == "below_chance,few_groups" and tags["flag.d.few_groups"].startswith("d: the intervals")


def test_a_run_carries_its_flags_in_the_summary_the_json_mlflow_and_the_report(study, capsys):
    import mlflow

    tmp, _, train_cfg = study
    uri = f"sqlite:///{tmp / 'flags.db'}"
    capsys.readouterr()
    assert main(["train", "--config", str(train_cfg), "--set", "tracking.enabled=true", "--set",
                 f"tracking.uri={uri}", "--set", f"tracking.artifacts={tmp / 'flags_art'}",
                 "--json", str(tmp / "f.json")]) == 0
    printed = capsys.readouterr().out
    s = json.loads((tmp / "f.json").read_text())
    assert [f["code"] for f in s["flags"]] == ["few_groups"]  # 8 subjects
    assert "FLAG few_groups: pitch: the intervals come from a bootstrap over 8 subject groups" in printed
    tags = mlflow.tracking.MlflowClient(tracking_uri=uri).get_run(s["run_id"]).data.tags
    assert tags["flags"] == "few_groups" and "8 subject groups" in tags["flag.pitch.few_groups"]
    assert main(["report", "--run", s["outputs"]["dir"], "--cohort", "--participant", "a", "--no-pdf", "--no-track",
                 "--out", str(tmp / "flagged")]) == 0
    for page in ("cohort.html", "participant_a.html"):
        assert "Flag:</b> pitch: the intervals come from a bootstrap over 8" in (tmp / "flagged" / page).read_text()


def test_a_swept_best_that_loses_to_the_start_on_the_test_is_flagged():
    from fusion.sweep import SweepConfig, start_flags

    sweep = SweepConfig(train=Path("t.yaml"), space={"x": {"type": "float", "low": 0, "high": 1}}, objective="uar")

    def ev(v, metric="uar"):
        return {"targets": {"emotion": {"metrics": {"model": {metric: {"mean": v, "sd": 0}}}}}}

    (f,) = start_flags(sweep, "emotion", ev(0.61), ev(0.66))
    assert f["code"] == "sweep_worse_than_start" and "uar 0.610 vs 0.660" in f["message"]
    assert start_flags(sweep, "emotion", ev(0.70), ev(0.66)) == []
    low = sweep.model_copy(update={"objective": "ece", "direction": "minimize"})
    assert start_flags(low, "emotion", ev(0.1, "ece"), ev(0.2, "ece")) == []
    assert start_flags(low, "emotion", ev(0.3, "ece"), ev(0.2, "ece"))


def test_the_printed_summary_names_a_binary_target_its_seeds_and_no_chance_where_there_is_none():
    from fusion.evaluation.tables import format_summary

    t = summary_with()
    t["metrics"]["model"]["qwk"] = {"mean": 0.3, "sd": 0.01}
    t.update(label="PHQ8_Binary", n_classes=2, kind="ordinal", class_counts=[43, 17], n_samples=60, n_subjects=60)
    cv = {"scheme": "grouped-kfold", "n_splits": 5, "n_repeats": 1, "inner_splits": 1, "train_splits": [],
          "test_splits": []}
    text = format_summary({"targets": {"depression": t}, "cv": cv, "model": "early-fusion"})
    assert "depression: PHQ8_Binary (binary, 2 classes: 0 43, 1 17)" in text and "ordinal" not in text
    assert "qwk" not in text  # an order of two classes says nothing the other metrics do not
    ece = next(line for line in text.splitlines() if line.strip().startswith("ece"))
    assert ece.rstrip().endswith("–") and "nan" not in text  # ECE has no chance level
    assert "× 1 seed;" in text


def test_a_model_folder_is_replaced_whole_and_a_save_killed_halfway_leaves_the_old_one(tmp_path):
    """`evaluation.save_model` writes each target's folder aside and moves it in complete: an
    interrupted save leaves the earlier model (manifest and files of one fit), a finished one
    leaves no file of the earlier fit behind."""
    from fusion.outputs import save_models_whole

    root = tmp_path / "models"

    def save(files):
        def write(folder):
            for name, text in files.items():
                (folder / "emotion").mkdir(parents=True, exist_ok=True)
                if text is None:
                    raise KeyboardInterrupt  # killed while writing
                (folder / "emotion" / name).write_text(text)
        return write

    save_models_whole(save({"manifest.json": "old", "member0.bin": "old"}), root)
    (root / "other").mkdir()
    with pytest.raises(KeyboardInterrupt):
        save_models_whole(save({"member0.bin": "new", "manifest.json": None}), root)
    assert {p.name: p.read_text() for p in (root / "emotion").iterdir()} == {"manifest.json": "old",
                                                                            "member0.bin": "old"}
    save_models_whole(save({"manifest.json": "new"}), root)
    assert {p.name: p.read_text() for p in (root / "emotion").iterdir()} == {"manifest.json": "new"}
    assert sorted(p.name for p in root.iterdir()) == ["emotion", "other"]  # no staging or old folder left


def test_a_folder_that_cannot_be_moved_in_leaves_the_earlier_one_in_place(tmp_path, monkeypatch):
    import os

    from features import files

    target = tmp_path / "emotion"
    files.replace_folder(lambda d: (d / "manifest.json").write_text("old"), target)
    real = os.replace

    def failing(src, dst):
        if Path(dst) == target and str(src).endswith(".tmp"):  # the new folder moving in
            raise OSError("disk full")
        return real(src, dst)

    monkeypatch.setattr(files.os, "replace", failing)
    with pytest.raises(OSError, match="disk full"):
        files.replace_folder(lambda d: (d / "manifest.json").write_text("new"), target)
    monkeypatch.undo()
    assert (target / "manifest.json").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["emotion"]  # neither the new folder nor the aside one left
