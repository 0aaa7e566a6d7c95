"""Typed configuration: the schema of every command's config (`schema.py`) and loading with
`--set` overrides and precise error messages (`load.py`)."""
