"""Learners (one feature matrix → predictions) and fusion models (modality blocks →
predictions), one file per method; importing this package registers them."""

from fusion.models import early_fusion, gbt, late_fusion, linear, mlp, ordinal  # noqa: F401
from fusion.models.learners import LEARNERS

__all__ = ["LEARNERS"]
