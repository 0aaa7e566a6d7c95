"""Name → class registries, and the extractor registry.

Every registry lives beside the base class of what it holds (extractors here, datasets in
`fusion.datasets.base`, fusion models in `fusion.models.base`, learners in
`fusion.models.learners.base`, networks in `fusion.models.nets.base`). A registry knows the
package its members live in and imports that package's modules the first time it is asked
for a name, so nothing has to import every module up front and no module imports its way
back up to fill a registry.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised when a registry is asked for a name it does not hold."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


def exception_text(err: BaseException) -> str:
    """What went wrong, for a message that names the file or folder it came from: a registry's
    own message, `missing entry 'x'` for a missing key, else the exception's type and text."""
    if isinstance(err, UnknownNameError):
        return str(err)
    if isinstance(err, KeyError):
        return f"missing entry {err}"
    return f"{type(err).__name__}: {err}"


class Registry(Generic[T]):
    """A decorator registry mapping a public name to a class.

    Args:
        kind: what the registry holds, used in error messages ("extractor", "model", ...).
        package: the package whose modules register members; they are imported (not
            recursively) the first time a name is looked up or listed.
    """

    def __init__(self, kind: str, package: str | None = None) -> None:
        self.kind = kind
        self.package = package
        self._items: dict[str, T] = {}
        self._discovered = package is None

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

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(package.__path__, f"{self.package}."):
            if not info.ispkg:
                importlib.import_module(info.name)

    def get(self, name: str) -> T:
        """Return the class registered as `name`.

        Raises:
            UnknownNameError: naming the valid choices when `name` is unknown.
        """
        if name not in self._items:
            self._discover()
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(
                f"Unknown {self.kind} {name!r}. Valid {self.kind} names: "
                f"{', '.join(sorted(self._items)) or '(none registered)'}."
            ) from None

    def name_of(self, obj: Any) -> str:
        """The name `obj` (a registered class, or an instance of one) is registered under.

        Raises:
            UnknownNameError: if neither it nor its class is registered.
        """
        self._discover()
        cls = obj if isinstance(obj, type) else type(obj)
        for name, item in self._items.items():
            if item is cls:
                return name
        raise UnknownNameError(f"{cls.__name__} is not a registered {self.kind}")

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._discover()
        return len(self._items)


class ComponentRef(BaseModel):
    """A registered component named inside another component's parameters (a late-fusion
    model's learner, say): `{name, params}`, checked against `registry` when validated.

    Subclasses set `registry`. Errors are raised as custom pydantic errors that carry the
    nested problems, so configuration errors can name the full key (`…learner.params.C`).
    """

    model_config = ConfigDict(extra="forbid")
    registry: ClassVar[Registry]

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_component(self) -> ComponentRef:
        try:
            cls = self.registry.get(self.name)
        except UnknownNameError as err:
            raise PydanticCustomError("component_name", "{message}", {"message": str(err)}) from None
        params_model = getattr(cls, "Params", None)
        if params_model is not None:
            try:
                params_model.model_validate(self.params)
            except ValidationError as err:
                raise PydanticCustomError(
                    "component_params", "invalid parameters for {kind} {name}: {details}",
                    {"kind": self.registry.kind, "name": repr(self.name), "details": str(err),
                     "errors": err.errors(include_url=False), "schema": params_model}) from None
        return self

    def build(self) -> Any:
        """An instance of the named component with these parameters."""
        return self.registry.get(self.name)(**self.params)


EXTRACTORS: Registry[type] = Registry("extractor", package="features")


def build_extractor(name: str, params: dict[str, Any] | None = None) -> Any:
    """An extractor instance by registered name."""
    return EXTRACTORS.get(name)(**(params or {}))
