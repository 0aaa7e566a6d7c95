"""Decision rules (`fusion.evaluation.decision`): per-class offsets on the log probabilities,
chosen on a model's predictions of training samples it was not fitted on, that name the rarer
classes as often as the target's metric (weighted F1, macro F1, UAR) rewards. The offsets of a
fold never depend on its test labels; the probabilities, and every metric of them, are unchanged;
a saved model keeps its rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fusion.evaluation.crossval import ModelSpec, cross_validate, summarise
from fusion.evaluation.decision import decide, fit_offsets
from fusion.evaluation.metrics import f1_scores
from fusion.evaluation.splits import Fold, grouped_kfold
from fusion.models.base import MODELS
from fusion.models.targets import Targets
from fusion.persist import load_model, save_model

LOGREG = ModelSpec("early-fusion", {"learner": {"name": "logreg", "params": {"C": 1.0}}})


def calibrated_sample(n: int, rng: np.random.Generator, prior=(0.7, 0.2, 0.1), sep: float = 1.0):
    """Probabilities of a 3-class problem with a dominant class, and labels drawn from them
    (so the probabilities are calibrated)."""
    k = len(prior)
    logits = rng.normal(0, sep, (n, k)) + np.log(prior)
    P = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(k, p=p) for p in P])
    return y, P


def test_offsets_fitted_on_one_sample_raise_the_metric_on_another():
    """Argmax of calibrated probabilities rarely names the rare classes; offsets fitted on one
    draw raise macro F1 and UAR on an independent draw of the same problem."""
    rng = np.random.default_rng(0)
    y_fit, P_fit = calibrated_sample(3000, rng)
    y_new, P_new = calibrated_sample(3000, rng)
    for rule, index in (("f1_macro", 1), ("f1_weighted", 0)):
        b, measured = fit_offsets(y_fit, P_fit, rule)
        assert measured["after"] >= measured["before"] and measured["n"] == 3000
        base = f1_scores(y_new, P_new.argmax(1), 3)[index]
        ruled = f1_scores(y_new, decide(P_new, b), 3)[index]
        assert ruled > base + (0.02 if rule == "f1_macro" else 0.0)
    b, _ = fit_offsets(y_fit, P_fit, "uar")
    assert b[2] > b[0]  # the rare class is named more often


def test_a_metric_that_argmax_already_maximises_leaves_the_offsets_at_zero():
    """Balanced, well-separated classes: no offset raises the metric, every offset stays 0."""
    y = np.repeat(np.arange(3), 20)
    P = np.full((60, 3), 0.05)
    P[np.arange(60), y] = 0.9
    b, measured = fit_offsets(y, P, "f1_weighted")
    np.testing.assert_array_equal(b, 0.0)
    assert measured["before"] == measured["after"] == 1.0


def test_decide_names_no_class_for_a_row_without_probabilities_and_refuses_too_few_rows():
    P = np.array([[0.6, 0.4], [np.nan, np.nan], [0.45, 0.55]])
    np.testing.assert_array_equal(decide(P), [0, -1, 1])
    np.testing.assert_array_equal(decide(P, np.array([0.0, 1.0])), [1, -1, 1])
    with pytest.raises(ValueError, match="needs at least 30"):
        fit_offsets(np.zeros(10, int), np.full((10, 2), 0.5), "uar")
    with pytest.raises(ValueError, match="unknown decision rule"):
        fit_offsets(np.zeros(40, int), np.full((40, 2), 0.5), "accuracy")


def nested_folds(y: np.ndarray, groups: np.ndarray, outer: int = 3, inner: int = 3) -> list[Fold]:
    folds = []
    for i, (tr, te) in enumerate(grouped_kfold(y, groups, outer, 0)):
        inner_folds = [(tr[a], tr[b]) for a, b in grouped_kfold(y[tr], groups[tr], inner, 1)]
        folds.append(Fold(0, i, 0, tr, te, inner_folds))
    return folds


def imbalanced_blocks(n: int = 240, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.choice(3, n, p=[0.7, 0.2, 0.1])
    X = rng.normal(size=(n, 6)) + 0.8 * np.eye(3)[y] @ rng.normal(size=(3, 6))
    groups = np.arange(n).astype(str)
    return {"a": X[:, :3], "b": X[:, 3:]}, y, groups


def test_cross_validation_fits_each_folds_rule_on_its_training_samples_only():
    blocks, y, groups = imbalanced_blocks()
    folds = nested_folds(y, groups)
    kw = dict(model=LOGREG, n_classes=3, kind="nominal", ablation=True, robustness=True, noise_levels=(1.0,))
    plain = cross_validate(blocks, y, folds, **kw)
    ruled = cross_validate(blocks, y, folds, decision="f1_macro", **kw)
    summarise(plain, y, groups, None, 50, 0)
    summarise(ruled, y, groups, None, 50, 0)
    # the probabilities are the same; only the named classes move
    np.testing.assert_allclose(ruled.variants["model"], plain.variants["model"])
    for metric in ("auc_ovr", "ece", "brier"):
        assert ruled.metrics["model"][metric]["mean"] == pytest.approx(plain.metrics["model"][metric]["mean"])
    labels = ruled.labels("model")
    assert ruled.metrics["model"]["f1_macro"]["mean"] == pytest.approx(f1_scores(y, labels[0], 3)[1])
    assert ruled.metrics["model"]["f1_macro"]["mean"] > plain.metrics["model"]["f1_macro"]["mean"]
    recall = [(labels[0][y == c] == c).mean() for c in range(3)]
    np.testing.assert_allclose(ruled.per_class["recall"]["mean"], recall)
    assert ruled.confusion.sum(0).tolist() == np.bincount(labels[0], minlength=3).tolist()
    # each fold's offsets are those its model fits on its own predictions of its training rows,
    # whatever the test labels are
    shuffled = y.copy()
    te = folds[0].test
    shuffled[te] = np.random.default_rng(5).permutation(shuffled[te])
    again = cross_validate(blocks, shuffled, folds[:1], decision="f1_macro", model=LOGREG, n_classes=3,
                           kind="nominal")
    np.testing.assert_array_equal(again.offsets["model"][0, te], ruled.offsets["model"][0, te])
    model = LOGREG.build().fit({m: b[folds[0].train] for m, b in blocks.items()},
                               Targets.classes(y[folds[0].train], 3),
                               inner=[(np.searchsorted(folds[0].train, a), np.searchsorted(folds[0].train, b))
                                      for a, b in folds[0].inner], seed=0)
    expected, _ = fit_offsets(y[folds[0].train], model.inner_predictions(), "f1_macro")
    np.testing.assert_allclose(ruled.offsets["model"][0, te[0]], expected)
    assert ruled.fitted[0]["decision"]["rule"] == "f1_macro"
    assert {"before", "after", "crossfit", "n"} <= set(ruled.fitted[0]["decision"])
    assert any(note.startswith("labels by the decision rule for f1_macro") for note in ruled.notes)
    assert not plain.notes and not plain.offsets
    # variants predicted by the fitted model (a dropped modality, an ablation subset by
    # prediction) are named by its rule; the paired gain of the full-set ablation row is 0
    assert "drop:a" in ruled.offsets and "noise:a:1" in ruled.offsets
    full = [v for v, (_, mods) in ruled.ablation.items() if mods == "a+b" and v.startswith("early")][0]
    assert ruled.metrics[full]["f1_weighted_gain_of_model"]["mean"] == pytest.approx(0.0)


def test_a_saved_model_keeps_its_rule_and_a_model_without_inner_predictions_has_none(tmp_path):
    blocks, y, groups = imbalanced_blocks()
    inner = grouped_kfold(y, groups, 3, 0)
    model = LOGREG.build().fit(blocks, Targets.classes(y, 3), inner=inner, seed=0)
    measured = model.fit_decision(y, "uar")
    assert measured["after"] >= measured["before"]
    offsets = model.decision_offsets()
    np.testing.assert_array_equal(model.predict(blocks), decide(model.predict_proba(blocks), offsets))
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    np.testing.assert_allclose(loaded.decision_offsets(), offsets)
    np.testing.assert_array_equal(loaded.predict(blocks), model.predict(blocks))
    # a damaged rule is named, not used
    import json

    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    manifest["decision"]["offsets"] = [0.0, "x"]
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="manifest.json: decision must name a rule .* one finite offset per class"):
        load_model(tmp_path / "m")
    bare = LOGREG.build().fit(blocks, Targets.classes(y, 3), inner=(), seed=0)
    with pytest.raises(ValueError, match="keeps no predictions of training samples"):
        bare.fit_decision(y, "f1_weighted")


def test_a_decision_rule_is_a_single_label_targets_setting():
    from fusion.config.schema import TargetSpec

    assert TargetSpec(label="e", classes=["a", "b"], decision="f1_weighted").decision == "f1_weighted"
    with pytest.raises(ValueError, match="decision rules are for single-label classes"):
        TargetSpec(label="cat_*", kind="multilabel", decision="f1_macro")
    with pytest.raises(ValueError):
        TargetSpec(label="e", classes=["a", "b"], decision="accuracy")
    assert MODELS.get("early-fusion")  # the rule is on the contract, for every registered model


def test_the_papers_protocol_refuses_a_decision_rule_before_reading_data():
    from fusion.config.schema import ConfigError, TrainConfig
    from fusion.protocols.base import PROTOCOLS

    cfg = TrainConfig(modalities={"a": [{"features": "x"}]}, model={"name": "early-fusion"},
                      targets={"t": {"label": "y", "classes": ["a", "b"], "decision": "uar"}})
    with pytest.raises(ConfigError, match="trimodal-paper protocol reproduces the paper's decisions"):
        PROTOCOLS.get("trimodal-paper")().check(cfg)
    PROTOCOLS.get("nested-cv")().check(cfg)


def test_fusion_train_with_a_rule_reports_it_and_saves_it_with_the_model(tmp_path):
    """`fusion train` on a RAVDESS-layout corpus with `decision: uar`: the printed note, each
    fold's rule, the predictions table's named classes (the rule's offsets on its probabilities)
    and the saved model's rule."""
    import json

    import pandas as pd
    from fixtures import ravdess_tree, write_configs

    from fusion.cli import main

    corpus = ravdess_tree(tmp_path / "ravdess", actors=(1, 2, 3, 4, 5, 6))  # 40 training clips per fold
    extract_cfg, train_cfg = write_configs(tmp_path, corpus, {"name": "logreg", "params": {"C": 1.0}},
                                           decision="uar")
    assert main(["extract", "--config", str(extract_cfg)]) == 0
    assert main(["train", "--config", str(train_cfg), "--json", str(tmp_path / "s.json")]) == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert any("labels by the decision rule for uar" in note for note in summary["notes"])
    out = Path(summary["outputs"]["dir"])
    folds = json.loads((out / "fitted_per_fold.json").read_text())["emotion"]
    preds = pd.read_csv(out / "emotion_predictions.csv")
    P = preds[[f"p{k}_repeat0" for k in range(4)]].to_numpy()
    named = preds["pred_repeat0"].to_numpy()
    assert all(f["decision"]["rule"] == "uar" and len(f["decision"]["offsets"]) == 4 for f in folds)
    # each sample is named by the offsets of the fold that scored it (leave one actor out, in
    # the groups' sorted order)
    groups = preds["group"].astype(str).to_numpy()
    for f in folds:
        rows = np.flatnonzero(groups == sorted(set(groups))[f["fold"]])
        np.testing.assert_array_equal(named[rows], decide(P[rows], np.asarray(f["decision"]["offsets"])))
    manifest = json.loads((tmp_path / "models" / "emotion" / "manifest.json").read_text())
    assert manifest["decision"]["rule"] == "uar" and len(manifest["decision"]["offsets"]) == 4
    assert load_model(tmp_path / "models" / "emotion").decision_offsets() is not None


def test_a_rule_with_too_few_predicted_training_samples_is_a_one_line_error(tmp_path, capsys):
    from fixtures import ravdess_tree, write_configs

    from fusion.cli import main

    corpus = ravdess_tree(tmp_path / "ravdess")  # 4 actors: 24 training clips per fold
    extract_cfg, train_cfg = write_configs(tmp_path, corpus, {"name": "logreg", "params": {"C": 1.0}},
                                           decision="f1_macro")
    assert main(["extract", "--config", str(extract_cfg)]) == 0
    capsys.readouterr()
    assert main(["train", "--config", str(train_cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error:") and "only 24 training samples" in err and "the target's `decision`" in err
