"""Dataset adapters, one module per corpus layout (importing this package registers them)."""

from fusion.datasets import cexpr, combined, daic, edaic, emotic, folder, meld, ravdess  # noqa: F401
from fusion.datasets.base import DatasetAdapter, DatasetError

__all__ = ["DatasetAdapter", "DatasetError"]


def build_dataset(spec) -> DatasetAdapter:
    """Instantiate the adapter a `DatasetSpec` names."""
    from fusion.registry import DATASETS

    return DATASETS.get(spec.name)(spec.root, **spec.params)
