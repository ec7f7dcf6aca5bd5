"""What each scorer and selector does, and its options (type, default, meaning) read from its
options model: ``datafilter list`` and ``datafilter describe NAME`` (``datafilter.describe``)."""

from __future__ import annotations

import inspect
import sys
import types
import typing
from typing import Any

from pydantic import BaseModel

from datafilter.errors import ConfigError


def _registries() -> dict[str, Any]:
    from datafilter.scorers import SCORERS
    from datafilter.selectors import SELECTORS

    return {"scorer": SCORERS, "selector": SELECTORS}


def summary(cls: type) -> str:
    """The first paragraph of the plugin's module docstring (one plugin per module), else of
    its class docstring, on one line."""
    doc = getattr(sys.modules.get(cls.__module__), "__doc__", "") or cls.__dict__.get("__doc__")
    return " ".join(inspect.cleandoc(doc or "").split("\n\n")[0].split())


def plugin_summaries() -> dict[str, dict[str, str]]:
    """Every registered scorer and selector with its one-line summary."""
    return {
        f"{kind}s": {name: summary(registry.get(name)) for name in registry.names()}
        for kind, registry in _registries().items()
    }


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def option_rows(model: type[BaseModel], prefix: str = "") -> list[dict[str, str]]:
    """One row per option (nested models flattened as ``parent.child``): name, type, default
    and meaning."""
    rows = []
    for name, field in model.model_fields.items():
        nested = next(
            (
                a
                for a in (field.annotation, *typing.get_args(field.annotation))
                if isinstance(a, type) and issubclass(a, BaseModel)
            ),
            None,
        )
        if nested is not None:
            rows += option_rows(nested, f"{prefix}{name}.")
            continue
        default = "(required)" if field.is_required() else repr(field.get_default())
        rows.append(
            {
                "name": prefix + name,
                "type": _type_name(field.annotation),
                "default": default,
                "meaning": field.description or "",
            }
        )
    return rows


def describe(name: str) -> list[dict[str, Any]]:
    """The scorer and/or selector registered as ``name``: kind, name, summary and option rows
    (:func:`option_rows`); a ConfigError with the likely intended name otherwise."""
    found = [(kind, reg) for kind, reg in _registries().items() if name in reg.names()]
    if not found:
        from datafilter.validation import unknown_choice

        names = sorted({n for reg in _registries().values() for n in reg.names()})
        raise ConfigError(unknown_choice("plugin", name, names))
    out = []
    for kind, registry in found:
        cls = registry.get(name)
        rows = option_rows(cls.Options)
        out.append({"kind": kind, "name": name, "summary": summary(cls), "options": rows})
    return out


def as_text(described: list[dict[str, Any]]) -> str:
    """:func:`describe`'s result as the aligned text ``datafilter describe`` prints."""
    out = []
    for plugin in described:
        out.append(f"{plugin['kind']} {plugin['name']}: {plugin['summary']}")
        out.append("options (--set KEY=VALUE, or options: in a config):")
        rows = plugin["options"]
        width = {k: max([len(k), *(len(r[k]) for r in rows)]) for k in ("name", "type", "default")}
        for row in rows:
            out.append(
                f"  {row['name']:<{width['name']}}  {row['type']:<{width['type']}}  "
                f"{row['default']:<{width['default']}}  {row['meaning']}".rstrip()
            )
    return "\n".join(out)
