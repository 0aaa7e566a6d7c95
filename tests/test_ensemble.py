"""Stacking whole models (`fusion.models.ensemble`): the fusion layer is fitted on predictions of
training samples that no member was fitted on; each member reads its own modalities; a
fine-tuned encoder and a linear model are saved and reloaded together."""

from __future__ import annotations

import numpy as np
import pytest

from fusion.evaluation.splits import grouped_kfold
from fusion.models.base import MODELS
from fusion.models.targets import Targets
from fusion.persist import load_model, save_model

LOGREG = {"name": "early-fusion", "params": {"learner": {"name": "logreg", "params": {"C": 1.0e4}}}}
NET = {"name": "late-fusion-nn", "params": {"hidden": 8, "max_epochs": 20, "patience": 5, "max_inner": 1,
                                             "refit": False}}


def test_the_layer_is_fitted_on_predictions_of_samples_the_members_were_not_fitted_on():
    """Random labels and a logistic regression that memorises its 200 features: fitted on its
    in-sample outputs, the layer would trust it and its inner figure would be near 1. The
    members' inner predictions are at chance, and the layer uses the rows every member held out
    (the network's inner-validation part)."""
    rng = np.random.default_rng(0)
    n, k = 150, 3
    y = rng.integers(0, k, n)
    blocks = {"a": rng.normal(size=(n, 200)), "b": rng.normal(size=(n, 5))}
    groups = np.arange(n).astype(str)
    inner = grouped_kfold(y, groups, 3, 0)
    model = MODELS.get("ensemble")(members=[{"model": LOGREG, "modalities": ["a"]},
                                            {"model": NET, "modalities": ["b"]}])
    model.fit(blocks, Targets.classes(y, k), inner=inner, seed=0)
    lr, net = model.members_
    in_sample = (lr.predict_proba({"a": blocks["a"]}).argmax(1) == y).mean()
    assert in_sample > 0.95  # it does memorise
    np.testing.assert_array_equal(model.rows_, np.sort(inner[0][1]))  # the network validated there only
    scores = model.summary()["inner_validation"]
    assert scores["n"] == len(inner[0][1])
    assert scores["members"][0]["accuracy"] < 0.5 and scores["ensemble"]["accuracy"] < 0.5
    assert lr.modalities == ["a"] and net.modalities == ["b"]
    # the inner predictions are the members' out-of-fold outputs on those rows
    crossfit = model.inner_predictions()[model.rows_]
    assert np.isfinite(crossfit).all() and np.isnan(np.delete(model.inner_predictions(), model.rows_, 0)).all()
    # the network's inner-validation rows are predicted by the network that did not train on them
    assert np.isnan(net.inner_predictions()[inner[0][0]]).all()
    # neither member is strictly held out → the ensemble keeps no conformal calibration rows
    assert model.held_out() is None and model.inner_predictions() is not None


def test_members_read_their_own_modalities_and_a_left_out_member_adds_no_evidence():
    rng = np.random.default_rng(1)
    n, k = 120, 3
    y = np.arange(n) % k
    centres = rng.normal(0, 2, (k, 4))
    blocks = {"a": centres[y] + rng.normal(0, 1, (n, 4)), "b": centres[y][:, :3] + rng.normal(0, 1, (n, 3))}
    inner = grouped_kfold(y, np.arange(n).astype(str), 3, 0)
    model = MODELS.get("ensemble")(members=[{"model": {"name": "early-fusion"}, "modalities": ["a"]},
                                            {"model": {"name": "early-fusion"}, "modalities": ["b"]}])
    model.fit(blocks, Targets.classes(y, k), inner=inner, seed=0)
    only_a = model.predict_proba(blocks, ["a"])
    a = model.members_[0].predict_proba({"a": blocks["a"]})
    # the layer with member b absent: w_a log p_a + biases
    w, b = model.layer_.weights_, model.layer_.bias_
    z = b + w[0] * np.log(np.clip(a, 1e-12, 1))
    expected = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(only_a, expected / expected.sum(1, keepdims=True), atol=1e-9)
    with pytest.raises(ValueError, match="reads modality\\(ies\\) \\['c'\\]"):
        MODELS.get("ensemble")(members=[{"model": {"name": "early-fusion"}, "modalities": ["c"]},
                                        {"model": {"name": "early-fusion"}}]).fit(
            blocks, Targets.classes(y, k), inner=inner)
    with pytest.raises(ValueError, match="\\['b'\\] are read by no member"):
        MODELS.get("ensemble")(members=[{"model": {"name": "early-fusion"}, "modalities": ["a"]},
                                        {"model": {"name": "late-fusion"}, "modalities": ["a"]}]).fit(
            blocks, Targets.classes(y, k), inner=inner)
    with pytest.raises(ValueError, match="at least 2"):
        MODELS.get("ensemble")(members=[{"model": {"name": "early-fusion"}}])


def test_a_fine_tuned_encoder_and_a_linear_model_are_stacked_saved_and_reloaded(tmp_path):
    from transformers import BertConfig, BertModel

    from tests.test_text_finetune import token_data

    enc = tmp_path / "tiny_bert"
    BertModel(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=32)).save_pretrained(enc)
    tokens, y, groups = token_data()
    rng = np.random.default_rng(0)
    blocks = {"tokens": tokens["text"], "emb": np.eye(3)[y] + rng.normal(0, 1.5, (len(y), 3))}
    inner = grouped_kfold(y, groups, 3, 0)
    finetune = {"name": "text-finetune", "params": {"model": str(enc), "lr": 3e-3, "max_epochs": 8, "patience": 3,
                                                    "batch_size": 16, "device": "cpu", "warmup_epochs": 0,
                                                    "refit": False}}
    model = MODELS.get("ensemble")(members=[{"model": finetune, "modalities": ["tokens"]},
                                            {"model": {"name": "early-fusion"}, "modalities": ["emb"]}])
    model.fit(blocks, Targets.classes(y, 3), inner=inner, seed=0)
    np.testing.assert_array_equal(model.rows_, np.sort(inner[0][1]))
    p = model.predict_proba(blocks)
    assert np.allclose(p.sum(1), 1) and (p.argmax(1) == y).mean() > 0.6
    folder = save_model(model, tmp_path / "m", {"tokens": [f"tok_{i:03d}" for i in range(12)],
                                                "emb": ["e0", "e1", "e2"]})
    assert sorted(f.name for f in folder.iterdir()) == ["manifest.json", "member0", "member1"]
    loaded = load_model(folder)
    np.testing.assert_allclose(loaded.predict_proba(blocks), p, atol=1e-6)
    np.testing.assert_allclose(loaded.predict_proba(blocks, ["emb"]), model.predict_proba(blocks, ["emb"]), atol=1e-6)


def test_a_saved_ensemble_of_an_utterance_model_and_a_dialogue_model_runs_in_the_emotion_extractor(tmp_path,
                                                                                                    demo_corpus):
    """`fusion train` of an ensemble over one feature set given twice (the utterance's row, and
    its dialogue as turns), saved, then applied by the `emotion` extractor to a participant turn:
    the posteriors are the ensemble's for the turn's row and a dialogue of that one turn."""
    from features.dialogue import single_turn
    from features.registry import build_extractor
    from fusion.data.sequences import SequenceBlock
    from tests.test_emotion_context import build_dataset_samples, train_on_meld

    members = [{"modalities": ["text"], "model": {"name": "early-fusion"}},
               {"modalities": ["dialogue"], "model": {"name": "dialogue-context",
                                                      "params": {"hidden": 16, "max_epochs": 3, "patience": 2}}}]
    train_on_meld(tmp_path, {"text": [{"features": "text"}], "dialogue": [{"features": "text", "dialogue": 2}]},
                  {"name": "ensemble", "params": {"members": members}})
    sample = next(s for s in build_dataset_samples(demo_corpus))
    turns = build_extractor("emotion", {"model": str(tmp_path / "models" / "emotion")}).process_samples(
        [(sample, None)])
    assert not turns.errors and turns.frame.shape[0] == 1
    sentence = build_extractor("sentence", {"session": "mean"}).process_samples([(sample, None)]).frame
    row = sentence.to_numpy()[:, :384]
    x = np.hstack([row, single_turn()[None, :]])
    block = SequenceBlock(x[:, None, :], np.zeros((1, 1)), np.ones((1, 1)), np.ones(1, dtype=np.int64))
    expected = load_model(tmp_path / "models" / "emotion").predict_proba({"text": row, "dialogue": block})
    np.testing.assert_allclose(turns.frame.to_numpy()[0, :7], expected[0], rtol=1e-5, atol=1e-6)
