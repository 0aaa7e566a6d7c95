"""`fusion sweep`: Optuna search over any keys of a train config, scored on the training data
only, with pruning, a shared study storage, MLflow tracking, and one final nested evaluation.

A sweep config names a train config and a search space over its key paths (each checked
against the train config's schema: a key that does not exist is an error naming it). A trial's
objective is a metric of the target computed by grouped K-fold (`folds`) on the training
samples of the train config's outer protocol, which must hold a fixed test set (`official` or
`holdout`): the test samples are never seen by any trial, and every trial sees the same folds
and inner folds. The running mean after each fold is reported to the pruner (median pruning by
default) and judged after every fold but the last. Optionally (`prune_epoch_folds`), the best
validation loss so far of each network or XGBoost fit inside the first folds is reported and
judged at a few epochs (boosting rounds) spaced geometrically, to stop a poor trial
mid-training. Each value is judged against the other trials' values at the same point
(`StepPruner`). The best trial's configuration is written
as a complete train config (`best.yaml`, accepted by `fusion train --config`) and evaluated once
with the outer protocol: the reported test figure never comes from the trials' own folds. The
configuration the sweep started from is evaluated the same way (`evaluate_start`), and the
summary is flagged when the best scores worse on the test than the start.

Studies live in an SQLite file under the output folder by default, or at any SQLAlchemy URL
(`--storage postgresql://…`), so that processes started with the same `--storage` and
`--study` join one study; `n_trials` counts finished (complete or pruned) trials of the whole
study, so several workers together run exactly that many. A trial interrupted by a killed
process is marked failed by the heartbeat and retried once by the next process.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from fusion.config.schema import ConfigError, StrictModel, TrainConfig
from fusion.evaluation.metrics import finite_mean
from fusion.evaluation.progress import PROGRESS, silence_widget_notice
from fusion.evaluation.splits import Seed

silence_widget_notice()  # before Optuna is imported (its progress bar imports tqdm.auto)

NOMINAL_METRICS = ("accuracy", "uar", "f1_weighted", "f1_macro", "auc_ovr", "ece", "brier")
ORDINAL_METRICS = ("accuracy", "balanced_accuracy", "f1_weighted", "f1_macro", "qwk", "auc_ovr",
                   "adjacent_accuracy", "ece", "brier")


class SpaceSpec(StrictModel):
    """One searched key: a float or int range (optionally log-scaled, or stepped), or choices
    (any YAML values; lists and mappings are offered to Optuna as their JSON text). Checked
    here, before any trial, by Optuna's own rules: an int range has integer bounds and an
    integer step, a log scale has low > 0 (an int one: low ≥ 1) and no step."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _complete(self) -> SpaceSpec:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs `choices`")
            if self.low is not None or self.high is not None or self.step is not None or self.log:
                raise ValueError("a categorical parameter takes `choices` only (not low, high, step or log)")
            texts = [value_text(c) for c in self.choices]
            if len(set(texts)) != len(texts):
                raise ValueError(f"choices repeat a value: {self.choices}")
            return self
        if self.choices is not None:
            raise ValueError(f"a {self.type} parameter takes low and high, not choices (use type: categorical)")
        if self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"a {self.type} parameter needs low < high, got low {self.low}, high {self.high}")
        if self.step is not None and self.step <= 0:
            raise ValueError(f"step must be > 0, got {self.step}")
        if self.log and self.step is not None and not (self.type == "int" and self.step == 1):
            raise ValueError("a log-scaled parameter takes no step (Optuna samples it on the log scale)")
        if self.type == "int":
            for what, v in (("low", self.low), ("high", self.high), ("step", self.step)):
                if v is not None and v != int(v):
                    raise ValueError(f"an int parameter needs an integer {what}, got {v:g} (use type: float for "
                                     "a real-valued range)")
            if self.log and self.low < 1:
                raise ValueError(f"a log-scaled int parameter needs low >= 1, got {self.low:g}")
        elif self.log and self.low <= 0:
            raise ValueError(f"a log-scaled parameter needs low > 0, got {self.low:g}")
        if self.step is not None and (self.high - self.low) / self.step < 1 - 1e-9:
            raise ValueError(f"step {self.step:g} is wider than the range {self.low:g}..{self.high:g}")
        return self

    @property
    def encoded(self) -> bool:
        """Whether the choices go to Optuna as JSON text (lists, mappings)."""
        return self.type == "categorical" and any(
            not (c is None or isinstance(c, bool | int | float | str)) for c in self.choices or ())


class SweepConfig(StrictModel):
    """`fusion sweep`: the train config (a file, relative to the sweep config) with optional
    `overrides` (`--set` items), the space, the objective and how the study is run and stored."""

    train: Path
    overrides: list[str] = Field(default_factory=list)
    space: dict[str, SpaceSpec] = Field(min_length=1)
    target: str | None = None
    objective: str = "f1_weighted"
    direction: Literal["maximize", "minimize"] = "maximize"
    folds: int = Field(3, ge=2)
    sampler: Literal["tpe", "random"] = "tpe"
    seed: Seed = 0
    pruner: Literal["median", "percentile", "none"] = "median"
    keep_percentile: float = Field(75.0, gt=0, lt=100)
    prune_after_folds: int = Field(0, ge=0)
    prune_epoch_folds: int = Field(0, ge=0)
    prune_after_epochs: int = Field(10, ge=1)
    prune_epoch_factor: float = Field(2.0, ge=1)
    n_trials: int | None = Field(20, ge=1)
    timeout: float | None = Field(None, gt=0)
    storage: str | None = None
    study: str | None = None
    output_dir: Path = Path("outputs/sweeps")
    evaluate_best: bool = True
    evaluate_start: bool = True
    heartbeat: int = Field(30, ge=1)
    grace_period: int = Field(90, ge=1)

    @model_validator(mode="after")
    def _bounded(self) -> SweepConfig:
        if self.n_trials is None and self.timeout is None:
            raise ValueError("give n_trials, timeout (seconds) or both")
        if self.study is not None:
            check_study_name(self.study, "study")
        return self


STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}")


def check_study_name(name: str, what: str) -> str:
    """A study name names a study and its files (`<output_dir>/<name>.db`, `<output_dir>/<name>/`):
    a name, never a path.

    Raises:
        ValueError: naming `what` and the rule.
    """
    if not STUDY_NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"{what} {name!r} is not a study name: use letters, digits and _ . + - (at most 128, "
                         "starting with a letter or digit, no '..'); a study name is a name, not a path")
    return name


# Intermediate steps. Fold f's end is step (f+1)·FOLD_STEPS − 1; epoch (or boosting round) k of
# the j-th fit inside fold f (each inner fold's fit, in order) is f·FOLD_STEPS + j·FIT_STEPS + k.
# Steps grow in the order they are reported, so a trial's last step is its latest report.
FOLD_STEPS = 10**8
FIT_STEPS = 10**5


def fold_step(fold: int) -> int:
    return (fold + 1) * FOLD_STEPS - 1


def epoch_step(fold: int, fit: int, epoch: int) -> int | None:
    """The step of an epoch, or None past what the encoding holds (10⁵ epochs, 999 fits)."""
    if epoch >= FIT_STEPS or fit >= FOLD_STEPS // FIT_STEPS - 1:
        return None
    return fold * FOLD_STEPS + fit * FIT_STEPS + epoch


class StepPruner:
    """The median (`keep_percentile=50`) or percentile rule, judged at one point of the
    protocol: a trial is pruned when its value at its latest step is worse than the
    (100 − keep_percentile)-th percentile of the completed trials' values at the same point,
    once `n_startup_trials` trials have completed.

    The points are a fold's end (the running mean of the objective) and epoch k of a fit
    inside a fold (the fit's best validation loss so far, negated for a maximised objective):
    each is compared only with values of its own kind, never with the trial's values at other
    steps (Optuna's own rules take a trial's best over all its steps). A completed trial whose
    fit stopped early, before epoch k, counts with its last value in that fit: its best."""

    def __init__(self, keep_percentile: float = 50.0, n_startup_trials: int = 5) -> None:
        self.keep_percentile, self.n_startup_trials = keep_percentile, n_startup_trials

    def prune(self, study, trial) -> bool:
        from optuna.study import StudyDirection
        from optuna.trial import TrialState

        step = trial.last_step
        if step is None:
            return False
        value = trial.intermediate_values[step]
        if math.isnan(value):
            return True
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(done) < self.n_startup_trials:
            return False
        if step % FOLD_STEPS == FOLD_STEPS - 1:
            others = [t.intermediate_values.get(step) for t in done]
        else:
            start = step - step % FIT_STEPS
            others = []
            for t in done:
                seen = [s for s in t.intermediate_values if start <= s <= step]
                others.append(t.intermediate_values[max(seen)] if seen else None)
        others = [v for v in others if v is not None and not math.isnan(v)]
        if not others:
            return False
        if study.direction == StudyDirection.MAXIMIZE:
            return value < float(np.percentile(others, 100 - self.keep_percentile))
        return value > float(np.percentile(others, self.keep_percentile))


def build_pruner(sweep: SweepConfig):
    """The study's pruner: the median rule, the percentile rule keeping the top
    `keep_percentile` % at each point (the median rule keeps 50 %), or none; both wait for
    5 completed trials (`StepPruner`). When a trial is checked is the objective's choice: at
    the end of each fold from fold `prune_after_folds` + 1 on but the last, and at the epoch
    rungs of each fit in the first `prune_epoch_folds` folds."""
    import optuna

    optuna.pruners.BasePruner.register(StepPruner)  # one, without importing Optuna with this module
    if sweep.pruner == "median":
        return StepPruner(50.0)
    if sweep.pruner == "percentile":
        return StepPruner(sweep.keep_percentile)
    return optuna.pruners.NopPruner()


def value_text(value: Any) -> str:
    """A value as `--set` reads it (YAML)."""
    return json.dumps(value)


def train_config(sweep: SweepConfig, base: Path, params: Mapping[str, Any]) -> TrainConfig:
    """The train config with `params` (key path → value) applied and validated."""
    from fusion.config.load import load_config

    return load_config(TrainConfig, base / sweep.train,
                       [*sweep.overrides, *(f"{k}={value_text(v)}" for k, v in params.items())])


def check_sweep(sweep: SweepConfig, base: Path) -> tuple[TrainConfig, str]:
    """Validate every searched key at both ends of its range, the objective and the outer
    protocol; return the base train config and the target name.

    Raises:
        ConfigError: naming the key, metric or scheme at fault.
    """
    cfg = train_config(sweep, base, {})  # the train config itself first: its own errors name it
    for key, spec in sweep.space.items():
        ends = spec.choices if spec.type == "categorical" else [spec.low, spec.high]
        for v in ends:
            v = int(v) if spec.type == "int" else v
            try:
                train_config(sweep, base, {key: v})
            except ConfigError as err:
                raise ConfigError(f"sweep space key {key!r} = {v!r}: {err}") from None
    target = sweep.target or next(iter(cfg.targets))
    if target not in cfg.targets:
        raise ConfigError(f"sweep target {target!r} is not a target of {sweep.train} ({', '.join(cfg.targets)})")
    allowed = NOMINAL_METRICS if cfg.targets[target].kind == "nominal" else ORDINAL_METRICS
    if sweep.objective not in allowed:
        raise ConfigError(f"sweep objective {sweep.objective!r} is not a metric of target {target!r} "
                          f"({cfg.targets[target].kind}): {', '.join(allowed)}")
    if cfg.cv.scheme not in ("official", "holdout"):
        raise ConfigError(f"a sweep needs an outer protocol with a fixed test set (cv.scheme official or holdout), "
                          f"so that no trial sees the test samples; {sweep.train} has {cfg.cv.scheme!r}")
    return cfg, target


def suggest(trial, space: Mapping[str, SpaceSpec]) -> dict[str, Any]:
    out = {}
    for key, s in space.items():
        if s.type == "float":
            out[key] = trial.suggest_float(key, s.low, s.high, log=s.log, step=s.step)
        elif s.type == "int":
            out[key] = trial.suggest_int(key, int(s.low), int(s.high), log=s.log, step=int(s.step or 1))
        elif s.encoded:
            out[key] = json.loads(trial.suggest_categorical(key, [value_text(c) for c in s.choices]))
        else:
            out[key] = trial.suggest_categorical(key, s.choices)
    return out


def decode_params(space: Mapping[str, SpaceSpec], params: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's parameters as Optuna stores them → the values of the train config's keys."""
    return {k: json.loads(v) if k in space and space[k].encoded else v for k, v in params.items()}


class SurplusTrial(RuntimeError):
    """A trial started by one worker after the study already held `n_trials` (finished or
    running) trials of other workers: recorded as failed with `surplus: true`, not run."""


class Objective:
    """Grouped K-fold on the outer protocol's training samples; the running mean of the metric
    after each fold is reported for pruning. Features are loaded once per distinct data part of
    the config (extract + modalities), not once per trial."""

    def __init__(self, sweep: SweepConfig, base: Path, target: str, tracker=None) -> None:
        self.sweep, self.base, self.target, self.tracker = sweep, base, target, tracker
        self._data: dict[str, Any] = {}

    def data(self, cfg: TrainConfig):
        from fusion.data.blocks import load_model_data, select_target
        from fusion.models.base import MODELS

        key = json.dumps([cfg.extract.model_dump(mode="json") if cfg.extract else None,
                          {m: [i.model_dump(mode="json") for i in v] for m, v in cfg.modalities.items()},
                          cfg.targets[self.target].model_dump(mode="json"), cfg.cv.group_by], sort_keys=True)
        if key not in self._data:
            data = load_model_data(cfg, sequence_ok="sequence" in MODELS.get(cfg.model.name).inputs)
            self._data[key] = select_target(self.target, cfg.targets[self.target], data.labels, data.blocks,
                                            data.dataset, cfg.cv.group_by)
        return self._data[key]

    def __call__(self, trial) -> float:
        import optuna
        from optuna.trial import TrialState

        from fusion.evaluation.crossval import ModelSpec, rows, targets_of
        from fusion.evaluation.metrics import multiclass_metrics
        from fusion.evaluation.splits import grouped_kfold, inner_folds, make_folds

        trial.set_user_attr("worker", worker_identity())
        if self.sweep.n_trials:  # several workers: exactly n_trials run, whoever starts them
            earlier = [t for t in trial.study.get_trials(deepcopy=False, states=(
                TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)) if t.number < trial.number]
            if len(earlier) >= self.sweep.n_trials:
                trial.set_user_attr("surplus", True)
                trial.study.stop()
                raise SurplusTrial(f"the study already holds {self.sweep.n_trials} trials")
        params = suggest(trial, self.sweep.space)
        cfg = train_config(self.sweep, self.base, params)
        t = self.data(cfg)
        (outer,) = make_folds(cfg.cv.model_copy(update={"inner_splits": 0, "seeds": None}), t.y, t.groups, t.splits)
        tr = outer.train
        seed = self.sweep.seed + trial.number
        values: list[float] = []
        t0 = time.perf_counter()
        for i, (a, b) in enumerate(grouped_kfold(t.y[tr], t.groups[tr], self.sweep.folds, self.sweep.seed)):
            a, b = tr[a], tr[b]
            inner = []
            if cfg.cv.inner_splits > 1:
                pos = np.full(len(t.y), -1)
                pos[a] = np.arange(len(a))
                # the same inner folds for every trial (the model's seed varies), so that the
                # validation losses the pruner compares come from the same samples
                inner = [(pos[x], pos[y]) for x, y in inner_folds(t.y, t.groups, a, cfg.cv.inner_splits,
                                                                  self.sweep.seed + i)]
            # per-epoch values only feed the pruner: without one they would only cost storage writes
            watch = self.sweep.pruner != "none" and i < self.sweep.prune_epoch_folds
            hook = self._epoch_hook(trial, i, params, values, t0) if watch else None
            token = PROGRESS.set(hook)
            try:
                model = ModelSpec(cfg.model.name, cfg.model.params).build()
                model.fit(rows(t.blocks, a), targets_of(t).rows(a), inner=inner, seed=seed)
            finally:
                PROGRESS.reset(token)
            proba = model.predict_proba(rows(t.blocks, b))
            values.append(multiclass_metrics(t.y[b], proba, t.spec.kind)[self.sweep.objective])
            running = finite_mean(values)
            trial.report(running, fold_step(i))
            # (after the last fold there is nothing left to save)
            if self.sweep.prune_after_folds <= i < self.sweep.folds - 1 and trial.should_prune():
                self._track(trial, params, values, "PRUNED", time.perf_counter() - t0)
                raise optuna.TrialPruned(f"pruned after fold {i + 1}: {running:.4f}")
        value = finite_mean(values)
        self._track(trial, params, values, "COMPLETE", time.perf_counter() - t0, value)
        return value

    def _epoch_hook(self, trial, fold: int, params, values, t0):
        """At the rungs of every fit in fold `fold` (each inner fold's, in turn) — epochs
        (networks) or boosting rounds (XGBoost) `prune_after_epochs` · `prune_epoch_factor`^r,
        r = 0, 1, … (10, 20, 40, … by default; every epoch from `prune_after_epochs` on with a
        factor of 1) — the fit's best validation loss so far (negated
        for a maximised objective) is reported at `epoch_step(fold, fit, epoch)` and judged, so
        that trials are compared at the same epoch of the same fit. Rungs, not every epoch:
        every check is another chance to discard a good trial on noise, and each report is a
        write to the study's storage and each check a read of it (for a small network they
        cost more than its epoch)."""
        import optuna

        sign = -1.0 if self.sweep.direction == "maximize" else 1.0
        first, factor = self.sweep.prune_after_epochs, self.sweep.prune_epoch_factor
        rungs = None  # a factor of 1: every epoch from the first rung on
        if factor > 1:
            rungs = {round(first * factor**r) for r in range(int(math.log(FIT_STEPS / first, factor)) + 1)}
        state = {"fit": -1, "last": None, "best": float("inf")}

        def hook(loss: float, epoch: int) -> None:
            if state["last"] is None or epoch <= state["last"]:  # a new fit
                state["fit"], state["best"] = state["fit"] + 1, float("inf")
            state["last"] = epoch
            state["best"] = loss if not np.isfinite(loss) else min(state["best"], loss)
            step = epoch_step(fold, state["fit"], epoch)
            rung = epoch + 1 >= first if rungs is None else epoch + 1 in rungs
            if not rung or step is None:
                return
            trial.report(sign * state["best"], step)
            if trial.should_prune():
                self._track(trial, params, values, "PRUNED", time.perf_counter() - t0)
                raise optuna.TrialPruned(f"pruned at epoch {epoch + 1} of fit {state['fit'] + 1} in fold "
                                         f"{fold + 1} (best validation loss {state['best']:.4f})")

        return hook

    def _track(self, trial, params, values, state, seconds, value=None) -> None:
        if self.tracker is None:
            return
        with self.tracker.child(f"trial-{trial.number}") as child:
            child.log_params(params)
            child.set_tags({"trial.state": state, "trial.number": trial.number})
            for step, v in enumerate(np.cumsum(values) / np.arange(1, len(values) + 1)):
                child.log_metrics({f"intermediate.{self.sweep.objective}": float(v)}, step=step)
            metrics = {"seconds": seconds, "folds_run": len(values)}
            if value is not None:
                metrics[self.sweep.objective] = value
            child.log_metrics(metrics)


def storage_for(sweep: SweepConfig, study: str):
    """The study storage: SQLite under the output folder unless a URL is given; a running
    trial without a heartbeat for `grace_period` seconds (its process was killed) is marked
    failed when a process next joins the study, and retried once."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    url = sweep.storage
    if url is None:
        sweep.output_dir.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{(sweep.output_dir / f'{study}.db').resolve()}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from sqlalchemy.exc import IntegrityError, ProgrammingError, SQLAlchemyError

    for attempt in range(5):  # workers starting together race to create the tables
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = RDBStorage(url, heartbeat_interval=sweep.heartbeat, grace_period=sweep.grace_period,
                                     heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1))
            return storage, url
        except (IntegrityError, ProgrammingError):
            if attempt == 4:
                raise
            time.sleep(0.3 * (attempt + 1))
        except (SQLAlchemyError, ImportError, ValueError) as err:
            cause = getattr(err, "orig", None) or err
            raise ConfigError(f"study storage {url.split('@')[-1]}: cannot be opened as an Optuna study database "
                              f"({type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''})") from None
    raise AssertionError("unreachable")


def join_study(name: str, storage, sampler, pruner, direction: str, attempts: int = 5):
    """Create the study, or load it when another process created it first (two workers
    starting together race to insert it: the loser loads the winner's)."""
    import optuna
    from sqlalchemy.exc import IntegrityError

    for attempt in range(attempts):
        try:
            return optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                                       direction=direction, load_if_exists=True)
        except (IntegrityError, optuna.exceptions.DuplicatedStudyError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def definition(sweep: SweepConfig, cfg: TrainConfig, target: str) -> dict[str, Any]:
    """What makes two trials comparable: the space, objective, direction, target, folds and the
    train config the trials start from (its file, overrides and a digest of its resolved values).
    A study records it when created and belongs to that definition only."""
    import hashlib

    from fusion.config.load import to_yaml

    resolved = cfg.model_copy(update={"tracking": type(cfg.tracking)(), "output_dir": Path("outputs")})
    return {"space": {k: v.model_dump(mode="json", exclude_defaults=True) for k, v in sweep.space.items()},
            "objective": sweep.objective, "direction": sweep.direction, "target": target, "folds": sweep.folds,
            "train": str(sweep.train), "overrides": list(sweep.overrides),
            "train_digest": hashlib.blake2b(to_yaml(resolved).encode(), digest_size=8).hexdigest()}


def claim_study(study, name: str, url: str, mine: dict[str, Any]) -> None:
    """Record `mine` in a new study, or check that a stored study was made by the same sweep
    definition.

    Raises:
        ConfigError: the stored study's definition differs (saying in what and how to name a
            new study), or it holds trials but no definition.
    """
    stored = study.user_attrs.get("sweep")
    where = f"study {name!r} in {url.split('@')[-1]}"
    how = "give this sweep its own study (--study NAME, or `study:` in the sweep config)"
    if stored is None:
        if study.get_trials(deepcopy=False):
            raise ConfigError(f"{where} holds trials but no record of the sweep that made them (made outside "
                              f"`fusion sweep`, or by an earlier version): its trials cannot be checked against "
                              f"this sweep; {how}")
        study.set_user_attr("sweep", mine)
        return
    labels = {"space": "search space", "objective": "objective", "direction": "direction", "target": "target",
              "folds": "folds", "train": "train config", "overrides": "overrides",
              "train_digest": "train config's resolved values"}
    diffs = []
    for key, label in labels.items():
        if stored.get(key) != mine[key]:
            if key == "space":
                keys = sorted(k for k in set(stored.get(key) or {}) | set(mine[key])
                              if (stored.get(key) or {}).get(k) != mine[key].get(k))
                diffs.append(f"{label} (keys {', '.join(keys)})")
            elif key == "train_digest":
                diffs.append(f"{label} (the train config or a file it names was edited since)")
            else:
                diffs.append(f"{label} {stored.get(key)!r} (this sweep: {mine[key]!r})")
    if diffs:
        raise ConfigError(f"{where} belongs to another sweep definition; it differs in: {'; '.join(diffs)}. "
                          f"Its trials are not comparable with this sweep's: {how}")


def worker_identity() -> dict[str, Any]:
    """This process as a trial's worker: host, pid and the process's start time (a pid can be
    reused by a later process; its start time then differs)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _process_started(os.getpid())}


def _process_started(pid: int) -> float | None:
    import psutil

    try:
        return round(psutil.Process(pid).create_time(), 2)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def worker_gone(worker: Any) -> bool:
    """Whether a trial's worker on this host no longer runs (another host's is judged by the
    heartbeat instead)."""
    if not isinstance(worker, dict) or worker.get("host") != socket.gethostname():
        return False
    pid = worker.get("pid")
    if not isinstance(pid, int):
        return False
    started = _process_started(pid)
    return started is None or (worker.get("started") is not None and abs(started - worker["started"]) > 0.05)


def fail_orphans(study, storage) -> list[dict[str, Any]]:
    """Mark failed every running trial whose worker process on this host is gone (killed): it
    no longer counts toward `n_trials`, and is retried once with its parameters, as the
    heartbeat does for a worker on another host."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker")
        if not worker_gone(worker):
            continue
        if storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                RetryHeartbeatStaleTrialCallback(max_retry=1)(study, storage.get_trial(t._trial_id))
            out.append({"trial": t.number, "worker": f"{worker['host']}:{worker['pid']}"})
    return out


def study_figures(study, folder: Path) -> list[Path]:
    """Optimisation history and parallel coordinates of the study's trials, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm

    out = []
    with warnings.catch_warnings(), matplotlib.rc_context():  # optuna changes the style: restore it
        warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
        for name, plot in (("optimization_history", ovm.plot_optimization_history),
                           ("parallel_coordinates", ovm.plot_parallel_coordinate)):
            ax = plot(study)
            fig = (ax if hasattr(ax, "savefig") else np.ravel(ax)[0].figure)
            fig.set_size_inches(8, 4.5)
            path = folder / f"{name}.png"
            fig.savefig(path, dpi=100, bbox_inches="tight")
            out.append(path)
    plt.close("all")
    return out


def run_sweep(sweep: SweepConfig, base: Path, config_name: str | None = None) -> dict[str, Any]:
    """Run (or join) the study, write the best configuration, evaluate it once.

    The study is `sweep.study`, else the sweep config's file name (`config_name`): it belongs
    to one sweep definition (`definition`), and a stored study of another is refused. Running
    trials left by a killed worker on this host are marked failed first (`fail_orphans`).

    Returns:
        {"study", "storage", "n_trials" (finished: complete or pruned), "states", "best":
        {"value", "params", "trial"}, "best_config", "importance", "recovered" (trials of
        killed workers marked failed), "evaluation" (the outer protocol's summary of the best
        configuration, when `evaluate_best`)}.

    Raises:
        ConfigError: no study name, a stored study of another sweep definition, no trial completed.
    """
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    from fusion.config.load import to_yaml
    from fusion.tracking import Tracker

    cfg, target = check_sweep(sweep, base)
    study_name = sweep.study or config_name
    if study_name is None:
        raise ConfigError("name the study: `study:` in the sweep config or --study NAME")
    try:
        check_study_name(study_name, "study" if sweep.study else "the sweep config's file name, as a study name,")
    except ValueError as err:
        raise ConfigError(f"{err}{'' if sweep.study else '; give --study NAME'}") from None
    storage, url = storage_for(sweep, study_name)
    sampler = (optuna.samplers.TPESampler(seed=sweep.seed) if sweep.sampler == "tpe"
               else optuna.samplers.RandomSampler(seed=sweep.seed))
    pruner = build_pruner(sweep)
    study = join_study(study_name, storage, sampler, pruner, sweep.direction)
    claim_study(study, study_name, url, definition(sweep, cfg, target))
    recovered = fail_orphans(study, storage)
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    callbacks = [MaxTrialsCallback(sweep.n_trials, states=finished)] if sweep.n_trials else []
    t0 = time.perf_counter()
    with Tracker(cfg.tracking.model_copy(update={"experiment": f"{cfg.tracking.experiment}-sweeps"}),
                 run_name=f"sweep-{study_name}") as tracker:
        objective = Objective(sweep, base, target, tracker if cfg.tracking.enabled else None)
        done = len(study.get_trials(deepcopy=False, states=finished))
        if not sweep.n_trials or done < sweep.n_trials:
            # MaxTrialsCallback stops every worker once the study holds n_trials finished trials
            study.optimize(objective, timeout=sweep.timeout, callbacks=callbacks, gc_after_trial=True,
                           catch=(SurplusTrial,))
        trials = study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if not complete:
            raise ConfigError(f"study {study_name!r}: no trial completed (states: "
                              f"{sorted({t.state.name for t in trials})})")
        best = study.best_trial
        best_params = decode_params(sweep.space, best.params)
        best_cfg = train_config(sweep, base, best_params)
        folder = sweep.output_dir / study_name
        folder.mkdir(parents=True, exist_ok=True)
        from features.files import atomic_write_text

        atomic_write_text(to_yaml(best_cfg), folder / "best.yaml")
        importance = {}
        if len(complete) >= 2 and len(sweep.space) > 1:
            importance = {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
        states: dict[str, int] = {}
        for t in trials:
            name = "SURPLUS" if t.user_attrs.get("surplus") else t.state.name
            states[name] = states.get(name, 0) + 1
        summary: dict[str, Any] = {
            "study": study_name, "storage": url, "target": target, "objective": sweep.objective,
            "direction": sweep.direction, "n_trials": sum(states.get(s.name, 0) for s in finished),
            "states": states, "seconds": round(time.perf_counter() - t0, 3),
            "best": {"value": best.value, "params": best_params, "trial": best.number},
            "best_config": str(folder / "best.yaml"), "importance": importance, "recovered": recovered}
        tracker.log_params({f"best.{k}": v for k, v in best_params.items()})
        tracker.log_metrics({f"best.{sweep.objective}": best.value, "trials.finished": summary["n_trials"],
                             **{f"importance.{k}": v for k, v in importance.items()}})
        tracker.set_tags({"sweep.study": study_name, "sweep.storage": url.split("@")[-1]})
        atomic_write_text(json.dumps(summary, indent=2, default=str), folder / "sweep.json")
        summary["figures"] = [str(f) for f in study_figures(study, folder)]
        for f in [folder / "best.yaml", folder / "sweep.json", *map(Path, summary["figures"])]:
            tracker.log_artifact(f)
    summary["flags"] = []
    if sweep.evaluate_best:
        from fusion.training import train

        def evaluate(c: TrainConfig, tag: str) -> dict[str, Any]:
            return train(c.model_copy(update={"tracking": c.tracking.model_copy(
                update={"run_name": f"{study_name}-{tag}"})}))

        summary["evaluation"] = evaluate(best_cfg, "best")
        if sweep.evaluate_start:
            summary["start_evaluation"] = evaluate(cfg, "start")
            summary["flags"] = start_flags(sweep, target, summary["evaluation"], summary["start_evaluation"])
    return summary


def start_flags(sweep: SweepConfig, target: str, best: dict[str, Any], start: dict[str, Any]) -> list[dict[str, Any]]:
    """`sweep_worse_than_start` when the best configuration scored worse on the held-out test
    than the configuration the sweep started from (the train config with its overrides)."""
    from fusion.evaluation.flags import flag

    a = best["targets"][target]["metrics"]["model"].get(sweep.objective)
    b = start["targets"][target]["metrics"]["model"].get(sweep.objective)
    if a is None or b is None:
        return []
    worse = a["mean"] < b["mean"] if sweep.direction == "maximize" else a["mean"] > b["mean"]
    if not worse:
        return []
    return [flag("sweep_worse_than_start", target,
                 f"{target}: the swept best configuration scored worse on the held-out test than the configuration "
                 f"the sweep started from: {sweep.objective} {a['mean']:.3f} vs {b['mean']:.3f} (the training folds "
                 "chose it; the test does not confirm the choice)")]


def format_sweep(s: dict[str, Any]) -> str:
    lines = [f"trial {r['trial']} was left running by worker {r['worker']}, which is gone (killed): marked failed, "
             "not counted, and retried once" for r in s.get("recovered", [])]
    lines += [f"study {s['study']} ({s['storage']}): {s['n_trials']} finished trials {s['states']}, "
              f"{s['seconds']:.1f} s",
              f"best {s['objective']} on the training folds: {s['best']['value']:.4f} (trial {s['best']['trial']}) "
              f"with {s['best']['params']}",
              f"best configuration: {s['best_config']} (fusion train --config accepts it)"]
    if s["importance"]:
        lines.append("importance: " + ", ".join(f"{k} {v:.2f}" for k, v in s["importance"].items()))
    if "start_evaluation" in s:
        t = s["target"]
        best = s["evaluation"]["targets"][t]["metrics"]["model"].get(s["objective"])
        start = s["start_evaluation"]["targets"][t]["metrics"]["model"].get(s["objective"])
        if best and start:
            lines.append(f"held-out test {s['objective']}: best {best['mean']:.4f}, the starting configuration "
                         f"{start['mean']:.4f}")
    lines.extend(f"FLAG {f['code']}: {f['message']}" for f in s.get("flags", []))
    return "\n".join(lines)
