"""Feature extraction and the Parquet feature store.

The public Python API::

    from features import build_extractor, EXTRACTORS, FeatureStore, run_extraction

    egemaps = build_extractor("opensmile", {"feature_set": "eGeMAPSv02", "level": "functionals"})
    store = FeatureStore("features_store")

`EXTRACTORS` finds the extractors in this package's modules when it is first asked for one;
`FeatureStore` is the cache and `run_extraction` runs an extractor over a dataset's samples.
Names are imported when first used.
"""

from __future__ import annotations

from features.lazy import lazy_exports

API = {
    "EXTRACTORS": "features.registry", "build_extractor": "features.registry",
    "Extractor": "features.base", "Sample": "features.base", "Segment": "features.base",
    "ExtractionError": "features.base", "FeatureStore": "features.store", "StoreError": "features.store",
    "run_extraction": "features.runner", "Segmenter": "features.align", "SegmentationConfig": "features.align",
    "describe_feature": "features.glossary",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, API, {"describe_feature": "describe"})
