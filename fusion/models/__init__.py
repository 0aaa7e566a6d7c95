"""Fusion models (modality blocks → predictions), one file per registered model, beside the
`FusionModel` contract and the `MODELS` registry in `base.py`; `learners/` holds the
single-matrix learners they use and `nets/` the plain `nn.Module` networks."""
