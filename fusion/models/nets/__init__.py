"""Plain `nn.Module` networks, trained through `fusion.lit`; `NETS` in `base.py`."""
