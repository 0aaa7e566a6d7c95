"""ATEI (acoustic–textual emotional inconsistency) fusion: the mechanism, the joint heads, the
posterior divergence, attributions, the evaluator's comparisons and the 2-process DDP path.
The contract (shapes, masking, save → load, seeds) is in tests/test_contract.py."""

from __future__ import annotations

import numpy as np
import pytest

from fusion.data.sequences import SequenceBlock
from fusion.evaluation.splits import grouped_kfold
from fusion.models.atei import ATEIFusion, js_divergence
from fusion.models.targets import Targets
from fusion.synthetic.inconsistency import inconsistency_sessions

FAST = {"hidden": 16, "heads": 2, "max_epochs": 40, "patience": 8, "batch_size": 32, "lr": 3e-3,
        "refit": False, "max_inner": 1, "modality_dropout": 0.0, "dropout": 0.1}


def split(blocks, y, n_train):
    tr, te = np.arange(n_train), np.arange(n_train, len(y))
    inner = grouped_kfold(y[tr], tr.astype(str), 4, 0)[:1]
    return {m: b[tr] for m, b in blocks.items()}, {m: b[te] for m, b in blocks.items()}, y[tr], y[te], inner


def accuracy(model, blocks, y, modalities=None) -> float:
    return float((model.predict_proba(blocks, modalities).argmax(1) == y).mean())


@pytest.fixture(scope="module")
def mechanism():
    """600 sessions whose label is only the turn-by-turn (dis)agreement of the streams."""
    blocks, y = inconsistency_sessions(600, 12, seed=0, min_turns=8)
    btr, bte, ytr, yte, inner = split(blocks, y, 400)
    atei = ATEIFusion(**FAST).fit(btr, Targets.classes(ytr, 2), inner=inner)
    off = ATEIFusion(**{**FAST, "fusion": "none"}).fit(btr, Targets.classes(ytr, 2), inner=inner)
    return atei, off, bte, yte


def test_only_the_inconsistency_carries_the_label(mechanism):
    atei, off, bte, yte = mechanism
    assert accuracy(atei, bte, yte) > 0.85, "ATEI did not find the turn-level mismatch"
    assert accuracy(off, bte, yte) < 0.62, "with ATEI off the streams alone should be near chance"
    # each stream alone, the other masked: chance (the streams' emotions are uniform in both classes)
    for stream in ("audio", "text"):
        assert accuracy(atei, bte, yte, [stream]) < 0.62


def test_turn_attributions_sum_to_the_logit_change_and_skip_absent_turns(mechanism):
    import torch

    atei, _, bte, _ = mechanism
    sub = {m: b[:16] for m, b in bte.items()}
    turns = atei.turn_contributions(sub, n_steps=64)
    assert set(turns) == {"audio", "text"} and turns["audio"].shape == sub["audio"].shape[:2]
    assert np.all(turns["audio"][~sub["audio"].mask] == 0)
    # completeness of Integrated Gradients: the shares add up to logit(x) − logit(training mean)
    inputs = atei._tensors(atei.scalers_, sub)
    pred = atei.predict_proba(sub).argmax(1)
    with torch.no_grad():
        logit = atei.net_(**inputs)["y"].numpy()[np.arange(16), pred]
        zero = {**inputs, "x": {m: torch.zeros_like(v) for m, v in inputs["x"].items()}}
        base = atei.net_(**zero)["y"].numpy()[np.arange(16), pred]
    total = turns["audio"].sum(1) + turns["text"].sum(1)
    np.testing.assert_allclose(total, logit - base, atol=0.05 * np.abs(logit - base).max() + 1e-3)
    contrib = atei.modality_contributions(sub)
    assert contrib.shape == (16, 2)
    default = atei.turn_contributions(sub)  # the same Integrated Gradients, default steps
    np.testing.assert_allclose(contrib, np.column_stack([default["audio"].sum(1), default["text"].sum(1)]),
                               rtol=1e-5, atol=1e-5)


def test_joint_heads_predict_the_score_and_survive_save_and_load(tmp_path):
    from fusion.persist import load_model, save_model

    rng = np.random.default_rng(1)
    blocks, y = inconsistency_sessions(600, 12, seed=0, min_turns=8)
    score = np.where(y == 1, 15.0, 4.0) + rng.normal(0, 1, len(y))
    score[::17] = np.nan  # unknown scores are left out of the score loss
    sev = (np.nan_to_num(score, nan=9.0) // 5).clip(0, 3).astype(int)
    btr, bte, ytr, _, inner = split(blocks, sev, 400)
    targets = Targets.classes(ytr, 4, ordinal=True, score=score[:400], binary=(sev[:400] >= 2).astype(float))
    model = ATEIFusion(**FAST).fit(btr, targets, inner=inner)
    assert model.scores_jointly() and set(model.heads_out_) == {"y", "binary", "score"}
    pred = model.predict_score(bte)
    ok = ~np.isnan(score[400:])
    assert np.corrcoef(pred[ok], score[400:][ok])[0, 1] > 0.6
    save_model(model, tmp_path / "m", {m: list(b.columns) for m, b in blocks.items()})
    loaded = load_model(tmp_path / "m")
    np.testing.assert_allclose(loaded.predict_proba(bte), model.predict_proba(bte), atol=1e-6)
    np.testing.assert_allclose(loaded.predict_score(bte), pred, atol=1e-5)
    assert loaded.summary()["streams"] == ["audio", "text"]


def test_posterior_divergence_maps_emotion_names_across_corpora():
    assert js_divergence(np.array([0.2, 0.8]), np.array([0.2, 0.8])) == pytest.approx(0.0, abs=1e-12)
    assert js_divergence(np.array([1.0, 1e-12]), np.array([1e-12, 1.0])) == pytest.approx(1.0, abs=1e-6)
    blocks, y = inconsistency_sessions(120, 6, seed=2, posteriors=True)
    # the text stream named like MELD (joy/sadness), the voice like RAVDESS (calm for neutral)
    rename = {"text_emotion/p_happy": "text_emotion/p_joy", "text_emotion/p_sad": "text_emotion/p_sadness",
              "audio_emotion/p_neutral": "audio_emotion/p_calm"}
    blocks = {m: SequenceBlock(b.values, b.starts, b.ends, b.lengths, tuple(rename.get(c, c) for c in b.columns))
              for m, b in blocks.items()}
    btr, bte, ytr, yte, inner = split(blocks, y, 80)
    model = ATEIFusion(**{**FAST, "max_epochs": 3, "posteriors": "*/p_*"}).fit(btr, Targets.classes(ytr, 2), inner=inner)
    assert model.summary()["shared_emotions"] == ["happy", "neutral", "sad"]
    div = model._divergence(bte)
    assert div.shape == bte["audio"].shape[:2] and np.isfinite(div).all() and (div >= 0).all() and (div <= 1).all()
    with pytest.raises(ValueError, match="emotion_map"):
        ATEIFusion(**{**FAST, "posteriors": "*/p_[hj]*"}).fit(btr, Targets.classes(ytr, 2),
                                                             inner=inner)


def test_turn_order_positions_ignore_start_times():
    blocks, y = inconsistency_sessions(60, 5, seed=5)
    btr, bte, ytr, _, inner = split(blocks, y, 40)
    model = ATEIFusion(**{**FAST, "max_epochs": 2, "positions": "order"}).fit(btr, Targets.classes(ytr, 2), inner=inner)
    shifted = {m: SequenceBlock(b.values, b.starts * 3 + 100, b.ends * 3 + 100, b.lengths, b.columns)
               for m, b in bte.items()}
    np.testing.assert_allclose(model.predict_proba(shifted), model.predict_proba(bte), atol=1e-6)
    timed = ATEIFusion(**{**FAST, "max_epochs": 2}).fit(btr, Targets.classes(ytr, 2), inner=inner)
    assert not np.allclose(timed.predict_proba(shifted), timed.predict_proba(bte), atol=1e-6)


def test_configuration_errors_name_the_problem():
    blocks, y = inconsistency_sessions(40, 4, seed=3)
    inner = grouped_kfold(y, np.arange(40).astype(str), 2, 0)
    pooled = {"audio": np.nanmean(blocks["audio"].values, axis=1), "text": blocks["text"]}
    with pytest.raises(ValueError, match="two sequence modalities"):
        ATEIFusion(**FAST).fit(pooled, Targets.classes(y, 2), inner=inner)
    with pytest.raises(ValueError, match="must be a per-turn sequence"):
        ATEIFusion(**FAST, acoustic="audio", textual="text").fit(pooled, Targets.classes(y, 2),
                                                                 inner=inner)
    with pytest.raises(ValueError, match="not a modality"):
        ATEIFusion(**FAST, acoustic="voice").fit(blocks, Targets.classes(y, 2), inner=inner)
    with pytest.raises(ValueError, match="fusion: none"):
        ATEIFusion(fusion="none", posteriors="*/p_*")
    with pytest.raises(ValueError, match="compare"):
        ATEIFusion(compare=["nonsense"])
    # the late-fusion comparison's wrapper refuses a model that cannot take pooled rows
    from fusion.models.base import MODELS

    with pytest.raises(ValueError, match="does not take pooled inputs"):
        MODELS.get("pooled")(model={"name": "atei"})


def test_the_evaluator_fits_the_comparisons_on_the_same_folds_and_uses_the_score_head():
    from fusion.evaluation.crossval import ModelSpec, cross_validate, summarise
    from fusion.evaluation.splits import SplitConfig, make_folds

    blocks, y = inconsistency_sessions(150, 8, seed=4)
    groups = np.arange(150).astype(str)
    score = y * 10.0 + np.random.default_rng(0).normal(0, 1, 150)
    folds = make_folds(SplitConfig(n_splits=3, n_repeats=1, inner_splits=2), y, groups)
    params = {**FAST, "max_epochs": 4, "compare": ["atei-off", "no-scale", "late-fusion"]}
    res = cross_validate(blocks, y, folds, model=ModelSpec("atei", params), n_classes=2, score=score,
                         ablation=True, positive_from=1)
    assert {"atei:audio", "atei:text", "atei:audio+text", "atei-off:audio+text", "atei-no-scale:audio+text",
            "late-fusion:audio+text"} <= set(res.ablation)
    for name in res.ablation:
        assert np.isfinite(res.variants[name][0]).all(), name
    assert np.isfinite(res.regression[0]).all()  # from the joint score head, no separate model
    summarise(res, y, groups, score, n_bootstrap=20, seed=0)
    assert "f1_weighted_gain_of_model" in res.metrics["atei-off:audio+text"]


def test_two_process_ddp_training_on_cpu():
    """strategy ddp_fork, 2 CPU processes (gloo): both train in step, the best epoch's weights
    and the early-stopping record come back to the main process, and the model learns."""
    blocks, y = inconsistency_sessions(300, 10, seed=0, min_turns=8)
    btr, bte, ytr, yte, inner = split(blocks, y, 200)
    model = ATEIFusion(**{**FAST, "batch_size": 8, "patience": 15, "max_epochs": 30, "device": "cpu",
                          "strategy": "ddp_fork", "devices": 2}).fit(btr, Targets.classes(ytr, 2), inner=inner)
    assert model.trained_on_ == "cpu (32-true) × 2 processes"
    assert model.best_epochs_ and model.best_epochs_[0] >= 1
    assert accuracy(model, bte, yte) > 0.8
