"""The `fusion` command end to end on a small demo corpus."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fusion.cli import main

ROOT = Path(__file__).resolve().parents[1]


def demo_args(tmp_path: Path, n_sessions: int = 16) -> list[str]:
    return [
        "--config", str(ROOT / "configs/demo.yaml"),
        "--set", f"corpus.n_sessions={n_sessions}", "--set", "corpus.questions=4",
        "--set", f"extract.dataset.root={tmp_path / 'data'}",
        "--set", f"extract.store={tmp_path / 'store'}",
        "--set", "extract.progress=false",
        "--set", f"train.tracking.uri=sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}",
        "--set", f"train.tracking.artifacts={tmp_path / 'mlruns' / 'artifacts'}",
        "--set", f"train.output_dir={tmp_path / 'outputs'}",
        "--set", "train.cv.n_repeats=2", "--set", "train.evaluation.n_bootstrap=200",
    ]


@pytest.mark.slow
def test_demo_end_to_end_is_deterministic_and_tracked(tmp_path, capsys):
    args = demo_args(tmp_path)
    assert main(["demo", *args, "--json", str(tmp_path / "first.json")]) == 0
    out = capsys.readouterr().out
    assert "auc" in out and "mlflow ui --backend-store-uri" in out
    first = json.loads((tmp_path / "first.json").read_text())
    assert first["corpus"]["reused"] is False
    fs = first["extract"]["feature_sets"]
    assert fs["egemaps_turn"]["computed"] == 16 and fs["egemaps_session"]["failed"] == 0
    assert all(s["warnings"] == 0 for s in fs.values())  # the demo's recordings are clean
    assert f"next:\n  fusion report --run {first['train']['outputs']['dir']} --participant 300 --cohort" in out

    assert main(["demo", *args, "--json", str(tmp_path / "second.json")]) == 0
    second = json.loads((tmp_path / "second.json").read_text())
    assert second["corpus"]["reused"] is True
    assert all(s["computed"] == 0 and s["skipped"] == 16 for s in second["extract"]["feature_sets"].values())
    assert second["train"]["targets"] == first["train"]["targets"]
    assert second["train"]["run_id"] != first["train"]["run_id"]

    import mlflow
    client = mlflow.tracking.MlflowClient(tracking_uri=first["train"]["tracking_uri"])
    run = client.get_run(first["train"]["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["model.params.learner.params.C"] == "0.05"
    assert run.data.tags["git_commit"]
    for name, prov in first["train"]["feature_sets"].items():
        assert run.data.tags[f"features.{name}.param_hash"] == prov["param_hash"]
    model = first["train"]["targets"]["depression"]["metrics"]["model"]
    assert run.data.metrics["depression.model.auc_ovr.mean"] == pytest.approx(model["auc_ovr"]["mean"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "depression_predictions.csv", "depression_folds.csv", "metrics.json"} <= artifacts

    # the store can be inspected
    store = str(tmp_path / "store")
    assert main(["features", "ls", "--store", store, "--json", str(tmp_path / "ls.json")]) == 0
    listing = json.loads((tmp_path / "ls.json").read_text())
    assert {r["n_samples"] for r in listing["feature_sets"]} == {16}
    name = Path(fs["egemaps_turn"]["path"]).stem
    assert main(["features", "show", name, "--store", str(tmp_path / "store"),
                 "--json", str(tmp_path / "show.json")]) == 0
    show = json.loads((tmp_path / "show.json").read_text())
    assert show["n_features"] == 88 and show["segmentation"]["level"] == "turn"
    assert show["preview"][0]["sample_id"] == "300"
    assert "88 features" in capsys.readouterr().out


def test_config_typo_is_a_clear_error_with_exit_code_2(tmp_path, capsys):
    code = main(["train", "--config", str(ROOT / "configs/train/demo_baseline.yaml"),
                 "--set", "model.parms.C=1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown key 'model.parms'" in err and "valid keys at model: name, params" in err


def test_train_before_extract_says_what_to_do(demo_corpus, tmp_path, capsys):
    code = main(["train", "--config", str(ROOT / "configs/train/demo_baseline.yaml"),
                 "--set", f"extract.dataset.root={demo_corpus}",
                 "--set", f"extract.store={tmp_path / 'empty_store'}"])
    assert code == 2
    err = capsys.readouterr().err
    assert "feature set 'egemaps_turn'" in err and "has not been extracted yet" in err


def test_missing_dataset_root(tmp_path, capsys):
    code = main(["extract", "--config", str(ROOT / "configs/extract/demo.yaml"),
                 "--set", f"dataset.root={tmp_path / 'nowhere'}"])
    assert code == 2
    assert "nowhere does not exist" in capsys.readouterr().err


def test_console_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "fusion.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for cmd in ("demo", "extract", "train", "features"):
        assert cmd in out


def test_data_describe_with_folds(demo_corpus, tmp_path, capsys):
    from fixtures import write_daic_extras

    write_daic_extras(demo_corpus)
    out = tmp_path / "d.json"
    assert main(["data", "describe", "--config", str(ROOT / "configs/data/demo.yaml"),
                 "--set", f"dataset.root={demo_corpus}", "--set", "dataset.params.splits=[train, dev, test]",
                 "--set", "cv.n_splits=2", "--set", "cv.inner_splits=0", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "daic-woz at" in printed and "per split: dev 1, test 1, train 4" in printed
    assert "known to be excluded" in printed
    d = json.loads(out.read_text())
    assert d["n_subjects"] == 6 and d["labels"]["PHQ8_Binary"]
    assert sum(f["n_test"] for f in d["folds"]) == 6


def severity_args(corpus, tmp_path):
    root, store = corpus
    return ["--config", str(ROOT / "configs/train/severity_late_fusion.yaml"),
            "--set", f"extract.dataset.root={root}", "--set", f"extract.store={store}",
            "--set", "cv.n_splits=2", "--set", "cv.n_repeats=1", "--set", "cv.inner_splits=2",
            "--set", "evaluation.n_bootstrap=50", "--set", "evaluation.noise_levels=[1.0]",
            "--set", f"tracking.uri=sqlite:///{tmp_path / 'ml.db'}", "--set", f"tracking.artifacts={tmp_path / 'art'}",
            "--set", f"output_dir={tmp_path / 'out'}"]


@pytest.mark.slow
def test_train_severity_late_fusion_writes_everything(severity_corpus, tmp_path, capsys):
    assert main(["train", *severity_args(severity_corpus, tmp_path), "--json", str(tmp_path / "s.json")]) == 0
    s = json.loads((tmp_path / "s.json").read_text())
    printed = capsys.readouterr().out
    assert "ablation (late)" in printed and "ablation (early)" in printed and "robustness" in printed and "top-label ECE" in printed
    for target in ("depression", "ptsd"):
        mets = s["targets"][target]["metrics"]
        assert {"model", "uncalibrated", "late:text", "late:text+audio+face", "early:text+audio+face",
                "drop:face", "noise:audio:1"} <= set(mets)
        assert "f1_weighted_gain_of_model" in mets["late:face"]
        assert len(s["targets"][target]["decision_curve"]["threshold"]) == 40
    assert "regression" in s["targets"]["depression"]["metrics"]
    out = Path(s["outputs"]["dir"])
    for name in ("depression_ablation.csv", "depression_robustness.csv", "depression_calibration.csv",
                 "ptsd_decision_curve.csv", "ptsd_attributions_per_prediction.csv",
                 "depression_attributions_features.csv", "depression_confusion.png",
                 "ptsd_reliability.png", "depression_decision_curve.png", "depression_ablation.png"):
        assert (out / name).exists(), name
    per = pd.read_csv(out / "depression_attributions_per_prediction.csv")
    assert {"modality:text", "modality:audio", "modality:face", "top_features:face"} <= set(per.columns)
    from fusion.persist import load_model

    model = load_model(out / "model" / "ptsd")
    assert model.modalities == ["text", "audio", "face"] and len(model.columns["face"]) > 100
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=s["tracking_uri"])
    arts = {a.path for a in client.list_artifacts(s["run_id"])}
    assert {"depression_ablation.csv", "ptsd_reliability.png", "model", "metrics.json"} <= arts
    run = client.get_run(s["run_id"])
    assert "ptsd.late.text_audio_face.f1_weighted.mean" in run.data.metrics
    assert run.data.tags["features.face_session.param_hash"]


@pytest.mark.slow
def test_trimodal_paper_protocol_and_turn_level_warning(severity_corpus, tmp_path, capsys):
    assert main(["train", *severity_args(severity_corpus, tmp_path), "--protocol", "trimodal-paper",
                 "--set", "paper.n_splits=3", "--set", "paper.seeds=[0]", "--json", str(tmp_path / "p.json")]) == 0
    captured = capsys.readouterr()
    assert "optimistic" in captured.err and "optimistic" in captured.out
    p = json.loads((tmp_path / "p.json").read_text())
    assert p["n_features"] == 1536
    assert set(p["targets"]["depression"]["metrics"]) == {
        "paper (early stopping on the scored fold)", "paper features, early stopping on inner validation"}
    assert main(["train", *severity_args(severity_corpus, tmp_path), "--split", "turn-level",
                 "--set", "evaluation.ablation=false", "--set", "evaluation.robustness=false",
                 "--set", "evaluation.save_model=false", "--set", "evaluation.plots=false"]) == 0
    captured = capsys.readouterr()
    assert "turn-level puts samples of one subject on both sides" in captured.err
    assert "TURN-LEVEL folds" in captured.out


@pytest.mark.slow
def test_turn_attention_trains_on_aligned_per_turn_sequences(severity_corpus, tmp_path, capsys):
    root, store = severity_corpus
    assert main(["extract", "--config", str(ROOT / "configs/extract/demo_multimodal.yaml"),
                 "--set", f"dataset.root={root}", "--set", f"store={store}", "--set", "progress=false",
                 "--only", "logmel_turn", "--only", "face_turn", "--only", "text_turn"]) == 0
    args = ["train", "--config", str(ROOT / "configs/train/turn_attention.yaml"),
            "--set", f"extract.dataset.root={root}", "--set", f"extract.store={store}",
            "--set", "cv.n_splits=2", "--set", "cv.n_repeats=1", "--set", "cv.inner_splits=2",
            "--set", "model.params.max_epochs=5", "--set", "evaluation.n_bootstrap=20",
            "--set", "evaluation.ablation=false", "--set", "evaluation.plots=false",
            "--set", "targets={ptsd: {label: PTSD_Class, n_classes: 3}}",
            "--set", f"tracking.uri=sqlite:///{tmp_path / 'ml.db'}", "--set", f"tracking.artifacts={tmp_path / 'art'}",
            "--set", f"output_dir={tmp_path / 'out'}", "--json", str(tmp_path / "t.json")]
    assert main(args) == 0
    s = json.loads((tmp_path / "t.json").read_text())
    t = s["targets"]["ptsd"]
    assert t["n_samples"] == 24 and t["modality_available"] == {"text": 24, "audio": 24, "face": 24}
    assert {"model", "uncalibrated", "drop:text", "noise:face:1"} <= set(t["metrics"])
    from fusion.persist import load_model

    model = load_model(Path(s["model_dir"]) / "ptsd")
    assert model.sequence_ == ["text", "audio", "face"] and len(model.columns["text"]) == 384
    # pooled inputs are refused for a model that takes pooled blocks only
    bad = args[:-2] + ["--set", "model.name=late-fusion", "--set", "model.params={}"]
    capsys.readouterr()
    assert main(bad) == 2
    assert "model 'late-fusion' takes pooled inputs only" in capsys.readouterr().err


@pytest.mark.slow
def test_atei_config_trains_end_to_end_with_its_ablation_tracked(severity_corpus, tmp_path, capsys):
    """configs/train/atei_full.yaml on demo turns: eGeMAPS and MiniLM per participant turn, the joint
    heads, every comparison on the same folds, the model saved and the run in MLflow."""
    root, store = severity_corpus
    assert main(["extract", "--config", str(ROOT / "configs/extract/demo_multimodal.yaml"),
                 "--set", f"dataset.root={root}", "--set", f"store={store}", "--set", "progress=false",
                 "--only", "egemaps_turn", "--only", "text_turn"]) == 0
    assert main(["train", "--config", str(ROOT / "configs/train/atei_full.yaml"),
                 "--set", f"extract.dataset.root={root}", "--set", f"extract.store={store}",
                 "--set", "cv.n_splits=2", "--set", "cv.n_repeats=1", "--set", "cv.inner_splits=2",
                 "--set", "model.params.max_epochs=3", "--set", "model.params.max_inner=1",
                 "--set", "evaluation.n_bootstrap=20", "--set", "evaluation.plots=false",
                 "--set", f"tracking.uri=sqlite:///{tmp_path / 'ml.db'}",
                 "--set", f"tracking.artifacts={tmp_path / 'art'}", "--set", f"output_dir={tmp_path / 'out'}",
                 "--json", str(tmp_path / "a.json")]) == 0
    printed = capsys.readouterr().out
    assert "ablation (atei-off)" in printed and "ablation (late-fusion)" in printed
    s = json.loads((tmp_path / "a.json").read_text())
    t = s["targets"]["depression"]
    assert {"atei:audio", "atei:text", "atei:audio+text", "atei-off:audio+text", "atei-no-scale:audio+text",
            "atei-add:audio+text", "atei-gated:audio+text", "late-fusion:audio+text"} <= set(t["metrics"])
    assert "regression" in t["metrics"]  # the PHQ-8 score, from the joint head
    out = Path(s["outputs"]["dir"])
    per = pd.read_csv(out / "depression_attributions_per_prediction.csv")
    assert {"modality:audio", "modality:text"} <= set(per.columns)  # Integrated Gradients per modality
    from fusion.persist import load_model

    model = load_model(Path(s["model_dir"]) / "depression")
    assert model.streams_ == ("audio", "text") and model.scores_jointly()
    import mlflow

    run = mlflow.tracking.MlflowClient(tracking_uri=s["tracking_uri"]).get_run(s["run_id"])
    assert "depression.atei-off.audio_text.f1_weighted.mean" in run.data.metrics
    assert run.data.tags["model"] == "atei"


# --- every failure is one `error:` line naming the file ------------------------------------------

def _extract_args(corpus, store, *names):
    args = ["extract", "--config", str(ROOT / "configs/extract/demo.yaml"), "--set", f"dataset.root={corpus}",
            "--set", f"store={store}", "--set", "progress=false", "--set", "n_jobs=1"]
    for n in names:
        args += ["--only", n]
    return args


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_a_truncated_store_file_is_an_error_line_and_ls_still_lists(demo_corpus, tmp_path, capsys):
    store = tmp_path / "store"
    assert main(_extract_args(demo_corpus, store, "egemaps_session")) == 0
    path = next(p for p in store.glob("*/egemaps_session-*.parquet") if not p.name.endswith(".errors.parquet"))
    path.write_bytes(path.read_bytes()[:-300])
    capsys.readouterr()
    assert main(["features", "show", str(path)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(path) in line and "damaged" in line
    assert main(["features", "ls", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert path.stem in out and "damaged" in out
    # extraction notices and recomputes it
    assert main(_extract_args(demo_corpus, store, "egemaps_session")) == 0
    assert "ignored and every sample recomputed" in capsys.readouterr().out


def test_a_store_path_that_is_a_file_and_a_read_only_store(demo_corpus, tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    assert main(_extract_args(demo_corpus, tmp_path / "file", "egemaps_session")) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(tmp_path / "file") in line and "is a file, not a folder" in line

    import features.store

    def refuse(path, flags, *a, **k):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(features.store.os, "open", refuse)  # as if the store folder were read-only
    assert main(_extract_args(demo_corpus, tmp_path / "ro", "egemaps_session")) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(tmp_path / "ro") in line and "Permission denied" in line


def test_an_unexpected_failure_is_one_line_unless_debug(tmp_path, capsys, monkeypatch):
    import fusion.extraction

    def boom(*a, **k):
        raise RuntimeError("something unforeseen")

    monkeypatch.setattr(fusion.extraction, "extract", boom)
    args = ["extract", "--config", str(ROOT / "configs/extract/demo.yaml")]
    assert main(args) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "RuntimeError: something unforeseen" in line and "--debug" in line
    with pytest.raises(RuntimeError, match="unforeseen"):
        main([*args, "--debug"])


def test_extract_exits_non_zero_when_every_sample_of_a_feature_set_failed(demo_corpus, tmp_path, capsys):
    for wav in demo_corpus.glob("*_P/*_AUDIO.wav"):
        wav.write_bytes(b"not audio at all")
    code = main(_extract_args(demo_corpus, tmp_path / "store", "egemaps_session"))
    assert code == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "every sample of feature set 'egemaps_session' failed" in line and "errors.parquet" in line


def test_face_file_without_confidence_and_transcript_with_unquoted_commas(demo_corpus, tmp_path, capsys):
    import pandas as pd

    au = demo_corpus / "301_P" / "301_CLNF_AUs.txt"
    rows = [x.split(", ") for x in au.read_text().splitlines()]
    drop = rows[0].index("confidence")
    au.write_text("\n".join(", ".join(v for i, v in enumerate(r) if i != drop) for r in rows) + "\n")
    transcript = demo_corpus / "300_P" / "300_TRANSCRIPT.csv"
    lines = transcript.read_text().splitlines()
    comma = ["start_time,stop_time,speaker,value"] + [ln.replace("\t", ",", 3) for ln in lines[1:]]
    comma[2] += ", well, yes"
    transcript.write_text("\n".join(comma) + "\n")
    store = tmp_path / "store"
    args = ["extract", "--config", str(ROOT / "configs/extract/demo_multimodal.yaml"),
            "--set", f"dataset.root={demo_corpus}", "--set", f"store={store}", "--set", "progress=false",
            "--only", "face_turn"]
    assert main(args) == 0
    assert "Traceback" not in capsys.readouterr().err
    errors = pd.read_parquet(next(store.glob("*/face_turn-*.errors.parquet"))).set_index("sample_id")
    assert errors.loc["300", "source_path"] == str(transcript)
    assert "300_TRANSCRIPT.csv" in errors.loc["300", "error"] and "line 3" in errors.loc["300", "error"]
    assert errors.loc["301", "source_path"] == str(au) and "'confidence'" in errors.loc["301", "error"]


def test_the_top_level_help_lists_every_command(capsys):
    from fusion.cli import build_parser

    parser = build_parser()
    commands = [a.dest for a in parser._subparsers._group_actions[0]._choices_actions]
    assert len(commands) == 8
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert f"{len(commands)} commands ({', '.join(commands)})" in out
    assert all(f"\n    {c} " in out for c in commands)
