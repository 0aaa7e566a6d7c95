"""The tree keeps its rules: the layers import one way (features → datasets/config → data →
models → protocols → outputs/report → cli), no import circles, a model module imports no adapter
or extractor, registries live beside their base classes, and file names are registry names."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("features", "fusion")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every import between project modules — at module level or inside functions — plus the
    implicit import of each parent package that importing a submodule triggers."""
    modules = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}

    def add(src: str, target: str) -> None:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name in modules and name != src and not src.startswith(name + "."):
                graph[src].add(name)

    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(name, alias.name)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    add(name, full if full in modules else node.module)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


# Each module's layer (by the longest matching prefix); a module may import only from its own
# layer or below. A package whose __init__ imports nothing (or only its lazy public names) is
# neutral: importing one of its modules runs it, but it adds no dependency.
LAYERS = [
    ("features", 0),
    ("fusion.config.schema", 1), ("fusion.datasets", 1), ("fusion.synthetic", 1),
    ("fusion.evaluation.splits", 1), ("fusion.evaluation.metrics", 1), ("fusion.evaluation.decision", 1), ("fusion.evaluation.progress", 1),
    ("fusion.evaluation.multilabel", 1), ("fusion.evaluation.flags", 1),
    ("fusion.data", 2), ("fusion.synthetic.inconsistency", 2),
    ("fusion.models", 3), ("fusion.lit", 3), ("fusion.persist", 3),
    ("fusion.config.load", 4), ("fusion.extraction", 4), ("fusion.describe", 4), ("fusion.scaffold", 4),
    ("fusion.evaluation", 5), ("fusion.protocols", 5), ("fusion.synthetic.leakage", 5),
    ("fusion.tracking", 5), ("fusion.outputs", 6), ("fusion.training", 6), ("fusion.sweep", 7),
    ("fusion.report", 7), ("fusion.comparison", 7), ("fusion.demo", 7),
    ("fusion.cli", 8),
]
NEUTRAL = {"fusion", "fusion.config", "fusion.datasets", "fusion.data", "fusion.models", "fusion.models.learners",
           "fusion.models.nets", "fusion.evaluation", "fusion.protocols", "fusion.report", "fusion.synthetic"}


def layer(module: str) -> int | None:
    best = None
    for prefix, level in LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, level)
    return None if best is None else best[1]


def test_the_layers_import_one_way():
    graph = import_graph()
    unplaced = sorted(m for m in graph if m not in NEUTRAL and layer(m) is None)
    assert not unplaced, f"modules without a layer: {unplaced}"
    upward = sorted((a, b) for a, deps in graph.items() for b in deps if b not in NEUTRAL and a not in NEUTRAL
                    and layer(b) > layer(a))
    assert upward == [], upward
    assert not [(a, b) for a, deps in graph.items() if a.startswith("features") for b in deps
                if b.startswith("fusion")], "features/ imports fusion/"


def test_neutral_packages_import_nothing_of_the_project():
    for name in NEUTRAL:
        path = ROOT / name.replace(".", "/") / "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = [a.name if isinstance(n, ast.Import) else n.module for n in ast.walk(tree)
                    if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names]
        assert all(m in ("__future__", "features.lazy") for m in imported), (name, imported)


def test_no_import_circles():
    graph = import_graph()
    assert len(graph) > 40
    assert cycles(graph) == []


def test_the_checker_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_importing_a_model_module_imports_no_adapter_extractor_or_torch():
    code = ("import sys, fusion.models.late_fusion; "
            "print(sorted(m for m in sys.modules if m.startswith(('features', 'fusion', 'torch', 'opensmile', "
            "'sentence_transformers', 'mlflow'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    loaded = eval(out)  # noqa: S307 - a list of module names printed by the line above
    assert not [m for m in loaded if m.startswith(("features.audio", "features.text", "features.face",
                                                   "fusion.datasets.", "torch", "opensmile", "mlflow",
                                                   "sentence_transformers"))], loaded


@pytest.mark.parametrize("registry_path,package", [
    ("fusion.models.base:MODELS", "fusion/models"),
    ("fusion.models.learners.base:LEARNERS", "fusion/models/learners"),
    ("fusion.datasets.base:DATASETS", "fusion/datasets"),
    ("fusion.protocols.base:PROTOCOLS", "fusion/protocols"),
])
def test_file_names_are_registry_names(registry_path, package):
    import importlib

    module, attr = registry_path.split(":")
    registry = getattr(importlib.import_module(module), attr)
    for name in registry.names():
        cls = registry.get(name)
        assert cls.__module__ == f"{package.replace('/', '.')}.{name.replace('-', '_')}", (name, cls.__module__)


def test_test_files_share_helpers_through_one_module():
    """Tests import shared helpers from `fixtures` (pytest's fixtures live in conftest.py), never
    from another test file, and no other helper module grows beside it."""
    tests = Path(__file__).resolve().parent
    helpers = sorted(p.name for p in tests.glob("*.py") if not p.name.startswith("test_"))
    assert helpers == ["conftest.py", "fixtures.py"], helpers
    for path in tests.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert not name.split(".")[0].startswith(("test_", "conftest")), (path.name, name)
