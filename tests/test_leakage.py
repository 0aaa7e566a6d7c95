"""Leakage guard: labels random per participant, many turns per participant whose features
carry a participant-specific offset. Subject-grouped evaluation must find nothing; a
turn-level split memorises the people and looks excellent."""

from __future__ import annotations

import numpy as np
import pytest

from fusion.experiment import cross_validate, summarise
from fusion.splits import SplitConfig, make_folds


def leaky_corpus(n_people=40, turns=15, dim=64, seed=0):
    rng = np.random.default_rng(seed)
    person_label = rng.integers(0, 2, n_people)
    offsets = rng.normal(0, 1, (n_people, dim))
    people = np.repeat(np.arange(n_people), turns)
    X = offsets[people] + rng.normal(0, 0.3, (len(people), dim))
    return {"x": X}, person_label[people], people.astype(str)


def evaluate(scheme):
    blocks, y, groups = leaky_corpus()
    folds = make_folds(SplitConfig(scheme=scheme, n_splits=5, n_repeats=3, inner_splits=3, seed=1), y, groups)
    res = cross_validate(blocks, y, folds, model_name="late-fusion",
                         model_params={"learner": {"name": "logreg", "params": {"C": 1.0}}}, n_classes=2)
    summarise(res, y, groups, None, n_bootstrap=300, seed=0)
    majority = max(y.mean(), 1 - y.mean())
    return res.metrics["model"]["accuracy"], majority


@pytest.mark.slow
def test_subject_grouped_protocol_finds_nothing_in_random_labels():
    acc, majority = evaluate("grouped-kfold")
    assert acc["ci_low"] <= majority <= acc["ci_high"], (acc, majority)
    assert acc["mean"] < majority + 0.1


@pytest.mark.slow
def test_turn_level_split_memorises_the_people():
    acc, majority = evaluate("turn-level")
    assert acc["mean"] > 0.9 and acc["ci_low"] > majority + 0.2, (acc, majority)


def test_turn_level_folds_do_put_people_on_both_sides():
    _, y, groups = leaky_corpus()
    folds = make_folds(SplitConfig(scheme="turn-level", n_splits=5, n_repeats=1), y, groups)
    assert all(set(groups[f.train]) & set(groups[f.test]) for f in folds)
