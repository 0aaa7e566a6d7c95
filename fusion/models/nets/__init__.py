"""Plain `nn.Module` networks (`Net` in `base.py`), built by the models that train them through `fusion.lit`."""
