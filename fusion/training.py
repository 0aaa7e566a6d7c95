"""`fusion train`: evaluate a train config's model with its protocol and write the run.

`train(cfg) -> dict` is a pure function of its configuration: the protocol
(`fusion.protocols`, chosen by `cfg.protocol`) reads the feature store and evaluates the model;
`fusion.outputs.write_run` writes the run folder and the MLflow run; the summary that
`fusion train --json` writes is returned. The CLI, `fusion sweep`, the notebooks and Python
callers all train through here.
"""

from __future__ import annotations

import time
from typing import Any

from fusion.config.schema import TrainConfig
from fusion.outputs import write_run
from fusion.protocols.base import protocol_for


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Evaluate `cfg.model` with `cfg.protocol`; write, track and return the run's summary.

    Raises:
        ConfigError: an unknown protocol or one that cannot evaluate the config, and whatever
            the protocol refuses (missing features or labels, impossible splits, …).
    """
    t0 = time.perf_counter()
    name, protocol = protocol_for(cfg)
    return write_run(cfg, name, protocol.run(cfg), t0)
