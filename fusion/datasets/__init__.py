"""Dataset adapters, one module per corpus layout, named as `DATASETS` (in `base.py`) calls them."""
