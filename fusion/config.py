"""Typed configuration: YAML files validated by pydantic models, plus `--set` overrides.

Every model forbids unknown keys. A typo is reported with the key, the file it came from
(or the `--set` that introduced it) and the keys that would have been valid there. A field
that holds a sub-configuration may instead name another YAML file, relative to the file
that names it; that is how `configs/demo.yaml` reuses the extract and train configs.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from features.align import SegmentationConfig
from fusion.splits import SplitConfig

T = TypeVar("T", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration could not be loaded or validated; the message says where and why."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComponentSpec(StrictModel):
    """A registered component (extractor, dataset, model) by name, with its parameters."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class DatasetSpec(StrictModel):
    """A corpus: adapter name, its folder, adapter parameters, and its feature-store folder."""

    name: str = "daic-woz"
    root: Path
    params: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None

    @property
    def store_id(self) -> str:
        """Folder name of this corpus in the feature store (default: name-rootfolder)."""
        return self.id or f"{self.name}-{self.root.resolve().name}"


class FeatureSetSpec(StrictModel):
    """One feature set: an extractor and how samples are segmented for it."""

    extractor: ComponentSpec
    segmentation: SegmentationConfig = Field(default_factory=SegmentationConfig)


class ExtractConfig(StrictModel):
    dataset: DatasetSpec
    store: Path = Path("features_store")
    features: dict[str, FeatureSetSpec]
    n_jobs: int = Field(1, ge=1)
    executor: Literal["local", "dask"] = "local"
    scheduler: str | None = None
    progress: bool = True


class InputSpec(StrictModel):
    """A feature set fed to a model, how its rows are pooled to one row per sample, and
    optionally which of its columns to keep (shell-style patterns, e.g. "mean_*")."""

    features: str
    pool: list[Literal["mean", "std", "min", "max", "median"]] = Field(default_factory=lambda: ["mean"])
    columns: list[str] | None = None


class TargetSpec(StrictModel):
    """A classification target (classes 0..n_classes-1), what counts as positive for the
    decision curve, and an optional score label fused by the same model (regression head)."""

    label: str
    n_classes: int = Field(ge=2)
    positive_from: int | None = None
    positive_name: str | None = None
    score: str | None = None


class EvaluationConfig(StrictModel):
    ablation: bool = False
    robustness: bool = False
    noise_levels: list[float] = Field(default_factory=lambda: [0.5, 1.0, 2.0])
    decision_curves: bool = False
    attributions: bool = False
    plots: bool = False
    n_bootstrap: int = Field(1000, ge=0)
    save_model: bool = False


class PaperProtocolConfig(StrictModel):
    """The tri-modal paper's public-code setup, for `--protocol trimodal-paper`."""

    audio: str = "logmel_session"
    face: str = "face_frames"
    text: str = "text_transcript"
    text_dim: int = 768
    face_dim: int = 512
    n_splits: int = 7
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])


class TrackingConfig(StrictModel):
    enabled: bool = True
    uri: str = "sqlite:///mlruns/mlflow.db"
    artifacts: Path = Path("mlruns/artifacts")
    experiment: str = "default"
    run_name: str | None = None


class TrainConfig(StrictModel):
    """`fusion train`: modalities (each one or more pooled feature sets), targets, a fusion
    model from the registry, the evaluation split, what to evaluate, and tracking."""

    extract: ExtractConfig | None = None
    modalities: dict[str, list[InputSpec]]
    targets: dict[str, TargetSpec]
    model: ComponentSpec
    cv: SplitConfig = Field(default_factory=SplitConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    protocol: Literal["ours", "trimodal-paper"] = "ours"
    paper: PaperProtocolConfig = Field(default_factory=PaperProtocolConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    output_dir: Path = Path("outputs")


class CorpusConfig(StrictModel):
    """The synthetic demo corpus (written into the extract config's dataset root)."""

    n_sessions: int = Field(60, ge=4)
    seed: int = 0
    questions: int = Field(10, ge=2)
    dev_fraction: float = Field(0.3, ge=0.0, lt=1.0)


class DataConfig(StrictModel):
    """`fusion data describe`: a dataset, and optionally the split to check on it."""

    dataset: DatasetSpec
    cv: SplitConfig | None = None
    target: str | None = None


class DemoConfig(StrictModel):
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    extract: ExtractConfig
    train: TrainConfig


# --- loading ------------------------------------------------------------------------------

def _unwrap(tp: Any) -> Any:
    """Strip Optional/Union to the first pydantic model (or the type itself)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                return arg
        return tp
    return tp


def _model_at(model: type[BaseModel], loc: Sequence[Any]) -> Any:
    """The type found by following `loc` (field names, dict keys, list indices) from `model`."""
    tp: Any = model
    for part in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            if field is None:
                return None
            tp = field.annotation
        elif origin in (dict, Mapping):
            tp = typing.get_args(tp)[1]
        elif origin in (list, Sequence, tuple):
            tp = typing.get_args(tp)[0]
        else:
            return None
    return _unwrap(tp)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def _inline(model: type[BaseModel], data: dict[str, Any], here: Path, prefix: tuple,
            origins: dict[tuple, str]) -> dict[str, Any]:
    """Replace string values of sub-config fields by the YAML files they name."""
    for name, field in model.model_fields.items():
        sub = _unwrap(field.annotation)
        if name not in data or not (isinstance(sub, type) and issubclass(sub, BaseModel)):
            continue
        value = data[name]
        if isinstance(value, str) and value.endswith((".yaml", ".yml")):
            path = (here.parent / value).resolve() if not Path(value).is_absolute() else Path(value)
            origins[prefix + (name,)] = _display(path)
            value = _read_yaml(path)
            data[name] = _inline(sub, value, path, prefix + (name,), origins)
        elif isinstance(value, dict):
            data[name] = _inline(sub, value, here, prefix + (name,), origins)
    return data


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b=3` → (["a", "b"], 3); the value is read as YAML (numbers, lists, null, …)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set model.params.C=0.5")
    key, raw = item.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str],
                    origins: dict[tuple, str]) -> dict[str, Any]:
    for item in overrides:
        parts, value = parse_override(item)
        node = data
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            elif not isinstance(nxt, dict):
                raise ConfigError(
                    f"--set {item!r}: {'.'.join(parts[: i + 1])!r} is a value "
                    f"({nxt!r}), not a section with keys"
                )
            node = nxt
        node[parts[-1]] = value
        origins[tuple(parts)] = f"--set {item}"
    return data


def _origin(loc: Sequence[Any], origins: Mapping[tuple, str], default: str) -> str:
    """Where the value at `loc` came from: the deepest file or --set covering it."""
    loc = tuple(str(p) for p in loc)
    best, best_len = default, -1
    for prefix, where in origins.items():
        prefix = tuple(map(str, prefix))
        if loc[: len(prefix)] == prefix and len(prefix) > best_len:
            best, best_len = where, len(prefix)
        elif prefix[: len(loc)] == loc and len(prefix) > len(loc) and where.startswith("--set"):
            return where  # an override below this key made it invalid
    return best


def format_errors(model: type[BaseModel], err: ValidationError, origins: Mapping[tuple, str],
                  source: str, prefix: tuple = ()) -> list[str]:
    """One line per validation error: the full key, where it came from, what was expected."""
    lines = []
    for e in err.errors():
        loc = [p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        full = list(prefix) + loc
        key = ".".join(str(p) for p in full)
        where = _origin(full, origins, source)
        if e["type"] == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            is_model = isinstance(parent, type) and issubclass(parent, BaseModel)
            valid = ", ".join(parent.model_fields) if is_model else "?"
            scope = ".".join(str(p) for p in full[:-1]) or "the top level"
            lines.append(f"unknown key {key!r} in {where}; valid keys at {scope}: {valid}")
        elif e["type"] == "missing":
            lines.append(f"missing required key {key!r} in {where}")
        else:
            lines.append(f"invalid value for {key!r} in {where}: {e['msg']} (got {e.get('input')!r})")
    return lines


def load_config(model: type[T], path: str | Path | None = None, overrides: Sequence[str] = (),
                data: Mapping[str, Any] | None = None) -> T:
    """Load, override and validate a configuration, including its components' parameters.

    Args:
        model: the config class (ExtractConfig, TrainConfig, DemoConfig, …).
        path: YAML file; `data` may be given instead (tests, programmatic use).
        overrides: `--set` items such as "model.params.C=0.5".

    Raises:
        ConfigError: listing every problem with its key and where it came from.
    """
    origins: dict[tuple, str] = {}
    if path is not None:
        path = Path(path)
        source = _display(path)
        raw = _read_yaml(path)
    else:
        source, raw, path = "<config>", dict(data or {}), Path.cwd() / "<config>"
    raw = _inline(model, raw, path, (), origins)
    raw = apply_overrides(raw, overrides, origins)
    try:
        cfg = model.model_validate(raw)
    except ValidationError as err:
        raise ConfigError("\n".join(format_errors(model, err, origins, source))) from None
    problems = check_components(cfg, origins, source)
    if problems:
        raise ConfigError("\n".join(problems))
    return cfg


def _components(cfg: BaseModel, prefix: tuple = ()):
    """Yield (loc, kind, spec) for every registered component named in a config."""
    from fusion.registry import DATASETS, EXTRACTORS, MODELS

    if isinstance(cfg, DataConfig):
        yield prefix + ("dataset",), DATASETS, cfg.dataset
    elif isinstance(cfg, ExtractConfig):
        yield prefix + ("dataset",), DATASETS, cfg.dataset
        for name, fs in cfg.features.items():
            yield prefix + ("features", name, "extractor"), EXTRACTORS, fs.extractor
    elif isinstance(cfg, TrainConfig):
        if cfg.extract is not None:
            yield from _components(cfg.extract, prefix + ("extract",))
        yield prefix + ("model",), MODELS, cfg.model
    elif isinstance(cfg, DemoConfig):
        yield from _components(cfg.extract, prefix + ("extract",))
        yield from _components(cfg.train, prefix + ("train",))


def check_components(cfg: BaseModel, origins: Mapping[tuple, str], source: str) -> list[str]:
    """Check component names against their registries and their params against their models."""
    from features.registry import UnknownNameError

    problems = []
    for loc, registry, spec in _components(cfg):
        try:
            cls = registry.get(spec.name)
        except UnknownNameError as err:
            where = _origin(loc + ("name",), origins, source)
            problems.append(f"invalid value for {'.'.join(loc + ('name',))!r} in {where}: {err}")
            continue
        params_model = getattr(cls, "Params", None)
        if params_model is None:
            continue
        try:
            params = params_model.model_validate(spec.params)
        except ValidationError as err:
            problems.extend(format_errors(params_model, err, origins, source, loc + ("params",)))
            continue
        problems.extend(_check_learners(params, loc, origins, source))
    return problems


def _check_learners(params: BaseModel, loc: tuple, origins: Mapping[tuple, str], source: str) -> list[str]:
    """A fusion model's `learner` / `learners.<modality>` name their own registered learner."""
    from features.registry import UnknownNameError
    from fusion.models.learners import LEARNERS

    specs = []
    if hasattr(params, "learner"):
        specs.append((loc + ("params", "learner"), params.learner))
    for m, spec in getattr(params, "learners", {}).items():
        specs.append((loc + ("params", "learners", m), spec))
    problems = []
    for where, spec in specs:
        try:
            cls = LEARNERS.get(spec.name)
        except UnknownNameError as err:
            problems.append(f"invalid value for {'.'.join(where + ('name',))!r} in "
                            f"{_origin(where, origins, source)}: {err}")
            continue
        try:
            cls.Params.model_validate(spec.params)
        except ValidationError as err:
            problems.extend(format_errors(cls.Params, err, origins, source, where + ("params",)))
    return problems


def to_yaml(cfg: BaseModel) -> str:
    """The resolved configuration as YAML (what a run actually used)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping → {"a.b.c": value}, for logging as parameters."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
