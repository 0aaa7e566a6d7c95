"""The protocol interface and its registry.

A protocol takes a train config and returns what the run writes: the summary (figures per
target), tables, figures, extra JSON files, a way to save the fitted models, and what to track.
`fusion.training.train` chooses it by `cfg.protocol` (`auto`: `official-multilabel` for
multi-label targets, `nested-cv` otherwise) and writes the run; the CLI, sweeps, notebooks and
Python callers all go through it, and the summary's `protocol` is the one that ran.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from features.registry import Registry
from fusion.config.schema import ConfigError, TrainConfig

PROTOCOLS: Registry[type] = Registry("protocol", package="fusion.protocols")


@dataclass
class RunResult:
    """What a protocol hands to the run output (`fusion.outputs.write_run`).

    Attributes:
        summary: the run's summary (dataset, model, modalities, cv, feature_sets, notes,
            warnings, targets, …), written as metrics.json and returned by `train`.
        tables: CSV files by stem. figures: (stem, matplotlib figure) pairs. jsons: extra JSON
            files by stem.
        save_models: writes the final fitted models under the folder it is given (when the
            config asks for `evaluation.save_model`).
        metrics, steps, tags: tracked in MLflow (aggregate metrics; per-step metrics such as
            per-fold figures; tags).
    """

    summary: dict[str, Any]
    tables: dict[str, Any] = field(default_factory=dict)
    figures: list[tuple[str, Any]] = field(default_factory=list)
    jsons: dict[str, Any] = field(default_factory=dict)
    save_models: Callable[[Path], None] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    steps: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)


class Protocol:
    """Base class of the registered protocols: `run(cfg)` → `RunResult`, `format(summary)` →
    the printed text."""

    #: the target kinds the protocol evaluates ("single": class targets, "multilabel")
    targets: ClassVar[str] = "single"

    def check(self, cfg: TrainConfig) -> None:
        """Refuse a config the protocol cannot evaluate, before any data is read.

        Raises:
            ConfigError: naming the key at fault.
        """
        from fusion.models.base import MODELS

        kinds = {t.kind == "multilabel" for t in cfg.targets.values()}
        want = self.targets == "multilabel"
        if kinds != {want}:
            name = PROTOCOLS.name_of(self)
            raise ConfigError(f"protocol {name!r} evaluates {'multi-label' if want else 'single-label'} targets; "
                              f"the config's targets are {'multi-label' if True in kinds else 'single-label'}"
                              + (" and single-label: train them in separate runs" if len(kinds) > 1 else ""))
        heads = MODELS.get(cfg.model.name).heads
        need = "multilabel" if want else "classes"
        if need not in heads:
            raise ConfigError(f"model {cfg.model.name!r} trains {', '.join(sorted(heads))} targets, not the config's "
                              f"{'multi-label' if want else 'class'} targets")

    def run(self, cfg: TrainConfig) -> RunResult:
        raise NotImplementedError

    def format(self, summary: dict[str, Any]) -> str:
        raise NotImplementedError


def protocol_for(cfg: TrainConfig) -> tuple[str, Protocol]:
    """The config's protocol, by name (`auto`: by the targets' kind), checked against the config.

    Raises:
        ConfigError: an unknown protocol (listing the registered ones), or one that cannot
            evaluate the config's targets.
    """
    from features.registry import UnknownNameError

    name = cfg.protocol
    if name == "auto":
        kinds = {t.kind == "multilabel" for t in cfg.targets.values()}
        if len(kinds) > 1:
            raise ConfigError("a config's targets are either all multilabel or none: train them in separate runs")
        name = "official-multilabel" if kinds == {True} else "nested-cv"
    try:
        protocol = PROTOCOLS.get(name)()
    except UnknownNameError as err:
        raise ConfigError(f"invalid value for 'protocol': {err}") from None
    protocol.check(cfg)
    return name, protocol
