"""Feature extraction and the Parquet feature store.

`features.registry.EXTRACTORS` finds the extractors in this package's modules (`audio`,
`text`, `face`) when it is first asked for one; `features.store.FeatureStore` is the cache
and `features.runner.run_extraction` runs an extractor over a dataset.
"""
