"""Name → class registries (extractors here; datasets and models in `fusion.registry`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised when a registry is asked for a name it does not hold."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class Registry(Generic[T]):
    """A decorator registry mapping a public name to a class.

    Args:
        kind: what the registry holds, used in error messages ("extractor", "model", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Register the decorated class under `name`.

        Raises:
            ValueError: if `name` is already taken by another class.
        """

        def decorator(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(
                    f"{self.kind} name {name!r} is already registered to {self._items[name]!r}"
                )
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """Return the class registered as `name`.

        Raises:
            UnknownNameError: naming the valid choices when `name` is unknown.
        """
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(
                f"Unknown {self.kind} {name!r}. Valid {self.kind} names: "
                f"{', '.join(sorted(self._items)) or '(none registered)'}."
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


EXTRACTORS: Registry[type] = Registry("extractor")
