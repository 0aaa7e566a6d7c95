"""Datasets, fusion models, training, evaluation and tracking: everything after the feature cache."""

__version__ = "0.1.0"
