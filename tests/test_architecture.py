"""The tree keeps its rules: no import circles, a model module imports no adapter or
extractor, registries live beside their base classes, and file names are registry names."""

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
    ("fusion.models.nets.base:NETS", "fusion/models/nets"),
    ("fusion.models.context_fusion:MULTILABEL_MODELS", "fusion/models"),
    ("fusion.datasets.base:DATASETS", "fusion/datasets"),
])
def test_file_names_are_registry_names(registry_path, package):
    import importlib

    module, attr = registry_path.split(":")
    registry = getattr(importlib.import_module(module), attr)
    for name in registry.names():
        cls = registry.get(name)
        assert cls.__module__ == f"{package.replace('/', '.')}.{name.replace('-', '_')}", (name, cls.__module__)
