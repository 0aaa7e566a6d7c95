"""Feature extraction and the Parquet feature store.

Importing this package registers every extractor in `features.registry.EXTRACTORS`.
"""

from features import audio, face, text  # noqa: F401  (registers extractors)
from features.base import INDEX, ExtractionError, Extractor, Sample, Segment
from features.registry import EXTRACTORS
from features.store import FeatureStore

__all__ = ["EXTRACTORS", "INDEX", "ExtractionError", "Extractor", "FeatureStore", "Sample", "Segment"]
