"""Evaluation in one home: splits, metrics, cross-validation, tables and plots."""
