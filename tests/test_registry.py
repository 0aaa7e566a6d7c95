"""Registries: unknown names list the valid ones; every registered component builds."""

from __future__ import annotations

import pytest

from features.base import Extractor
from fusion.registry import DATASETS, EXTRACTORS, MODELS, Registry, UnknownNameError


@pytest.mark.parametrize("registry,kind", [(EXTRACTORS, "extractor"), (DATASETS, "dataset"),
                                           (MODELS, "model")])
def test_unknown_name_lists_valid_names(registry, kind):
    with pytest.raises(UnknownNameError) as err:
        registry.get("no-such-thing")
    msg = str(err.value)
    assert f"Unknown {kind} 'no-such-thing'" in msg
    for name in registry.names():
        assert name in msg


def test_duplicate_registration_is_refused():
    reg = Registry("thing")
    reg.register("a")(int)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(str)


@pytest.mark.parametrize("name", EXTRACTORS.names())
def test_every_extractor_builds_with_defaults(name):
    ext = EXTRACTORS.get(name)()
    assert isinstance(ext, Extractor) and ext.name == name
    assert ext.feature_names and len(set(ext.feature_names)) == len(ext.feature_names)
    assert ext.media
    with pytest.raises(ValueError, match="has no parameter 'nonsense'"):
        EXTRACTORS.get(name)(nonsense=1)


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_fits_and_predicts(name):
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5))
    y = (X[:, 0] + 0.3 * rng.normal(size=40) > 0).astype(int)
    model = MODELS.get(name)().fit(X, y)
    p = model.predict_proba(X)
    assert p.shape == (40, 2) and np.allclose(p.sum(1), 1)
    assert ((p[:, 1] > 0.5) == y).mean() > 0.8
    with pytest.raises(ValueError, match="has no parameter"):
        MODELS.get(name)(nonsense=1)
