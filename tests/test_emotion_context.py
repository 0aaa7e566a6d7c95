"""Emotion recognisers that generalise: nested selection (the `select` model), the RBF SVM
learner, the dialogue input and model, and the tokens extractor's dialogue context."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.base import Sample
from features.dialogue import TURN_COLUMNS, single_turn, turn_features
from fusion.data.blocks import dialogue_block
from fusion.data.sequences import SequenceBlock
from fusion.evaluation.crossval import ModelSpec, cross_validate
from fusion.evaluation.splits import SplitConfig, make_folds
from fusion.models import select as select_module
from fusion.models.learners.svm import SVMLearner
from fusion.models.select import SelectModel
from fusion.models.targets import Targets
from fusion.persist import load_model, save_model


def blobs(n=240, k=4, seed=0, subjects=24):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    centres = rng.normal(0, 1.0, (k, 8))
    X = centres[y] + rng.normal(0, 1.2, (n, 8))
    X[:, 0] = np.arange(n)  # the row's id, as a feature (noise to the models)
    return {"a": X, "b": centres[y][:, :3] + rng.normal(0, 1.5, (n, 3))}, y, (np.arange(n) % subjects).astype(str)


def test_selection_never_sees_the_outer_test_samples(monkeypatch):
    """Every row a candidate is fitted on or scored on while the select model chooses is a
    training row of the outer fold; the outer fold's test rows reach only the chosen model."""
    blocks, y, groups = blobs()
    folds = make_folds(SplitConfig(scheme="grouped-kfold", n_splits=4, n_repeats=1, inner_splits=3), y, groups)
    seen: list[set[int]] = []
    fitted_on: list[set[int]] = []
    take = select_module.take

    def spy_take(b, rows):
        part = take(b, rows)
        seen[-1] |= set(part["a"][:, 0].astype(int).tolist())
        return part

    fit = SelectModel._fit

    def spy_fit(self, b, targets, **kw):
        fitted_on.append(set(b["a"][:, 0].astype(int).tolist()))
        seen.append(set())
        return fit(self, b, targets, **kw)

    monkeypatch.setattr(select_module, "take", spy_take)
    monkeypatch.setattr(SelectModel, "_fit", spy_fit)
    candidates = [{"name": "early-fusion", "params": {"learner": {"name": "logreg", "params": {"C": c}}}}
                  for c in (0.01, 1.0)]
    res = cross_validate(blocks, y, folds, model=ModelSpec("select", {"candidates": candidates}), n_classes=4,
                         kind="nominal")
    assert len(fitted_on) == len(folds) == 4
    for fold, train_ids, ids in zip(folds, fitted_on, seen, strict=True):
        test_ids = set(fold.test.tolist())
        assert train_ids == set(fold.train.tolist())
        assert ids and ids <= train_ids and not ids & test_ids
    assert np.isfinite(res.variants["model"]).all()
    assert all(f["chosen"] in (0, 1) for f in res.fitted)


def test_select_chooses_on_inner_folds_and_saves_the_choice(tmp_path):
    blocks, y, groups = blobs(seed=1)
    from fusion.evaluation.splits import grouped_kfold

    inner = grouped_kfold(y, groups, 3, 0)
    candidates = [{"name": "early-fusion", "params": {"learner": {"name": "logreg", "params": {"C": 1e-5}}}},
                  {"name": "early-fusion", "params": {"learner": {"name": "logreg", "params": {"C": 1.0}}}}]
    m = SelectModel(candidates=candidates, metric="uar").fit(blocks, Targets.classes(y, 4), inner=inner)
    s = m.summary()
    assert s["chosen"] == 1 and s["candidate_scores"][1]["uar"] > s["candidate_scores"][0]["uar"]
    assert all(c["n"] == len(y) for c in s["candidate_scores"])
    save_model(m, tmp_path / "m", {"a": [f"a{i}" for i in range(8)], "b": ["b0", "b1", "b2"]})
    again = load_model(tmp_path / "m")
    np.testing.assert_allclose(again.predict_proba(blocks), m.predict_proba(blocks))
    with pytest.raises(ValueError, match="at least 3 inner folds"):
        SelectModel(candidates=candidates).fit(blocks, Targets.classes(y, 4), inner=inner[:2])


@pytest.mark.parametrize("k", [2, 4])
def test_svm_learner_reproduces_scikit_learns_decisions_and_saves_as_arrays(k, tmp_path):
    from sklearn.svm import SVC

    rng = np.random.default_rng(k)
    X = rng.normal(size=(150, 20))
    y = rng.integers(0, k, 150)
    X[:, :3] += y[:, None] * 0.8
    X[rng.random(X.shape) < 0.02] = np.nan
    learner = SVMLearner(C=2.0, select=8).fit(X, y, n_classes=k)
    Z = learner.standardise(X)[:, learner.keep_]
    assert len(learner.keep_) == 8 and {0, 1, 2} <= set(learner.keep_.tolist())
    ref = SVC(C=2.0, gamma="scale", class_weight="balanced", decision_function_shape="ovo").fit(Z, y)
    d = learner.decision(X)
    np.testing.assert_allclose(d if k > 2 else d[:, 0], ref.decision_function(Z), atol=1e-9)
    proba = learner.predict_proba(X)
    assert proba.shape == (150, k) and np.allclose(proba.sum(1), 1)
    from fusion.models.learners.base import load_learner, save_learner

    info = save_learner(learner, tmp_path / "svm")
    import json

    again = load_learner(json.loads(json.dumps(info)), tmp_path / "svm")
    np.testing.assert_allclose(again.predict_proba(X), proba)
    score = X[:, 3] * 2 + 1
    filled = np.nan_to_num(X)
    reg = SVMLearner(select=5).fit(filled, np.nan_to_num(score), task="regression")
    from sklearn.svm import SVR

    Zr = reg.standardise(filled)[:, reg.keep_]
    target = np.nan_to_num(score)
    ref = SVR(C=1.0, gamma="scale").fit(Zr, (target - target.mean()) / target.std())
    np.testing.assert_allclose(reg.predict(filled), ref.predict(Zr) * target.std() + target.mean(), atol=1e-9)
    again = load_learner(json.loads(json.dumps(save_learner(reg, tmp_path / "r"))), tmp_path / "r")
    np.testing.assert_allclose(again.predict(filled), reg.predict(filled))


def test_turn_features_say_who_speaks_and_when_the_speaker_changes():
    f = pd.DataFrame(turn_features(["Ross", "Rachel", "Rachel", "Joey", "Monica", "Phoebe"], 2),
                     columns=TURN_COLUMNS)
    assert f["turn:self"].tolist() == [0, 0, 1, 0, 0, 0]
    assert f["turn:same_speaker"].tolist() == [0, 1, 1, 0, 0, 0]
    assert f["turn:speaker_change"].tolist() == [0, 1, 0, 1, 1, 1]
    assert f[[f"turn:speaker_{k}" for k in range(4)]].to_numpy().argmax(1).tolist() == [0, 1, 1, 2, 3, 3]
    assert single_turn().tolist() == [1, 1, 0, 1, 0, 0, 0]


def test_a_dialogue_block_holds_each_utterance_among_its_neighbours():
    ids = [f"d{d}_u{u}" for d, n in ((0, 5), (1, 2)) for u in range(n)]
    labels = pd.DataFrame({"group": [i.split("_")[0] for i in ids],
                           "subject_id": ["A", "B", "A", "A", "C", "A", "B"]}, index=ids)
    pooled = pd.DataFrame({"x": np.arange(7.0)}, index=ids)
    pooled.loc["d0_u3", "x"] = np.nan  # an utterance without features
    block = dialogue_block(pooled, labels, 2, "input 'text'")
    assert isinstance(block, SequenceBlock) and block.shape == (7, 5, 1 + len(TURN_COLUMNS))
    row = ids.index("d0_u1")  # the window u0..u3 with the sample at position 0
    assert block.starts[row, :4].tolist() == [-1, 0, 1, 2]
    # u3 has no features: not a (zero-filled) turn; the window goes on to u4
    np.testing.assert_array_equal(block.values[row, :4, 0], [0, 1, 2, 4])
    assert block.values[row, :4, 1].tolist() == [0, 1, 0, 0]  # turn:self
    assert block.values[row, :4, 2].tolist() == [0, 1, 0, 0]  # same speaker as the sample (B)
    assert block.values[row, :4, 3].tolist() == [0, 1, 1, 1]  # speaker change: A B A C
    assert np.isnan(block.values[row, 4:]).all() and block.lengths[row] == 4
    row = ids.index("d1_u0")  # another dialogue: its neighbours only, padded after
    assert block.lengths[row] == 2 and block.starts[row, :2].tolist() == [0, 1]
    assert np.isnan(block.values[row, 2:]).all()
    assert np.isnan(block.values[ids.index("d0_u3")]).all()  # no features: the sample is missing
    with pytest.raises(Exception, match="dialogue needs groups"):
        dialogue_block(pooled, labels.drop(columns="group"), 2, "input 'text'")


def test_tokens_context_keeps_the_utterance_whole_and_the_most_recent_context():
    from features.tokens import TokenExtractor

    ext = TokenExtractor(context=2, max_length=24)
    sample = Sample("dev_dia1_utt3", "Ross", text="We were on a break!", speaker="Ross",
                    context=(("Monica", "oldest words here"), ("Rachel", "this is the middle one"),
                             ("Joey", "how you doin")))
    alone = Sample("dev_dia1_utt0", "Ross", text="We were on a break!", speaker="Ross")
    res = ext.process_samples([(sample, None), (alone, None)])
    tok = ext.tokenizer
    rows = res.frame.to_numpy()
    with_context = tok.decode([int(v) for v in rows[0] if v == v])
    assert with_context.startswith("[CLS] ross : we were on a break! [SEP] joey : how you doin | rachel")
    assert "monica" not in with_context and with_context.endswith("[SEP]")
    assert tok.decode([int(v) for v in rows[1] if v == v]) == "[CLS] ross : we were on a break! [SEP]"
    plain = TokenExtractor(max_length=24).process_samples([(sample, None)]).frame.to_numpy()[0]
    assert tok.decode([int(v) for v in plain if v == v]) == "[CLS] we were on a break! [SEP]"


def test_meld_samples_carry_their_dialogues_earlier_utterances(tmp_path):
    from fusion.datasets.base import build_dataset

    rows = [("Hi.", "Ross", 0, 0), ("Hey!", "Rachel", 0, 1), ("So?", "Ross", 0, 2), ("New.", "Joey", 1, 0)]
    pd.DataFrame({"Sr No.": range(4), "Utterance": [r[0] for r in rows], "Speaker": [r[1] for r in rows],
                  "Emotion": "neutral", "Sentiment": "neutral", "Dialogue_ID": [r[2] for r in rows],
                  "Utterance_ID": [r[3] for r in rows], "Season": 1, "Episode": 1,
                  "StartTime": "00:00:01,000", "EndTime": "00:00:02,000"}).to_csv(tmp_path / "dev_sent_emo.csv",
                                                                                 index=False)
    from fusion.config.schema import DatasetSpec

    ds = build_dataset(DatasetSpec(name="meld", root=tmp_path, params={"splits": ["dev"]}))
    by_id = {s.sample_id: s for s in ds.samples()}
    assert by_id["dev_dia0_utt2"].context == (("Ross", "Hi."), ("Rachel", "Hey!"))
    assert by_id["dev_dia0_utt2"].speaker == "Ross"
    assert by_id["dev_dia1_utt0"].context == ()


def test_no_test_sample_is_scored_on_augmented_features_and_copies_only_train(monkeypatch):
    """Copies carry a marker (+1000 in every feature): whatever the wrapped model predicts during
    cross-validation — test folds, inner validation parts — holds no marked value, and every
    fit sees the copies of its training samples only."""
    from fusion.models.early_fusion import EarlyFusion

    blocks, y, groups = blobs(seed=2)
    blocks = {"a": blocks["a"], "b": blocks["b"], "a_speed": blocks["a"] + 1000.0, "a_noise": blocks["a"] + 1000.0}
    blocks["a_noise"][:10] = np.nan  # this copy failed for some samples: no row for them
    folds = make_folds(SplitConfig(scheme="grouped-kfold", n_splits=4, n_repeats=1, inner_splits=3), y, groups)
    predicted, fits = [], []
    proba, fit = EarlyFusion.predict_proba, EarlyFusion._fit

    def spy_proba(self, b, modalities=None):
        predicted.append(np.asarray(b["a"]))
        return proba(self, b, modalities)

    def spy_fit(self, b, targets, *, inner, **kw):
        a = np.asarray(b["a"])
        fits.append(a)
        for _tr, va in inner:  # inner validation parts: clean rows only
            assert (a[va, 1:] < 500).all()
        return fit(self, b, targets, inner=inner, **kw)

    monkeypatch.setattr(EarlyFusion, "predict_proba", spy_proba)
    monkeypatch.setattr(EarlyFusion, "_fit", spy_fit)
    spec = ModelSpec("augment", {"model": {"name": "early-fusion", "params": {"learner": {"name": "logreg"}}},
                                 "copies": [{"a": "a_speed"}, {"a": "a_noise"}]})
    res = cross_validate(blocks, y, folds, model=spec, n_classes=4, kind="nominal")
    assert predicted and all((p[:, 1:] < 500).all() for p in predicted)
    for fold, a in zip(folds, fits, strict=True):
        ids = a[:, 0] % 1000  # the id column, marked or not
        train = set(fold.train.tolist())
        assert set(ids.astype(int).tolist()) == train  # copies of training samples only
        n_marked = int((a[:, 1] > 500).sum())
        assert n_marked == len(fold.train) + int((fold.train >= 10).sum())
    assert np.isfinite(res.variants["model"]).all()
    assert all(f["augmented_rows"] > 0 for f in res.fitted)
    clean = ModelSpec("augment", {**spec.params, "use_copies": False})
    fits.clear()
    cross_validate(blocks, y, folds, model=clean, n_classes=4, kind="nominal")
    assert all((a[:, 1:] < 500).all() and len(a) == len(f.train) for a, f in zip(fits, folds, strict=True))


def test_a_dialogue_model_is_trained_end_to_end_and_runs_one_utterance_as_a_dialogue_of_one_turn(tmp_path,
                                                                                                   demo_corpus):
    """`fusion train` of `dialogue-context` over MELD-layout dialogues (the `dialogue` input), its
    saved recogniser applied by the `emotion` extractor to participant turns: each turn is a
    dialogue of one turn, and its posteriors are the model's for exactly that."""
    from features.registry import build_extractor

    train_on_meld(tmp_path, {"text": [{"features": "text", "dialogue": 2}]},
                  {"name": "dialogue-context", "params": {"hidden": 16, "max_epochs": 3, "patience": 2,
                                                          "class_weight": None}})
    ext = build_extractor("emotion", {"model": str(tmp_path / "models" / "emotion")})
    sample = next(s for s in build_dataset_samples(demo_corpus))
    turns = ext.process_samples([(sample, None)])
    assert not turns.errors and turns.frame.shape[0] == 1
    cols = list(turns.frame.columns)
    assert cols[:7] == [f"p_{c}" for c in CLASSES] and any(c.startswith("emb_") for c in cols)
    # the same posteriors from the model given the utterance as a one-turn dialogue by hand
    from fusion.persist import load_model

    sentence = build_extractor("sentence", {"session": "mean"}).process_samples([(sample, None)]).frame
    x = np.hstack([sentence.to_numpy()[:, :384], single_turn()[None, :]])
    block = SequenceBlock(x[:, None, :], np.zeros((1, 1)), np.ones((1, 1)), np.ones(1, dtype=np.int64))
    expected = load_model(tmp_path / "models" / "emotion").predict_proba({"text": block})
    np.testing.assert_allclose(turns.frame.to_numpy()[0, :7], expected[0], rtol=1e-5, atol=1e-6)


CLASSES = ["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"]


def train_on_meld(tmp_path, modalities: dict, model: dict) -> None:
    """`fusion extract` (sentence embeddings) and `fusion train` (train → dev, 2 inner folds) of
    `model` over `modalities` on a small MELD-layout corpus; the recogniser is saved to
    tmp_path/models/emotion and every dev utterance is scored."""
    import json

    import yaml

    from fusion.cli import main
    from tests.test_emotion import write_meld

    meld = write_meld(tmp_path / "meld")
    extract = {"dataset": {"name": "meld", "root": str(meld)}, "store": str(tmp_path / "store"), "progress": False,
               "features": {"text": {"extractor": {"name": "sentence", "params": {"session": "mean"}}}}}
    train = {"extract": "extract.yaml", "modalities": modalities,
             "targets": {"emotion": {"label": "emotion", "classes": CLASSES}}, "model": model,
             "cv": {"scheme": "official", "train_splits": ["train"], "test_splits": ["dev"], "inner_splits": 2},
             "evaluation": {"n_bootstrap": 0, "save_model": True, "model_dir": str(tmp_path / "models")},
             "tracking": {"enabled": False}, "output_dir": str(tmp_path / "out")}
    (tmp_path / "extract.yaml").write_text(yaml.safe_dump(extract))
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train))
    assert main(["extract", "--config", str(tmp_path / "extract.yaml")]) == 0
    assert main(["train", "--config", str(tmp_path / "train.yaml"), "--json", str(tmp_path / "t.json")]) == 0
    assert json.loads((tmp_path / "t.json").read_text())["targets"]["emotion"]["n_samples"] == 15


def build_dataset_samples(root):
    from fusion.config.schema import DatasetSpec
    from fusion.datasets.base import build_dataset

    return build_dataset(DatasetSpec(name="daic-woz", root=root, params={"splits": ["train"]})).samples()


def test_audio_augmentation_is_its_own_feature_set_and_reproducible(tmp_path):
    import soundfile as sf

    from features.audio import Augment, LogMelStatsExtractor, OpenSmileExtractor, augment_signal
    from features.base import ExtractionError, Segment
    from features.registry import build_extractor

    sr = 16000
    t = np.arange(sr) / sr
    signal = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    fast = augment_signal(signal, sr, Augment(speed=1.25), "s1")
    assert abs(len(fast) - sr / 1.25) <= 2
    noisy = augment_signal(signal, sr, Augment(noise_snr=10), "s1")
    snr = 10 * np.log10(np.mean(signal.astype(float) ** 2) / np.mean((noisy - signal).astype(float) ** 2))
    assert abs(snr - 10) < 0.3
    np.testing.assert_array_equal(noisy, augment_signal(signal, sr, Augment(noise_snr=10), "s1"))
    assert not np.array_equal(noisy, augment_signal(signal, sr, Augment(noise_snr=10), "s2"))
    # clean parameters keep their hash (no `augment` key); a copy is a feature set of its own
    assert "augment" not in OpenSmileExtractor().get_params() and "augment" not in LogMelStatsExtractor().get_params()
    aug = build_extractor("logmel", {"augment": {"speed": 0.9}})
    assert aug.get_params()["augment"] == {"speed": 0.9, "noise_snr": None, "seed": 0}
    path = tmp_path / "a.wav"
    sf.write(path, signal, sr)
    sample = Sample("a", "s", media={"audio": path})
    clean = LogMelStatsExtractor().process_sample(sample, None)
    assert not np.allclose(aug.process_sample(sample, None).to_numpy(), clean.to_numpy())
    with pytest.raises(ExtractionError, match="speed perturbation changes the timeline"):
        aug.process_sample(sample, [Segment(0.0, 0.5)])


def test_a_saved_selection_of_augmented_models_asks_the_extractor_for_clean_inputs_only(tmp_path):
    from fusion.evaluation.splits import grouped_kfold
    from fusion.persist import open_recogniser

    blocks, y, groups = blobs(seed=3)
    blocks["a_speed"] = blocks["a"] + 0.1
    copies = [{"a": "a_speed"}]
    logreg = {"name": "early-fusion", "params": {"learner": {"name": "logreg"}}}
    candidates = [{"name": "augment", "params": {"copies": copies, "use_copies": flag, "model": logreg}}
                  for flag in (False, True)]
    m = SelectModel(candidates=candidates).fit(blocks, Targets.classes(y, 4), inner=grouped_kfold(y, groups, 3, 0))
    assert m.modalities == ["a", "b"]
    columns = {k: [f"{k}{i}" for i in range(v.shape[1])] for k, v in blocks.items()}
    recipe = {"features": "f", "extractor": {"name": "logmel", "params": {}}, "segmentation": {"level": "session"},
              "pool": ["mean"]}
    save_model(m, tmp_path / "m", columns, target={"name": "emotion", "classes": list("abcd")},
               inputs={k: [recipe] for k in blocks})
    rec = open_recogniser(tmp_path / "m")
    assert set(rec.columns) == set(rec.inputs) == {"a", "b"}
    clean = {k: blocks[k] for k in ("a", "b")}
    np.testing.assert_allclose(rec.predict_proba(clean), m.predict_proba(blocks))


def test_augment_names_copies_that_are_missing_or_of_another_shape():
    from fusion.models.augment import AugmentedTraining

    blocks, y, groups = blobs(seed=4)
    from fusion.evaluation.splits import grouped_kfold

    inner = grouped_kfold(y, groups, 3, 0)
    with pytest.raises(ValueError, match=r"\['a_noise'\] named in `copies` are not among"):
        AugmentedTraining(copies=[{"a": "a_noise"}]).fit(blocks, Targets.classes(y, 4), inner=inner)
    with pytest.raises(ValueError, match="copy 'a_short' of 'a' has 3 features, the clean modality 8"):
        AugmentedTraining(copies=[{"a": "a_short"}]).fit({**blocks, "a_short": blocks["a"][:, :3]},
                                                         Targets.classes(y, 4), inner=inner)
    with pytest.raises(ValueError, match="cannot be its own copy"):
        AugmentedTraining(copies=[{"a": "a"}])
