"""Datasets, models, training, sweeps and reports: everything after the feature cache."""

__version__ = "0.1.0"
