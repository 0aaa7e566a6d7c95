"""Public names of a package imported when first used (PEP 562), so that importing a package —
which every import of one of its modules does — stays light, and its root still exports the API."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, api: Mapping[str, str], renamed: Mapping[str, str] | None = None
                 ) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """`__all__`, `__getattr__` and `__dir__` for `package`: `api` maps each public name to the
    module defining it (`renamed`: a public name → its name in that module)."""
    public = sorted(api)
    renamed = dict(renamed or {})

    def __getattr__(name: str) -> Any:
        if name in api:
            return getattr(importlib.import_module(api[name]), renamed.get(name, name))
        raise AttributeError(f"module {package!r} has no attribute {name!r}; its public names: {', '.join(public)}")

    def __dir__() -> list[str]:
        return public

    return public, __getattr__, __dir__
