"""Leakage guard: labels random per participant, many turns per participant whose features
carry a participant-specific offset. Subject-grouped evaluation must find nothing; a
turn-level split memorises the people and looks excellent."""

from __future__ import annotations

import pytest

from fusion.evaluation.splits import SplitConfig, make_folds
from fusion.synthetic.leakage import leakage_corpus, leakage_probe


@pytest.mark.slow
def test_subject_grouped_protocol_finds_nothing_in_random_labels():
    acc, majority = leakage_probe("grouped-kfold")
    assert acc["ci_low"] <= majority <= acc["ci_high"], (acc, majority)
    assert acc["mean"] < majority + 0.1


@pytest.mark.slow
def test_turn_level_split_memorises_the_people():
    acc, majority = leakage_probe("turn-level")
    assert acc["mean"] > 0.9 and acc["ci_low"] > majority + 0.2, (acc, majority)


def test_turn_level_folds_do_put_people_on_both_sides():
    _, y, groups = leakage_corpus()
    folds = make_folds(SplitConfig(scheme="turn-level", n_splits=5, n_repeats=1), y, groups)
    assert all(set(groups[f.train]) & set(groups[f.test]) for f in folds)
