"""Learners: one feature matrix → class probabilities or a score; `LEARNERS` in `base.py`."""
