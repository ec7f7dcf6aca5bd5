"""Name → class registries for scorers and selectors, with entry-point plugins."""

from __future__ import annotations

import importlib
import json
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from datafilter.errors import ConfigError

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class Registry(Generic[T]):
    """Built-ins given as ``"module:Class"`` strings (imported on use) plus entry points."""

    def __init__(self, kind: str, group: str, builtins: dict[str, str]):
        self.kind = kind
        self.group = group
        self._targets = dict(builtins)
        self._plugins_loaded = False

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        for ep in entry_points(group=self.group):
            self._targets.setdefault(ep.name, ep.value)
        self._plugins_loaded = True

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._targets)

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``; a ConfigError listing the known names otherwise."""
        self._load_plugins()
        if name not in self._targets:
            known = ", ".join(self.names()) or "none"
            raise ConfigError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}")
        module_name, _, attr = self._targets[name].partition(":")
        return getattr(importlib.import_module(module_name), attr)


def as_list(value: Any) -> Any:
    """A before-validator: one path (or string) given where a list is expected becomes a list
    of one."""
    from pathlib import PurePath

    return [value] if isinstance(value, str | PurePath) else value


def strict_validate(model: type[M], values: Any) -> M:
    """Validate as JSON values are validated in pydantic's strict mode: no ``true`` for a
    number, no ``"0.5"`` for a float (a string stays a string), but a string for a path or an
    enum, and an integer for a float."""
    try:
        text = json.dumps(to_jsonable_python(values))
    except (PydanticSerializationError, TypeError, ValueError):
        return model.model_validate(values, strict=True)
    return model.model_validate_json(text, strict=True)


def parse_options(model: type[BaseModel], values: dict, what: str) -> BaseModel:
    """Validate ``values`` strictly against ``model``; unknown keys and values of the wrong
    type become a ConfigError."""
    try:
        return strict_validate(model, values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(options)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid options for {what}: {problems}") from None
