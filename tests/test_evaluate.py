"""Subject-grouped splits, metrics and intervals."""

from __future__ import annotations

import numpy as np
import pytest

from fusion.evaluation.metrics import bootstrap_ci, multiclass_metrics, quadratic_kappa, roc_auc
from fusion.evaluation.splits import LeakageError, SplitConfig, SplitError, check_disjoint, grouped_kfold, make_folds


def data(n_subjects=30, per_subject=4, seed=0):
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"s{i}" for i in range(n_subjects)], per_subject)
    y = np.repeat(rng.integers(0, 2, n_subjects), per_subject)
    return y, groups


def test_no_subject_on_both_sides_and_every_sample_tested_once():
    y, groups = data()
    folds = grouped_kfold(y, groups, 5, seed=1)
    tested = np.concatenate([te for _, te in folds])
    assert sorted(tested) == list(range(len(y)))
    for tr, te in folds:
        assert not set(groups[tr]) & set(groups[te])
        assert 0.2 < y[te].mean() < 0.8  # stratified


def test_splits_are_deterministic_by_seed():
    y, groups = data()
    a = make_folds(SplitConfig(n_splits=5, n_repeats=2, seed=3), y, groups)
    b = make_folds(SplitConfig(n_splits=5, n_repeats=2, seed=3), y, groups)
    c = make_folds(SplitConfig(n_splits=5, n_repeats=2, seed=4), y, groups)
    assert all((f.test == g.test).all() for f, g in zip(a, b, strict=True))
    assert any(len(f.test) != len(g.test) or (f.test != g.test).any() for f, g in zip(a, c, strict=True))
    assert {f.seed for f in a} == {3, 4}


def test_leak_check_raises():
    groups = np.array(["a", "a", "b", "c"])
    with pytest.raises(LeakageError, match="'a'"):
        check_disjoint(groups, np.array([0, 2]), np.array([1, 3]))
    check_disjoint(groups, np.array([0, 1]), np.array([2, 3]))


def test_too_few_subjects():
    with pytest.raises(SplitError, match="3 subjects"):
        grouped_kfold(np.array([0, 1, 0]), np.array(["a", "b", "c"]), 5, 0)


def test_metrics_on_known_values():
    y = np.array([0, 0, 1, 1])
    assert roc_auc(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert roc_auc(y, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert roc_auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    assert np.isnan(roc_auc(np.array([1, 1]), np.array([0.2, 0.3])))
    p1 = np.array([0.1, 0.6, 0.7, 0.4])
    m = multiclass_metrics(y, np.column_stack([1 - p1, p1]))
    assert m["accuracy"] == 0.5 and m["balanced_accuracy"] == 0.5 and m["f1_macro"] == 0.5
    assert m["brier"] == pytest.approx(2 * (0.01 + 0.36 + 0.09 + 0.36) / 4)  # summed over both classes
    assert m["auc_ovr"] == 0.75


def test_multiclass_metrics_on_known_values():
    y = np.array([0, 1, 2, 2, 1, 0])
    perfect = np.eye(3)[y] * 0.9 + 0.1 / 3
    m = multiclass_metrics(y, perfect)
    assert m["accuracy"] == 1 and m["f1_weighted"] == 1 and m["qwk"] == 1 and m["auc_ovr"] == 1
    assert m["ece"] == pytest.approx(1 - (0.9 + 0.1 / 3))
    off_by_one = np.eye(3)[[1, 2, 1, 1, 2, 1]]
    m = multiclass_metrics(y, off_by_one)
    assert m["accuracy"] == 0 and m["adjacent_accuracy"] == 1
    # quadratic weights: an error of 2 classes costs 4 times an error of 1
    assert quadratic_kappa(np.array([0, 2]), np.array([2, 0]), 3) < quadratic_kappa(np.array([0, 2]), np.array([1, 1]), 3)


def test_bootstrap_interval_covers_estimate_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    def ci(n):
        y = rng.integers(0, 2, n)
        s = y + rng.normal(0, 1.0, n)
        groups = np.arange(n).astype(str)
        lo, hi = bootstrap_ci(roc_auc, y, s[None, :], groups, n_boot=300, seed=1)
        return roc_auc(y, s), lo, hi
    est, lo, hi = ci(100)
    assert lo < est < hi
    est2, lo2, hi2 = ci(1000)
    assert hi2 - lo2 < hi - lo


def test_long_steps_report_one_line_each_when_not_on_a_terminal(capsys):
    from fusion.evaluation.progress import steps

    with steps(3, "late-fusion on depression") as tick:
        for i in range(3):
            tick(f"repeat 0, fold {i}")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and lines[0].startswith("late-fusion on depression: fold 1 of 3 (repeat 0, fold 0) in ")
    assert lines[-1].startswith("late-fusion on depression: fold 3 of 3 (repeat 0, fold 2)")


def test_on_a_terminal_long_steps_show_a_bar_with_the_epoch_in_training(monkeypatch):
    import io
    import sys

    from fusion.evaluation.progress import report_progress, steps

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    with steps(2, "atei on depression") as tick:
        for epoch in range(3):
            report_progress(0.5, epoch)  # a network's epochs, as FitLoop reports them
        tick("repeat 0, fold 0")
        tick("repeat 0, fold 1")
    shown = term.getvalue()
    assert "atei on depression" in shown and "2/2" in shown and "fold 1" in shown


def test_a_class_rarer_than_the_folds_is_one_note_not_a_warning_per_fold():
    import warnings

    from fusion.evaluation.splits import rare_classes

    y = np.array([0] * 30 + [1] * 27 + [2] * 3)
    groups = np.arange(60).astype(str)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn's "The least populated class in y has only 3 members"
        for seed in range(5):
            grouped_kfold(y, groups, 5, seed)
    note = rare_classes(y, SplitConfig(n_splits=5, inner_splits=4), ["none", "mild", "severe"])
    assert note == ("class(es) severe (3 samples) have fewer samples than the 5 folds: some folds test none of "
                    "them, and a training fold may lack them")
    assert rare_classes(y[:57], SplitConfig(n_splits=5)) is None
