"""Loading configurations: YAML files validated against `fusion.config.schema`, `--set`
overrides, and error messages that name the key, where it came from and what was valid.

Every model forbids unknown keys. A typo is reported with the key, the file it came from
(or the `--set` that introduced it) and the keys that would have been valid there. A field
that holds a sub-configuration may instead name another YAML file, relative to the file
that names it; that is how `configs/demo.yaml` reuses the extract and train configs. Component
names (extractors, datasets, models, and components named inside their parameters such as a
late-fusion model's learner) are checked against their registries, and their parameters
against each component's own parameter model.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from features.registry import EXTRACTORS, Registry, UnknownNameError
from fusion.config.schema import (
    ConfigError,
    DataConfig,
    DemoConfig,
    ExtractConfig,
    TrainConfig,
)
from fusion.datasets.base import DATASETS
from fusion.models.base import MODELS

T = TypeVar("T", bound=BaseModel)


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


# A config is a few hundred values; even a long list of sample ids stays far below this. The
# bound counts every value an alias would copy, so that an alias bomb ("billion laughs") is
# refused from its small parse tree before anything is built from it.
MAX_YAML_NODES = 200_000


class YamlSyntaxError(ConfigError):
    """Text that is not YAML."""


def read_yaml_text(text: str, where: str, max_nodes: int = MAX_YAML_NODES) -> Any:
    """YAML text → Python values (safe tags only), refusing a document whose values, counted
    with every alias expanded, exceed `max_nodes`, or whose aliases refer to themselves.

    Raises:
        ConfigError: naming `where` (a file or a --set item) and what was found.
    """
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise ConfigError(f"{where}: YAML nested too deeply") from None
        if node is None:
            return None
        n = expanded_size(node, max_nodes)
        if n is None:
            raise ConfigError(f"{where}: an alias refers to a value that contains it (a recursive YAML alias); "
                              "write the values out") from None
        if n > max_nodes:
            raise ConfigError(f"{where}: the YAML expands to more than {max_nodes:,} values (aliases counted as "
                              "the values they copy); a config is far smaller — is it an alias bomb?")
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        raise YamlSyntaxError(f"{where}: not valid YAML: {err}") from None
    finally:
        loader.dispose()


def expanded_size(root: yaml.Node, limit: int) -> int | None:
    """The number of values in a YAML node graph with every alias expanded (stopping once past
    `limit`), or None when an alias is recursive. Linear in the graph's size: a node reached
    through many aliases is counted from its memoised size."""
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            kids = _children(node)
            size[key] = min(limit + 1, 1 + sum(size[id(k)] for k in kids))
            continue
        if key in size:
            continue
        if key in on_path:
            return None
        on_path.add(key)
        stack.append((node, True))
        for k in _children(node):
            if id(k) in on_path:
                return None
            if id(k) not in size:
                stack.append((k, False))
    return size[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a UTF-8 text file ({err.reason} at byte {err.start})") from None
    data = read_yaml_text(text, str(path))
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
        value = read_yaml_text(raw, f"--set {item}") if raw.strip() else ""
    except YamlSyntaxError:
        value = raw  # not YAML: the text itself
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
        origins.pop(tuple(parts), None)  # keep the overrides in the order they were applied
        origins[tuple(parts)] = f"--set {item}"
    return data


def _origin(loc: Sequence[Any], origins: Mapping[tuple, str], default: str) -> str:
    """Where the value at `loc` came from: the last `--set` that wrote it, a part of it or a
    section holding it (overrides are kept in the order they were applied), else the deepest
    file covering it."""
    loc = tuple(str(p) for p in loc)
    last_set = None
    best, best_len = default, -1
    for prefix, where in origins.items():
        prefix = tuple(map(str, prefix))
        covers = loc[: len(prefix)] == prefix
        below = prefix[: len(loc)] == loc and len(prefix) > len(loc)
        if where.startswith("--set"):
            if covers or below:
                last_set = where
        elif covers and len(prefix) > best_len:
            best, best_len = where, len(prefix)
    return last_set or best


def format_errors(model: type[BaseModel], err: ValidationError | list[dict], origins: Mapping[tuple, str],
                  source: str, prefix: tuple = ()) -> list[str]:
    """One line per validation error: the full key, where it came from, what was expected.

    Errors of a component named inside parameters (`features.registry.ComponentRef`) are
    expanded: an unknown name is reported at `….name`, a bad parameter at `….params.<key>`
    with the component's own valid keys.
    """
    lines = []
    for e in err.errors(include_url=False) if isinstance(err, ValidationError) else err:
        loc = [p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        full = list(prefix) + loc
        key = ".".join(str(p) for p in full)
        where = _origin(full, origins, source)
        if e["type"] == "component_name":
            lines.append(f"invalid value for {key + '.name'!r} in {where}: {e['ctx']['message']}")
        elif e["type"] == "component_params":
            lines.extend(format_errors(e["ctx"]["schema"], e["ctx"]["errors"], origins, source,
                                       tuple(full) + tuple(e["ctx"].get("at", ("params",)))))
        elif e["type"] == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            if parent is None and loc and loc[0] == "grid":  # a learner's grid holds its parameters' values
                parent = _model_at(model, loc[1:-1])
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
    """Yield (loc, registry, spec) for every registered component a config names."""
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
        for tag, spec in cfg.evaluation.baselines.items():
            yield prefix + ("evaluation", "baselines", tag), MODELS, spec
    elif isinstance(cfg, DemoConfig):
        yield from _components(cfg.extract, prefix + ("extract",))
        yield from _components(cfg.train, prefix + ("train",))


def check_components(cfg: BaseModel, origins: Mapping[tuple, str], source: str) -> list[str]:
    """Check component names against their registries and their params against their models
    (which check the components named inside them)."""
    problems = []
    for loc, registry, spec in _components(cfg):
        problems.extend(check_component(registry, spec.name, spec.params, loc, origins, source))
    return problems


def check_component(registry: Registry, name: str, params: Mapping[str, Any], loc: tuple,
                    origins: Mapping[tuple, str], source: str) -> list[str]:
    try:
        cls = registry.get(name)
    except UnknownNameError as err:
        where = _origin(loc + ("name",), origins, source)
        return [f"invalid value for {'.'.join(loc + ('name',))!r} in {where}: {err}"]
    params_model = getattr(cls, "Params", None)
    if params_model is None:
        return []
    try:
        params_model.model_validate(params)
    except ValidationError as err:
        return format_errors(params_model, err, origins, source, loc + ("params",))
    return []


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
