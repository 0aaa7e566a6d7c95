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

    from fusion.splits import grouped_kfold

    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 5))
    y = (X[:, 0] + 0.3 * rng.normal(size=80) > 0).astype(int)
    blocks = {"a": X[:, :3], "b": X[:, 3:]}
    inner = grouped_kfold(y, np.arange(80).astype(str), 3, 0)
    model = MODELS.get(name)().fit(blocks, y, task="classification", n_classes=2, inner=inner)
    p = model.predict_proba(blocks)
    assert p.shape == (80, 2) and np.allclose(p.sum(1), 1)
    assert ((p[:, 1] > 0.5) == y).mean() > 0.8
    assert set(model.summary()["modalities"]) == {"a", "b"}
    with pytest.raises(ValueError, match="has no parameter"):
        MODELS.get(name)(nonsense=1)
