"""Registries: unknown names list the valid ones; every registered component builds."""

from __future__ import annotations

import pytest

from features.base import Extractor
from features.registry import EXTRACTORS, Registry, UnknownNameError
from fusion.datasets.base import DATASETS
from fusion.models.base import MODELS
from fusion.models.learners.base import LEARNERS
from fusion.protocols.base import PROTOCOLS


@pytest.mark.parametrize("registry,kind", [(EXTRACTORS, "extractor"), (DATASETS, "dataset"), (MODELS, "model"),
                                           (LEARNERS, "learner"), (PROTOCOLS, "protocol")])
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
    required = [f for f, info in EXTRACTORS.get(name).Params.model_fields.items() if info.is_required()]
    if required:  # e.g. the emotion extractor's model folder: building without it names it
        with pytest.raises(ValueError, match=f"'{required[0]}'"):
            EXTRACTORS.get(name)()
        return
    ext = EXTRACTORS.get(name)()
    assert isinstance(ext, Extractor) and ext.name == name
    assert ext.feature_names and len(set(ext.feature_names)) == len(ext.feature_names)
    assert ext.media
    with pytest.raises(ValueError, match="has no parameter 'nonsense'"):
        EXTRACTORS.get(name)(nonsense=1)
