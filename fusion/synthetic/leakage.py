"""The leakage probe: labels drawn at random per person, many turn-level samples per person
whose features carry a personal offset. Subject-grouped evaluation must find nothing; a
turn-level split memorises the people and looks excellent."""

from __future__ import annotations

import numpy as np

from fusion.evaluation.crossval import ModelSpec, cross_validate, summarise
from fusion.evaluation.splits import SplitConfig, make_folds


def leakage_corpus(n_people: int = 40, turns: int = 15, dim: int = 64,
                   seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """A leakage probe: binary labels random per person, many turn-level samples per person
    whose features are the person's own random offset plus noise. There is nothing to learn
    about the label, only people to recognise.

    Returns:
        ({"x": features}, labels, subject ids).
    """
    rng = np.random.default_rng(seed)
    person_label = rng.integers(0, 2, n_people)
    offsets = rng.normal(0, 1, (n_people, dim))
    people = np.repeat(np.arange(n_people), turns)
    X = offsets[people] + rng.normal(0, 0.3, (len(people), dim))
    return {"x": X}, person_label[people], people.astype(str)


def leakage_probe(scheme: str, n_bootstrap: int = 300, seed: int = 1) -> tuple[dict[str, float], float]:
    """Accuracy (mean ± sd over 3 seeds, bootstrap CI) of calibrated late fusion on the leakage
    corpus under split `scheme`, and the majority-class rate."""
    blocks, y, groups = leakage_corpus()
    folds = make_folds(SplitConfig(scheme=scheme, n_splits=5, n_repeats=3, inner_splits=3, seed=seed), y, groups)
    model = ModelSpec("late-fusion", {"learner": {"name": "logreg", "params": {"C": 1.0}}})
    res = cross_validate(blocks, y, folds, model=model, n_classes=2)
    summarise(res, y, groups, None, n_bootstrap=n_bootstrap, seed=0)
    return res.metrics["model"]["accuracy"], float(max(y.mean(), 1 - y.mean()))
