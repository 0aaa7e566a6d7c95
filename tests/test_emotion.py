"""Emotion targets (class names, nominal metrics), grouping and splits, speaker normalisation,
dialogue context, inner-fold hyper-parameter choice, store file names, and trained
recognisers as feature extractors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from fixtures import ravdess_tree, tone, write_configs, write_wav

from features.align import SegmentationConfig, Segmenter
from features.audio import LogMelStatsExtractor
from features.registry import build_extractor
from features.runner import feature_set_key, run_extraction
from features.store import FeatureStore
from fusion.cli import main
from fusion.config.schema import ConfigError, TargetSpec
from fusion.data.blocks import class_indices, dialogue_context, select_target, speaker_normalise
from fusion.datasets.base import DATASETS
from fusion.datasets.ravdess import Ravdess
from fusion.evaluation.metrics import multiclass_metrics
from fusion.evaluation.splits import SplitConfig, SplitError, make_folds
from fusion.models.learners.base import LearnerSpec, cross_fit

EMOTIONS = ["neutral", "happy", "sad", "angry"]


# --- targets and metrics ----------------------------------------------------------------------------

def test_class_names_map_to_indices_in_their_order_and_unknown_values_are_named():
    spec = TargetSpec(label="emotion", classes=EMOTIONS)
    assert spec.n_classes == 4 and spec.kind == "nominal"
    y = class_indices("emo", spec, pd.Series(["sad", "neutral", "angry", "sad"]))
    assert y.tolist() == [2, 0, 3, 2]
    with pytest.raises(ConfigError, match=r"'bored \(1×\)'.*not in its classes"):
        class_indices("emo", spec, pd.Series(["sad", "bored"]))
    # RAVDESS codes given as integers match classes written as numbers
    codes = TargetSpec(label="emotion_code", classes=[1, 2, 3])
    assert class_indices("c", codes, pd.Series([3, 1, 2.0])).tolist() == [2, 0, 1]


def test_text_labels_without_classes_say_how_to_name_them():
    with pytest.raises(ConfigError, match="list them in order with `classes:`"):
        class_indices("emo", TargetSpec(label="emotion", n_classes=4), pd.Series(["sad", "happy"]))
    with pytest.raises(ValueError, match="n_classes is 3 but classes lists 4"):
        TargetSpec(label="emotion", n_classes=3, classes=EMOTIONS)
    with pytest.raises(ValueError, match="give n_classes"):
        TargetSpec(label="emotion")
    assert TargetSpec(label="PHQ8_Severity", n_classes=5).kind == "ordinal"


def test_nominal_metrics_have_uar_and_nothing_that_assumes_an_order():
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    proba = np.eye(4)[[0, 1, 1, 1, 2, 0, 3, 3]] * 0.9 + 0.025
    nominal = multiclass_metrics(y, proba, "nominal")
    assert "qwk" not in nominal and "adjacent_accuracy" not in nominal and "balanced_accuracy" not in nominal
    assert nominal["uar"] == pytest.approx(np.mean([0.5, 1.0, 0.5, 1.0]))
    ordinal = multiclass_metrics(y, proba, "ordinal")
    assert {"qwk", "adjacent_accuracy", "balanced_accuracy"} <= set(ordinal)


# --- grouping and splits ----------------------------------------------------------------------------

def write_meld(root: Path) -> Path:
    """MELD-layout CSVs: 2 splits × 6 dialogues × 5 utterances, the same 3 speakers everywhere."""
    root.mkdir(parents=True, exist_ok=True)
    emotions = ["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"]
    for split, n_dia in (("train", 6), ("dev", 3)):
        rows = []
        for d in range(n_dia):
            for u in range(5):
                rows.append({"Sr No.": len(rows) + 1, "Utterance": f"utterance {u} of {d}",
                             "Speaker": ["Ross", "Rachel", "Joey"][u % 3], "Emotion": emotions[(d + u) % 7],
                             "Sentiment": "neutral", "Dialogue_ID": d, "Utterance_ID": u, "Season": 1,
                             "Episode": 1, "StartTime": f"00:00:{u:02d},000", "EndTime": f"00:00:{u:02d},900"})
        pd.DataFrame(rows).to_csv(root / f"{split}_sent_emo.csv", index=False)
    return root


def test_meld_groups_by_dialogue_so_its_official_split_is_accepted(tmp_path):
    meld = DATASETS.get("meld")(write_meld(tmp_path / "meld"))
    labels = meld.labels()
    spec = TargetSpec(label="emotion", classes=["neutral", "joy", "surprise", "anger", "sadness", "disgust",
                                                "fear"])
    blocks = {"text": np.ones((len(labels), 2))}
    target = select_target("emotion", spec, labels, blocks, meld)
    assert target.group_by == "group" and len(set(target.groups)) == 9
    folds = make_folds(SplitConfig(scheme="official", train_splits=["train"], test_splits=["dev"]),
                       target.y, target.groups, target.splits)
    assert len(folds[0].test) == 15
    # grouped by speaker instead, the official split puts every speaker on both sides
    by_speaker = select_target("emotion", spec, labels, blocks, meld, group_by="subject")
    with pytest.raises(SplitError, match="both sides"):
        make_folds(SplitConfig(scheme="official", train_splits=["train"], test_splits=["dev"]),
                   by_speaker.y, by_speaker.groups, by_speaker.splits)
    assert "by dialogue" in meld.grouping_note


def test_ravdess_test_actors_make_a_train_test_split_and_symlinked_actor_folders_are_read(tmp_path):
    real = ravdess_tree(tmp_path / "real", actors=(1, 2, 3), emotions=(1, 5), seconds=0.1)
    linked = tmp_path / "linked"
    linked.mkdir()
    for d in real.iterdir():
        os.symlink(d, linked / d.name)
    os.symlink(linked, linked / "loop")  # a link cycle is not followed twice
    ds = Ravdess(linked, test_actors=[3])
    labels = ds.labels()
    assert len(labels) == 12
    assert set(labels.loc[labels["actor"] == 3, "split"]) == {"test"}
    assert set(labels.loc[labels["actor"] != 3, "split"]) == {"train"}
    with pytest.raises(ValueError, match="actors are 1–24"):
        Ravdess(linked, test_actors=[25])


def test_holdout_scheme_tests_on_the_listed_groups_only():
    y = np.array([0, 1] * 6)
    groups = np.repeat(["a", "b", "c", "d", "e", "f"], 2)
    (fold,) = make_folds(SplitConfig(scheme="holdout", test_groups=["e", "f"], inner_splits=2), y, groups)
    assert set(groups[fold.test]) == {"e", "f"} and set(groups[fold.train]) == {"a", "b", "c", "d"}
    assert all(set(groups[va]) <= {"a", "b", "c", "d"} for _, va in fold.inner)
    with pytest.raises(SplitError, match="not groups of the data"):
        make_folds(SplitConfig(scheme="holdout", test_groups=["zz"]), y, groups)


# --- speaker normalisation and context --------------------------------------------------------------

def test_speaker_normalisation_z_scores_within_each_speaker_and_needs_enough_rows():
    idx = pd.MultiIndex.from_tuples([(f"s{i}", 0.0, 1.0) for i in range(6)], names=["sample_id", "start", "end"])
    frame = pd.DataFrame({"f": [1.0, 2.0, 3.0, 10.0, 20.0, 30.0], "flat": [5.0] * 6}, index=idx)
    subjects = pd.Series(["a", "a", "a", "b", "b", "b"], index=[f"s{i}" for i in range(6)])
    z = speaker_normalise(frame, subjects, 3, "input 'x'")
    a, b = z["f"].to_numpy()[:3], z["f"].to_numpy()[3:]
    assert np.allclose(a, b) and np.allclose(a.mean(), 0) and np.allclose(a.std(), 1)
    assert (z["flat"] == 0).all()  # a constant feature becomes 0, not NaN
    with pytest.raises(ConfigError, match=r"at least 4 rows per speaker.*a \(3\)"):
        speaker_normalise(frame, subjects, 4, "input 'x'")


def test_dialogue_context_is_the_mean_of_previous_utterances_of_the_same_dialogue():
    labels = pd.DataFrame({"group": ["d1", "d1", "d1", "d2", "d2"], "subject_id": list("abcab")},
                          index=pd.Index(["u1", "u2", "u3", "v1", "v2"], name="sample_id"))
    pooled = pd.DataFrame({"x": [1.0, 3.0, 5.0, 7.0, np.nan]}, index=labels.index)
    ctx = dialogue_context(pooled, labels, 2, "input 'text'")
    assert np.isnan(ctx.loc["u1"]).all() and np.isnan(ctx.loc["v1"]).all()  # first utterance: missing
    assert ctx.loc["u2", "context2:x"] == 1.0 and ctx.loc["u3", "context2:x"] == 2.0
    assert ctx.loc["v2", "context2:x"] == 7.0  # nothing carried across dialogues
    with pytest.raises(ConfigError, match="context needs groups"):
        dialogue_context(pooled, labels.assign(group=None), 2, "input 'text'")


# --- hyper-parameters chosen on inner folds ---------------------------------------------------------

def test_a_learner_grid_is_chosen_on_inner_folds_and_reported():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 40)
    X = rng.normal(size=(120, 30)) + np.eye(3)[y].repeat(10, axis=1) * 0.8
    inner = [(np.flatnonzero(np.arange(120) % 4 != k), np.flatnonzero(np.arange(120) % 4 == k)) for k in range(4)]
    spec = LearnerSpec(name="logreg", grid={"C": [1e-6, 1.0]})
    oof, final = cross_fit(spec, X, y, inner, "classification", 3, 0)
    assert final.chosen_ == {"C": 1.0}  # a vanishing C predicts the prior: worse log loss
    assert not np.isnan(oof).any()
    with pytest.raises(ValueError, match="set cv.inner_splits"):
        cross_fit(spec, X, y, [], "classification", 3, 0)
    with pytest.raises(Exception, match="invalid grid values"):
        LearnerSpec(name="logreg", grid={"C": [-1.0]})


# --- end to end: a RAVDESS-layout corpus through `fusion train`, then the recogniser as extractor ------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A recogniser trained on a 4-actor RAVDESS-layout corpus (MLP learner: it has an
    embedding), with its summary."""
    tmp = tmp_path_factory.mktemp("emotion")
    corpus = ravdess_tree(tmp / "ravdess")
    extract_cfg, train_cfg = write_configs(
        tmp, corpus, {"name": "mlp", "params": {"hidden": 16, "lr": 0.01, "max_epochs": 150, "patience": 20, "device": "cpu"}})
    assert main(["extract", "--config", str(extract_cfg)]) == 0
    assert main(["train", "--config", str(train_cfg), "--json", str(tmp / "summary.json")]) == 0
    return tmp, corpus, json.loads((tmp / "summary.json").read_text())


def test_an_emotion_target_trains_with_class_names_and_nominal_metrics(trained):
    tmp, _, summary = trained
    t = summary["targets"]["emotion"]
    assert t["classes"] == ["neutral", "happy", "sad", "angry"] and t["kind"] == "nominal"
    m = t["metrics"]["model"]
    assert "uar" in m and "qwk" not in m and "ci_low" in m["uar"]
    assert m["uar"]["mean"] > 0.6  # pitch carries the emotion once each actor's voice is normalised away
    assert set(t["per_class"]) == {"neutral", "happy", "sad", "angry"}
    assert np.asarray(t["confusion"]).shape == (4, 4)
    out = Path(summary["outputs"]["dir"])
    per_class = pd.read_csv(out / "emotion_per_class.csv")
    assert per_class["class"].tolist() == ["neutral", "happy", "sad", "angry"]
    preds = pd.read_csv(out / "emotion_predictions.csv")
    assert set(preds["label"]) == {"neutral", "happy", "sad", "angry"}
    manifest = json.loads((tmp / "models" / "emotion" / "manifest.json").read_text())
    assert manifest["target"]["classes"] == ["neutral", "happy", "sad", "angry"]
    assert manifest["inputs"]["acoustic"][0]["extractor"]["name"] == "logmel"


def test_a_trained_recogniser_runs_as_an_extractor_over_windows(trained):
    tmp, corpus, _ = trained
    model = tmp / "models" / "emotion"
    ext = build_extractor("emotion", {"model": str(model)})
    assert ext.feature_names[:4] == ["p_neutral", "p_happy", "p_sad", "p_angry"]
    assert any(n.startswith("emb_") for n in ext.feature_names)  # the MLP's hidden layer
    samples = Ravdess(corpus).samples()[:8]
    store = FeatureStore(tmp / "store_emotion")
    seg = Segmenter(SegmentationConfig(level="window", window=0.15, hop=0.15))
    summary = run_extraction(samples, ext, store, "ravdess", segmenter=seg, progress=False, name="speech_emotion")
    assert summary.failed == 0 and summary.computed == 8
    frame = store.read(store.path(feature_set_key("ravdess", ext, seg, "speech_emotion")))
    p = frame[[c for c in frame.columns if c.startswith("p_")]].to_numpy()
    assert len(frame) >= 8 * 4 and np.allclose(p.sum(1), 1, atol=1e-5)
    # the parameter hash follows the model's files: a changed model is a new feature set
    key = feature_set_key("ravdess", ext, seg)
    (model / "manifest.json").write_text((model / "manifest.json").read_text() + " ")
    assert feature_set_key("ravdess", build_extractor("emotion", {"model": str(model)}), seg).param_hash != \
        key.param_hash


def test_a_recogniser_whose_inputs_cannot_be_recomputed_is_refused(trained, tmp_path):
    tmp, _, _ = trained
    bad = tmp_path / "model"
    bad.mkdir()
    for f in (tmp / "models" / "emotion").iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["inputs"]["acoustic"][0]["segmentation"]["level"] = "turn"
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="computed per turn and pooled per sample"):
        build_extractor("emotion", {"model": str(bad)})
    with pytest.raises(ValueError, match="no such model folder"):
        build_extractor("emotion", {"model": str(tmp_path / "nowhere")})


def test_the_ordinal_learner_is_refused_for_a_nominal_target(tmp_path, capsys):
    corpus = ravdess_tree(tmp_path / "ravdess", actors=(1, 2), emotions=(1, 5), seconds=0.1)
    extract_cfg, train_cfg = write_configs(tmp_path, corpus, {"name": "ordinal"})
    assert main(["extract", "--config", str(extract_cfg)]) == 0
    assert main(["train", "--config", str(train_cfg)]) == 2
    assert "assumes ordered classes" in capsys.readouterr().err


def test_a_store_written_with_extractor_named_files_is_adopted_not_recomputed(tmp_path):
    corpus = ravdess_tree(tmp_path / "ravdess", actors=(1,), emotions=(1,), seconds=0.2)
    samples = Ravdess(corpus).samples()
    store = FeatureStore(tmp_path / "store")
    ext = LogMelStatsExtractor(n_mels=8)
    run_extraction(samples, ext, store, "rav", progress=False)  # no name: the old `logmel-<hash>` file
    old = store.path(feature_set_key("rav", ext, Segmenter()))
    assert old.exists()
    again = run_extraction(samples, ext, store, "rav", progress=False, name="mel8")
    assert again.computed == 0 and again.skipped == len(samples)
    assert any("renamed" in n for n in again.notes)
    assert not old.exists() and store.path(feature_set_key("rav", ext, Segmenter(), "mel8")).exists()
    assert store.resolve("mel8").name.startswith("mel8-")


def test_data_describe_folds_follow_the_dataset_grouping(tmp_path, capsys):
    root = write_meld(tmp_path / "meld")
    cfg = tmp_path / "data.yaml"
    cfg.write_text(yaml.safe_dump({"dataset": {"name": "meld", "root": str(root)}, "target": "emotion",
                                   "cv": {"scheme": "official", "train_splits": ["train"], "test_splits": ["dev"]}}))
    assert main(["data", "describe", "--config", str(cfg), "--json", str(tmp_path / "d.json")]) == 0
    d = json.loads((tmp_path / "d.json").read_text())
    assert d["group_by"] == "group" and d["folds"][0]["subjects_on_both_sides"] == 3
    assert "subjects on both sides of a fold: up to 3" in capsys.readouterr().out


def test_a_fixed_split_is_repeated_once_per_seed_with_the_same_folds():
    y = np.array([0, 1] * 6)
    groups = np.repeat(["a", "b", "c", "d", "e", "f"], 2)
    folds = make_folds(SplitConfig(scheme="loso", seeds=[0, 7]), y, groups)
    assert len(folds) == 12 and [f.repeat for f in folds] == [0] * 6 + [1] * 6
    assert {f.seed for f in folds} == {0, 7}
    assert all((a.test == b.test).all() for a, b in zip(folds[:6], folds[6:], strict=True))


def test_log_mel_frames_are_one_row_per_hop_and_the_stats_hash_is_unchanged(tmp_path):
    wav = write_wav(tmp_path / "a.wav", tone(0.5))
    frames = LogMelStatsExtractor(level="frames", n_mels=16).process_file(wav)
    assert list(frames.columns) == [f"logmel{i:02d}" for i in range(16)]
    assert len(frames) == 1 + 8000 // 320  # centred frames every 20 ms
    starts = frames.index.get_level_values("start").to_numpy()
    assert np.allclose(np.diff(starts), 0.02) and np.isfinite(frames.to_numpy()).all()
    # `level` left at its default does not enter the parameter hash: stores stay valid
    assert "level" not in LogMelStatsExtractor().get_params()
    assert feature_set_key("d", LogMelStatsExtractor(), Segmenter()).param_hash == \
        feature_set_key("d", LogMelStatsExtractor(level="stats"), Segmenter()).param_hash


def test_a_text_recogniser_trained_on_utterances_runs_over_participant_turns(tmp_path, demo_corpus):
    """Trained on whole utterances (MiniLM `mean_###` columns), applied per turn (`emb_###`)."""
    meld = write_meld(tmp_path / "meld")
    extract = {"dataset": {"name": "meld", "root": str(meld)}, "store": str(tmp_path / "store"), "progress": False,
               "features": {"text": {"extractor": {"name": "sentence", "params": {"session": "mean"}}}}}
    train = {"extract": "extract.yaml", "modalities": {"text": [{"features": "text"}]},
             "targets": {"emotion": {"label": "emotion", "classes": ["neutral", "joy", "surprise", "anger",
                                                                     "sadness", "disgust", "fear"]}},
             "model": {"name": "early-fusion", "params": {"calibration": "none"}},
             "cv": {"scheme": "official", "train_splits": ["train"], "test_splits": ["dev"]},
             "evaluation": {"n_bootstrap": 0, "save_model": True, "model_dir": str(tmp_path / "models")},
             "tracking": {"enabled": False}, "output_dir": str(tmp_path / "out")}
    (tmp_path / "extract.yaml").write_text(yaml.safe_dump(extract))
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train))
    assert main(["extract", "--config", str(tmp_path / "extract.yaml")]) == 0
    assert main(["train", "--config", str(tmp_path / "train.yaml")]) == 0
    demo = {"dataset": {"name": "daic-woz", "root": str(demo_corpus), "params": {"splits": ["train", "dev"]}},
            "store": str(tmp_path / "store"), "progress": False,
            "features": {"text_emotion": {
                "extractor": {"name": "emotion", "params": {"model": str(tmp_path / "models" / "emotion")}},
                "segmentation": {"level": "turn", "speaker": "Participant"}}}}
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(demo))
    assert main(["extract", "--config", str(tmp_path / "demo.yaml"), "--json", str(tmp_path / "x.json")]) == 0
    s = json.loads((tmp_path / "x.json").read_text())["feature_sets"]["text_emotion"]
    assert s["failed"] == 0 and s["computed"] == 6
    frame = FeatureStore(tmp_path / "store").read(s["path"])
    assert list(frame.columns) == [f"p_{c}" for c in ["neutral", "joy", "surprise", "anger", "sadness", "disgust",
                                                      "fear"]]  # a linear model: posteriors, no embedding
    assert frame.index.get_level_values("sample_id").nunique() == 6 and len(frame) > 6


def test_segments_too_short_to_analyse_get_no_emotion_row(trained):
    from features.base import Segment

    tmp, corpus, _ = trained
    ext = build_extractor("emotion", {"model": str(tmp / "models" / "emotion")})
    sample = Ravdess(corpus).samples()[0]
    segments = [Segment(0.0, 0.2), Segment(0.2, 0.21), Segment(0.21, 0.4), Segment(0.4, 0.6)]
    frame = ext.process_sample(sample, segments)
    assert list(frame.index.get_level_values("start")) == [0.0, 0.21, 0.4]
    assert any("1 segment(s) without any input value" in w for w in frame.attrs["warnings"])
