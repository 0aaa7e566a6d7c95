"""Models, one file per method (importing this package registers them)."""

from fusion.models import baseline  # noqa: F401
