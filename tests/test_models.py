"""Learners, calibration, late and early fusion, persistence."""

from __future__ import annotations

import numpy as np
import pytest

from fusion.evaluation.metrics import ece_top_label, multiclass_metrics
from fusion.evaluation.splits import SplitConfig, grouped_kfold, make_folds
from fusion.models.base import MODELS
from fusion.models.calibration import Calibrator, nll, softmax
from fusion.models.early_fusion import EarlyFusion
from fusion.models.late_fusion import LateCalibratedFusion
from fusion.models.learners.base import LEARNERS
from fusion.models.stacking import LogLinearStacker
from fusion.models.targets import Targets
from fusion.persist import load_model, save_model


def blocks_data(n=300, k=3, seed=0, strengths=(1.0, 1.0, 0.0)):
    """Three modalities seeing a latent class through independent noise (the third: nothing)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    centres = rng.normal(0, 1, (k, 8))
    blocks = {}
    for name, s in zip(("a", "b", "c"), strengths, strict=True):
        blocks[name] = s * centres[y] + rng.normal(0, 1.6, (n, 8))
    groups = np.arange(n).astype(str)
    return blocks, y, groups


def inner(y, groups, n_splits=3):
    return grouped_kfold(y, groups, n_splits, 0)


@pytest.mark.parametrize("name", LEARNERS.names())
def test_every_learner_classifies_regresses_and_keeps_all_classes(name):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 1).astype(int)  # 3 classes
    params = {"max_epochs": 30} if name == "mlp" else {}
    learner = LEARNERS.get(name)(**params).fit(X[:90], y[:90], n_classes=4, eval_set=(X[90:], y[90:]))
    p = learner.predict_proba(X)
    assert p.shape == (120, 4) and np.allclose(p.sum(1), 1)  # class 3 absent, column kept
    assert (p.argmax(1) == y).mean() > 0.6
    reg = LEARNERS.get(name)(**params).fit(X, X[:, 0] * 3, task="regression")
    assert np.corrcoef(reg.predict(X), X[:, 0])[0, 1] > 0.8
    with pytest.raises(ValueError, match="has no parameter"):
        LEARNERS.get(name)(nonsense=1)


@pytest.mark.parametrize("method", ["temperature", "isotonic", "sigmoid"])
def test_calibration_repairs_overconfidence(method):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 4000)
    logits = np.eye(3)[y] * 1.0 + rng.normal(0, 1, (4000, 3))
    over = softmax(logits * 4)  # far too confident
    fit, test = slice(0, 2000), slice(2000, None)
    cal = Calibrator(method).fit(over[fit], y[fit])
    fixed = cal.transform(over[test])
    assert ece_top_label(y[test], fixed) < 0.5 * ece_top_label(y[test], over[test])
    assert nll(fixed, y[test]) < nll(over[test], y[test])
    again = Calibrator.from_dict(cal.to_dict()).transform(over[test])
    np.testing.assert_allclose(again, fixed, atol=1e-9)


def test_stacker_weights_the_informative_modality():
    blocks, y, groups = blocks_data(strengths=(1.2, 0.4, 0.0))
    model = LateCalibratedFusion(learner={"name": "logreg", "params": {"C": 1.0}}).fit(blocks, Targets.classes(y, 3), inner=inner(y, groups))
    w = model.summary()["fusion_weights"]
    assert w["a"] > w["b"] > w["c"] - 1e-9 and w["c"] < 0.3


def test_late_fusion_beats_each_modality_and_masks_missing_ones():
    tr_b, y, groups = blocks_data(n=600, seed=2)
    te_b, y_te, _ = blocks_data(n=400, seed=3)
    # the same class centres for train and test: draw both from one call
    allb, yy, gg = blocks_data(n=1000, seed=4)
    tr = {m: X[:600] for m, X in allb.items()}
    te = {m: X[600:] for m, X in allb.items()}
    model = LateCalibratedFusion().fit(tr, Targets.classes(yy[:600], 3),
                                       inner=inner(yy[:600], gg[:600]))
    f1 = lambda p: multiclass_metrics(yy[600:], p)["f1_weighted"]  # noqa: E731
    fused = f1(model.predict_proba(te))
    assert fused > f1(model.predict_proba(te, ["a"])) + 0.02
    assert fused > f1(model.predict_proba(te, ["b"])) + 0.02
    # a missing modality (NaN rows) adds no evidence: the product of the other experts
    te_missing = dict(te)
    te_missing["a"] = np.full_like(te["a"], np.nan)
    st = model.stacker(["a", "b", "c"])
    outs = model.modality_outputs(te)
    z = st.bias_ + sum(w * np.log(outs[m]) for m, w in zip("bc", st.weights_[1:], strict=True))
    np.testing.assert_allclose(model.predict_proba(te_missing), softmax(z), atol=1e-9)
    assert np.isfinite(model.predict_proba(te_missing)).all()
    contrib = model.modality_contributions(te_missing)
    assert np.isnan(contrib[:, 0]).all() and np.any(contrib[:, 1] != 0)  # a missing modality: no contribution


@pytest.mark.parametrize(("model", "params"), [
    ("late-fusion", {"learner": {"name": "logreg"}, "calibration": "temperature"}),
    ("late-fusion", {"learner": {"name": "ordinal"}, "calibration": "temperature"}),
    ("late-fusion", {"learner": {"name": "xgboost", "params": {"n_estimators": 20}}, "calibration": "isotonic"}),
    ("late-fusion", {"learner": {"name": "logreg"}, "calibration": "sigmoid", "fusion": "mean"}),
    ("late-fusion", {"learner": {"name": "logreg"}, "calibration": "none"}),
    ("early-fusion", {"learner": {"name": "logreg"}, "calibration": "temperature"}),
    ("early-fusion", {"learner": {"name": "xgboost", "params": {"n_estimators": 20}}, "calibration": "isotonic"}),
])
def test_feature_contributions_add_up_to_the_modality_contributions_on_the_fused_scale(model, params):
    """Features and modalities on one scale: a modality's feature contributions (through its
    learner, calibration and the fusion layer) add up to its contribution to the fused decision
    of the predicted class, relative to the average training sample."""
    allb, y, g = blocks_data(n=260, seed=8, strengths=(1.2, 0.6, 0.2))
    tr = {m: X[:200] for m, X in allb.items()}
    te = {m: X[200:].copy() for m, X in allb.items()}
    te["c"][:10] = np.nan  # some samples lack a modality
    fitted = MODELS.get(model)(**params).fit(tr, Targets.classes(y[:200], 3),
                                             inner=inner(y[:200], g[:200]))
    shares = fitted.modality_contributions(te)
    feats = fitted.feature_contributions(te)
    pred = fitted.predict_proba(te).argmax(1)
    rows = np.arange(len(pred))
    for j, m in enumerate(["a", "b", "c"]):
        summed = feats[m][rows, :, pred].sum(1)
        ok = ~np.isnan(shares[:, j])
        np.testing.assert_allclose(summed[ok], shares[ok, j], atol=1e-8)
        if model == "late-fusion" and m == "c":
            assert np.isnan(shares[:10, j]).all()  # missing: not a contribution of zero
    assert np.abs(shares[:, 0]).mean() > np.abs(shares[10:, 2]).mean()  # the informative modality weighs more


def test_linear_contributions_are_the_closed_form_on_the_fused_scale():
    """Logistic regression, temperature calibration, log-linear fusion: a feature's contribution
    to class c's fused logit is w_m / T_m × (β_jc − mean_k β_jk) × its standardised deviation."""
    allb, y, g = blocks_data(n=240, seed=9)
    fitted = LateCalibratedFusion(learner={"name": "logreg"}).fit(allb, Targets.classes(y, 3),
                                                                  inner=inner(y, g))
    feats = fitted.feature_contributions(allb)
    st = fitted.stacker(["a", "b", "c"])
    for j, m in enumerate(["a", "b", "c"]):
        lr, T = fitted.learners_[m], fitted.calibrators_[m].temperature_
        beta = lr.coef_ - lr.coef_.mean(0, keepdims=True)  # (k, f) centred over classes
        expected = lr.standardise(allb[m])[:, :, None] * beta.T[None] * st.weights_[j] / T
        np.testing.assert_allclose(feats[m], expected, atol=1e-9)


def test_late_fusion_needs_inner_folds():
    blocks, y, _ = blocks_data(n=60)
    with pytest.raises(ValueError, match="inner folds"):
        LateCalibratedFusion().fit(blocks, Targets.classes(y, 3), inner=[])


def test_log_linear_stacker_recovers_known_weights():
    rng = np.random.default_rng(5)
    n, k = 3000, 3
    y = rng.integers(0, k, n)
    pa = softmax(np.eye(k)[y] * 1.5 + rng.normal(0, 1, (n, k)))
    pb = softmax(rng.normal(0, 1, (n, k)))  # pure noise
    st = LogLinearStacker(l2=0).fit([pa, pb], y)
    assert st.weights_[0] > 0.5 and st.weights_[1] < 0.2


def test_regression_head_fuses_scores():
    allb, y, g = blocks_data(n=500, seed=6, strengths=(1.0, 1.0, 0.0))
    score = y * 5.0 + np.random.default_rng(0).normal(0, 1, 500)
    model = LateCalibratedFusion().fit({m: X[:400] for m, X in allb.items()}, Targets.scores(score[:400]),
                                       inner=inner(y[:400], g[:400]))
    pred = model.predict({m: X[400:] for m, X in allb.items()})
    single = model.predict({m: X[400:] for m, X in allb.items()}, ["a"])
    mae = lambda p: np.abs(p - score[400:]).mean()  # noqa: E731
    assert mae(pred) < mae(single) and pred.min() >= score[:400].min()


LEARNER_PARAMS = {"xgboost": {"n_estimators": 50}, "mlp": {"max_epochs": 5}}


@pytest.mark.parametrize("model_name,learner", [("late-fusion", "logreg"), ("late-fusion", "xgboost"),
                                                ("late-fusion", "ordinal"), ("late-fusion", "mlp"),
                                                ("early-fusion", "logreg"), ("early-fusion", "xgboost")])
def test_save_and_load_give_the_same_predictions(tmp_path, model_name, learner):
    allb, y, g = blocks_data(n=200, seed=7)
    params = {"learner": {"name": learner, "params": LEARNER_PARAMS.get(learner, {})}}
    model = MODELS.get(model_name)(**params).fit(allb, Targets.classes(y, 3),
                                                 inner=inner(y, g))
    save_model(model, tmp_path / "m", {m: [f"f{i}" for i in range(8)] for m in allb})
    loaded = load_model(tmp_path / "m")
    np.testing.assert_allclose(loaded.predict_proba(allb), model.predict_proba(allb), atol=1e-6)
    assert not list((tmp_path / "m").glob("*.pkl"))


def test_early_fusion_imputes_a_dropped_modality():
    allb, y, g = blocks_data(n=300, seed=8)
    model = EarlyFusion().fit(allb, Targets.classes(y, 3), inner=inner(y, g))
    p = model.predict_proba(allb, ["a", "b"])
    assert p.shape == (300, 3) and np.isfinite(p).all()


def test_inner_validation_never_contains_the_scored_fold_nor_its_subjects():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(50).astype(str), 4)
    y = np.repeat(rng.integers(0, 3, 50), 4)
    folds = make_folds(SplitConfig(n_splits=5, n_repeats=2, inner_splits=3), y, groups)
    for f in folds:
        assert not set(groups[f.train]) & set(groups[f.test])
        assert len(f.inner) == 3
        for itr, iva in f.inner:
            assert set(iva) <= set(f.train) and set(itr) <= set(f.train)
            assert not set(iva) & set(f.test) and not set(groups[iva]) & set(groups[f.test])
            assert not set(groups[itr]) & set(groups[iva])


def test_permutation_importance_finds_the_informative_features():
    from fusion.evaluation.crossval import permutation_importance

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = (X[:, 0] > 0).astype(int)
    blocks = {"a": X}
    model = MODELS.get("late-fusion")().fit(blocks, Targets.classes(y, 2),
                                           inner=grouped_kfold(y, np.arange(300).astype(str), 3, 0))
    imp = permutation_importance(model, blocks, y, "a", rng)
    assert imp.argmax() == 0 and imp[0] > 0.2 and np.abs(imp[1:]).max() < 0.05


@pytest.mark.slow
def test_mlp_late_fusion_gets_permutation_attributions():
    from fusion.evaluation.crossval import ModelSpec, cross_validate

    allb, y, g = blocks_data(n=120, seed=9)
    blocks = {"a": allb["a"], "b": allb["b"]}
    folds = make_folds(SplitConfig(n_splits=2, n_repeats=1, inner_splits=2), y, g)
    res = cross_validate(blocks, y, folds, n_classes=3, attributions=True,
                         model=ModelSpec("late-fusion", {"learner": {"name": "mlp", "params": {"max_epochs": 5}}}))
    assert set(res.permutation) == {"a", "b"} and res.permutation["a"][0].shape == (8,)
    assert not res.feature_contrib and np.isfinite(res.modality_contrib).all()


def test_loading_opens_no_file_outside_the_model_folder(tmp_path):
    """A manifest entry pointing outside the model folder is refused."""
    import json

    allb, y, g = blocks_data(n=120, seed=7)
    model = MODELS.get("late-fusion")(learner={"name": "xgboost", "params": {"n_estimators": 5}}).fit(allb, Targets.classes(y, 3), inner=inner(y, g))
    folder = save_model(model, tmp_path / "m", {})
    outside = tmp_path / "outside.xgb.json"
    outside.write_text((folder / "learner_a.xgb.json").read_text())
    manifest = json.loads((folder / "manifest.json").read_text())
    for entry in ("../outside.xgb.json", str(outside)):
        manifest["state"]["learners"]["a"]["file"] = entry
        (folder / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(ValueError, match="outside the model folder|must be a file name inside"):
            load_model(folder)


def test_a_modality_without_any_inner_validation_prediction_gets_no_fusion_weight():
    """Too few samples carry modality c for any inner fold to fit it (one class only where it is
    present): nothing to calibrate it on, so the fusion layer gives it weight 0 instead of the
    optimiser's starting value — and no warning about an empty mean."""
    import warnings

    allb, y, g = blocks_data(n=120, seed=10)
    keep = [np.flatnonzero(y == 0)[0], np.flatnonzero(y == 1)[0]]
    allb["c"][np.setdiff1d(np.arange(120), keep)] = np.nan  # c on two samples: no inner fold trains on two classes
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        model = LateCalibratedFusion(learner={"name": "logreg"}).fit(allb, Targets.classes(y, 3),
                                                                     inner=inner(y, g))
        w = model.summary()["fusion_weights"]
    assert w["c"] == 0.0 and w["a"] > 0
    p_with, p_without = model.predict_proba(allb), model.predict_proba({**allb, "c": np.full_like(allb["c"], np.nan)})
    np.testing.assert_allclose(p_with, p_without)

    only = {**allb, "c": np.where(np.isin(np.arange(120), np.flatnonzero(y == 0)[:4])[:, None], 1.0, np.nan)}
    with pytest.raises(ValueError, match=r"modality 'c': the 4 training samples with this input are all of class 0"):
        LateCalibratedFusion(learner={"name": "logreg"}).fit(only, Targets.classes(y, 3),
                                                             inner=inner(y, g))
