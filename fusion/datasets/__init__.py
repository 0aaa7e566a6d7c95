"""Dataset adapters, one module per corpus layout, named as `DATASETS` (in `base.py`) calls them.
`from fusion.datasets import build_dataset, DATASETS` works too (imported when first used)."""

from __future__ import annotations

from features.lazy import lazy_exports

API = {"build_dataset": "fusion.datasets.base", "DATASETS": "fusion.datasets.base",
       "DatasetAdapter": "fusion.datasets.base", "DatasetError": "fusion.datasets.base"}
__all__, __getattr__, __dir__ = lazy_exports(__name__, API)
