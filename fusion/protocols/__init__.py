"""Evaluation protocols: how a train config's model is evaluated on its data, one registered
class each (`PROTOCOLS` in `base.py`). `fusion.training.train` runs the config's protocol and
writes its result through one output path (`fusion.outputs.write_run`)."""
