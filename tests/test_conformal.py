"""Conformal prediction sets and score intervals: hand-computed cases, MAPIE's sets, coverage
on data of known distribution (and its failure with a broken calibration split)."""

from __future__ import annotations

import numpy as np
import pytest

from fusion.evaluation.conformal import (
    conformity,
    describe_set,
    interval_threshold,
    min_group_size,
    prediction_sets,
    score_intervals,
    selective,
    set_summary,
    threshold,
    thresholds,
)


def test_threshold_and_sets_on_a_hand_computed_case():
    # 9 held-out scores, α = 0.2: q̂ is the ⌈10 × 0.8⌉ = 8th smallest
    assert threshold(np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6]), 0.2) == pytest.approx(0.8)
    assert threshold(np.arange(5) / 10, 0.1) == np.inf  # ⌈6 × 0.9⌉ = 6 > 5 scores: every class is in
    assert min_group_size(0.1) == 9 and min_group_size(0.2) == 4
    p = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])
    np.testing.assert_allclose(conformity(p, np.array([1, 2]), "lac"), [0.7, 0.7])
    # APS with u = 1: the mass of the classes more probable than y
    np.testing.assert_allclose(conformity(p, np.array([1, 2]), "aps"), [0.6, 0.5])
    np.testing.assert_allclose(conformity(p, np.array([1, 2]), "aps", u=np.array([0.5, 0.0])), [0.75, 0.8])
    assert prediction_sets(p, 0.7, "lac").tolist() == [[True, True, False], [False, True, True]]
    assert prediction_sets(p, 0.55, "aps").tolist() == [[True, False, False], [False, True, True]]
    # ordinal: intervals grow from the mode towards the more probable neighbour
    q = np.array([[0.05, 0.30, 0.40, 0.05, 0.20]])
    # order: 2 (0.40), then 1 (0.30 > 0.05), then 0 (0.05 vs 3's 0.05: the lower first), 3, 4
    np.testing.assert_allclose(conformity(np.repeat(q, 5, 0), np.arange(5), "ordinal"),
                               [0.70, 0.40, 0.00, 0.75, 0.80])
    assert prediction_sets(q, 0.45, "ordinal").tolist() == [[False, True, True, False, False]]
    assert prediction_sets(q, 0.72, "ordinal").tolist() == [[True, True, True, False, False]]


def test_lac_sets_equal_mapies():
    mapie = pytest.importorskip("mapie.classification", reason="MAPIE (test extra) is the reference")
    from sklearn.base import BaseEstimator, ClassifierMixin

    class Probabilities(ClassifierMixin, BaseEstimator):
        """A fitted 'classifier' whose input is already its probabilities."""

        def fit(self, X, y):
            self.classes_ = np.arange(X.shape[1])
            return self

        def predict_proba(self, X):
            return np.asarray(X)

        def predict(self, X):
            return np.asarray(X).argmax(1)

    rng = np.random.default_rng(0)
    k = 4
    p_cal, p_test = rng.dirichlet(np.ones(k), 300), rng.dirichlet(np.ones(k), 200)
    y_cal = np.array([rng.choice(k, p=r) for r in p_cal])
    est = Probabilities().fit(p_cal, y_cal)
    for alpha in (0.1, 0.2):
        ref = mapie.SplitConformalClassifier(est, confidence_level=1 - alpha, conformity_score="lac", prefit=True)
        ref.conformalize(p_cal, y_cal)
        _, sets = ref.predict_set(p_test)
        q = threshold(conformity(p_cal, y_cal, "lac"), alpha)
        np.testing.assert_array_equal(prediction_sets(p_test, q, "lac"), sets[:, :, 0])


def draw(n, k, rng, sharp=2.0):
    """Samples whose classes follow their own calibrated probabilities (known distribution)."""
    logits = rng.normal(size=(n, k)) * sharp
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = (p.cumsum(1) > rng.random((n, 1))).argmax(1)
    return p, y


@pytest.mark.parametrize("score", ["lac", "aps", "ordinal"])
def test_coverage_holds_within_sampling_error_and_fails_with_a_broken_calibration_split(score):
    rng = np.random.default_rng(1)
    alpha, reps, cov, broken = 0.1, 200, [], []
    for _ in range(reps):
        p_cal, y_cal = draw(500, 5, rng)
        p_test, y_test = draw(500, 5, rng)
        u_cal, u_test = rng.random(500), rng.random(500)
        q = threshold(conformity(p_cal, y_cal, score, u_cal), alpha)
        cov.append(set_summary(prediction_sets(p_test, q, score, u_test), y_test)["coverage"])
        # broken: the calibration samples' probabilities come from a model that saw their
        # labels (in-sample predictions put extra mass on the true class), so q̂ is too small
        leaked = p_cal + 0.5 * np.eye(5)[y_cal]
        qb = threshold(conformity(leaked / leaked.sum(1, keepdims=True), y_cal, score, u_cal), alpha)
        broken.append(set_summary(prediction_sets(p_test, qb, score, u_test), y_test)["coverage"])
        if score != "lac":  # the conservative sets contain the randomised ones
            assert (prediction_sets(p_test, q, score) >= prediction_sets(p_test, q, score, u_test)).all()
    # mean coverage is 1 − α up to 1 / (n + 1); its standard error over 200 × 500 draws is ~0.001
    assert 0.895 <= np.mean(cov) <= 0.905, np.mean(cov)
    assert np.mean(broken) < 0.87, np.mean(broken)


def test_ordinal_sets_are_intervals_with_the_same_coverage():
    rng = np.random.default_rng(2)
    # ordered classes: probabilities unimodal in the latent severity
    z = rng.normal(size=4000) * 1.5 + 2
    k = np.arange(5)
    p = np.exp(-0.5 * (k[None, :] - z[:, None]) ** 2 / 0.8)
    p /= p.sum(1, keepdims=True)
    y = (p.cumsum(1) > rng.random((4000, 1))).argmax(1)
    u = rng.random(4000)
    half = slice(0, 2000), slice(2000, 4000)
    out = {}
    for score in ("aps", "ordinal"):
        q = threshold(conformity(p[half[0]], y[half[0]], score, u[half[0]]), 0.1)
        sets = prediction_sets(p[half[1]], q, score, u[half[1]])
        out[score] = set_summary(sets, y[half[1]])
        if score == "ordinal":
            for row in sets[sets.any(1)]:
                idx = np.flatnonzero(row)
                assert idx[-1] - idx[0] == len(idx) - 1  # contiguous
    assert abs(out["ordinal"]["coverage"] - 0.9) < 0.02 and abs(out["aps"]["coverage"] - 0.9) < 0.02
    assert out["ordinal"]["contiguous"] == 1.0


def test_ordinal_sets_stay_contiguous_where_descending_probability_sets_do_not():
    # two separated modes: APS takes the two most probable classes, the ordinal set the run between
    p = np.array([[0.40, 0.05, 0.10, 0.05, 0.40]])
    aps = prediction_sets(p, 0.5, "aps")
    ordinal = prediction_sets(p, 0.5, "ordinal")
    assert aps.tolist() == [[True, False, False, False, True]]
    assert ordinal.tolist() == [[True, True, True, False, False]]
    assert set_summary(aps, np.array([0]))["contiguous"] == 0.0
    assert set_summary(ordinal, np.array([0]))["contiguous"] == 1.0
    # empty and single-class sets count as contiguous; a gap does not
    sets = np.array([[0, 0, 0], [0, 1, 0], [1, 1, 0], [1, 0, 1]], bool)
    assert set_summary(sets, np.array([0, 1, 1, 2]))["contiguous"] == 0.75


def test_group_thresholds_fall_back_to_the_marginal_one_for_small_groups():
    scores = np.r_[np.linspace(0, 1, 50), np.linspace(0, 0.5, 20), [0.9, 0.95]]
    groups = np.array(["a"] * 50 + ["b"] * 20 + ["c"] * 2)
    t = thresholds(scores, 0.1, "lac", groups)
    assert set(t.groups) == {"a", "b"} and t.fallback == {"c": 2}
    assert t.groups["b"] < t.marginal < t.groups["a"] + 1e-9
    np.testing.assert_allclose(t.for_groups(["a", "c", "b"], 3), [t.groups["a"], t.marginal, t.groups["b"]])
    assert type(t).from_dict(t.to_dict()) == t


def test_score_intervals_and_abstention():
    y, pred = np.array([3.0, 10.0, 20.0, 5.0]), np.array([4.0, 8.0, 21.0, 5.5])
    q = interval_threshold(y, pred, 0.2)  # residuals 1, 2, 1, 0.5; ⌈5 × 0.8⌉ = 4th smallest
    assert q == pytest.approx(2.0)
    np.testing.assert_allclose(score_intervals(np.array([1.0, 23.5]), q, 0, 24), [[0.0, 3.0], [21.5, 24.0]])
    sets = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 1]], bool)
    p = np.array([[0.8, 0.1, 0.1], [0.5, 0.4, 0.1], [0.4, 0.3, 0.3]])
    assert selective(sets, p, np.array([0, 1, 0]), 1) == {"decided": pytest.approx(1 / 3), "accuracy": 1.0}
    assert selective(sets, p, np.array([0, 1, 0]), 2)["accuracy"] == pytest.approx(0.5)
    names = ["none", "mild", "moderate", "severe"]
    assert describe_set(np.array([0, 1, 1, 0], bool), names, True) == "mild to moderate"
    assert describe_set(np.array([1, 0, 1, 0], bool), names, False) == "none or moderate"
    assert describe_set(np.array([0, 0, 1, 0], bool), names, True) == "moderate"


def ordinal_blocks(n, seed):
    """Two modalities seeing a latent severity (5 ordered classes), a score, and a gender."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    y = np.digitize(z + rng.normal(0, 0.6, n), [-1.2, -0.4, 0.4, 1.2])
    blocks = {"a": z[:, None] * [1.0, 0.5, 0.2] + rng.normal(0, 1.0, (n, 3)),
              "b": z[:, None] * [0.6, 0.3] + rng.normal(0, 1.0, (n, 2))}
    blocks["b"][rng.random(n) < 0.1] = np.nan  # a modality missing for some people
    score = np.clip(12 + 5 * z + rng.normal(0, 2, n), 0, 24)
    gender = np.where(rng.random(n) < 0.5, "female", "male").astype(object)
    return blocks, y, score, gender, np.arange(n).astype(str)


@pytest.mark.parametrize("model", ["late-fusion", "early-fusion"])
def test_cross_validated_sets_cover_for_every_level_score_and_group(model):
    from fusion.evaluation.crossval import ConformalSpec, ModelSpec, cross_validate, summarise
    from fusion.evaluation.splits import SplitConfig, make_folds

    blocks, y, score, gender, groups = ordinal_blocks(1200, 0)
    folds = make_folds(SplitConfig(n_splits=5, n_repeats=2, inner_splits=3), y, groups)
    spec = ConformalSpec(alphas=(0.1, 0.2), scores=("lac", "aps", "ordinal"), groups=gender, group_by="gender",
                         score_range=(0.0, 24.0), max_size=2)
    res = cross_validate(blocks, y, folds, model=ModelSpec(model, {"learner": {"name": "logreg"}}), n_classes=5,
                         score=score, conformal=spec)
    summarise(res, y, groups, score, 200, 0)
    c = res.conformal.summary
    assert c["source"] == ["the fitted model's cross-fitted predictions of its training samples"]
    for alpha in ("0.1", "0.2"):
        for name in ("lac", "aps", "ordinal"):
            e = c["sets"][alpha][name]
            # finite-sample guarantee ≥ 1 − α; the deterministic sets are conservative, not wildly so
            assert 1 - float(alpha) - 0.03 <= e["coverage"]["mean"] <= 1 - float(alpha) + 0.06, (alpha, name, e)
            assert e["size"]["mean"] < 5 and e["coverage"]["ci_low"] < e["coverage"]["mean"] < e["coverage"]["ci_high"]
            assert set(e["per_group"]) == {"female", "male"}
            assert all(abs(g["coverage"]["mean"] - (1 - float(alpha))) < 0.08 for g in e["per_group"].values())
            assert [a["max_size"] for a in e["abstention"]] == [1, 2, 3, 4]
            decided = [a["decided"]["mean"] for a in e["abstention"]]
            assert decided == sorted(decided)  # a larger allowed set decides for more people
        iv = c["intervals"][alpha]
        assert abs(iv["coverage"]["mean"] - (1 - float(alpha))) < 0.04 and iv["width"]["mean"] > 0
    # ordinal sets are intervals of adjacent classes; every coverage on the plot's grid is there
    assert c["sets"]["0.1"]["ordinal"]["contiguous"]["mean"] == 1.0
    S = res.conformal.sets["ordinal@0.1"][0]
    for row in S[S.sum(1) > 0]:
        idx = np.flatnonzero(row > 0.5)
        assert idx[-1] - idx[0] == len(idx) - 1
    assert len(c["grid"]["lac"]) == 10 and not c["notes"]
    ivs = res.conformal.intervals["0.1"]
    assert np.nanmin(ivs) >= 0 and np.nanmax(ivs) <= 24
    from fusion.evaluation.plots import conformal_figure

    left, right = conformal_figure("coverage", c).axes  # coverage against nominal; abstention curve
    assert len(left.lines) == 4 and len(right.lines) == 6


def test_a_model_without_held_out_predictions_is_calibrated_on_a_fold_or_says_why():
    from fusion.evaluation.crossval import ConformalSpec, ModelSpec, cross_validate, summarise
    from fusion.evaluation.splits import SplitConfig, make_folds

    blocks, y, score, gender, groups = ordinal_blocks(400, 1)
    folds = make_folds(SplitConfig(n_splits=4, n_repeats=1, inner_splits=3), y, groups)
    net = ModelSpec("late-fusion-nn", {"hidden": 8, "max_epochs": 5, "refit": False})
    skipped = cross_validate(blocks, y, folds, model=net, n_classes=5, conformal=ConformalSpec())
    summarise(skipped, y, groups, None, 0, 0)
    assert "calibration_fold: true" in skipped.conformal.summary["notes"][0] and not skipped.conformal.sets
    fold = cross_validate(blocks, y, folds, model=net, n_classes=5,
                          conformal=ConformalSpec(calibration_fold=True, groups=gender, group_by="gender"))
    summarise(fold, y, groups, None, 0, 0)
    c = fold.conformal.summary
    assert c["source"] == ["a model fitted without the first inner fold, calibrated on that fold"]
    assert c["sets"]["0.1"]["lac"]["coverage"]["mean"] > 0.8
