"""Name → class registries for extractors, datasets and models.

The registries are defined first; the modules that fill them are imported at the bottom,
so `from fusion.registry import MODELS` always gives a complete registry.
"""

from __future__ import annotations

from features.registry import EXTRACTORS, Registry, UnknownNameError

DATASETS: Registry[type] = Registry("dataset")
MODELS: Registry[type] = Registry("model")

__all__ = ["DATASETS", "EXTRACTORS", "MODELS", "Registry", "UnknownNameError"]

import features  # noqa: E402,F401  (registers extractors)
import fusion.datasets  # noqa: E402,F401  (registers datasets)
import fusion.models  # noqa: E402,F401  (registers models)
