"""Typed configuration: the schema of every command's config (`schema.py`) and loading with
`--set` overrides and precise error messages (`load.py`). `from fusion.config import
load_config, TrainConfig` works too (imported when first used)."""

from __future__ import annotations

from features.lazy import lazy_exports

API = {"load_config": "fusion.config.load", "ConfigError": "fusion.config.schema",
       "TrainConfig": "fusion.config.schema", "ExtractConfig": "fusion.config.schema",
       "DataConfig": "fusion.config.schema", "DemoConfig": "fusion.config.schema"}
__all__, __getattr__, __dir__ = lazy_exports(__name__, API)
