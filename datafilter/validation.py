"""Checks made before any work starts, and the sentences every mistake is told in.

One place turns a mistake into one line that names the key (or flag), the bad value, the valid
choices and, where one is close, the likely intended one: :func:`explain` for pydantic's
``ValidationError`` (used by the CLI, the run config and the Python API alike),
:func:`unknown_choice` for a name that is not among the known ones, and :func:`check_columns`
for input columns, checked against the first shard's schema before any executor starts (a
10,000-shard corpus with a wrong column gives one line, not one per shard).
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from datafilter.errors import InputError


def did_you_mean(value: Any, choices: Iterable[Any]) -> str:
    """``"; did you mean 'keep'?"`` when a choice is close to ``value``, else ``""``."""
    names = [str(c) for c in choices]
    text = str(value)
    close = difflib.get_close_matches(text, names, n=1, cutoff=0.6)
    if not close:  # a different case, or the start of one name only ("mid" for "medium")
        close = [n for n in names if n.lower() == text.lower()]
        starts = [n for n in names if text and n.lower().startswith(text.lower())]
        close = close or (starts if len(starts) == 1 else [])
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_choice(kind: str, value: Any, choices: Sequence[Any]) -> str:
    """``unknown selector 'band'; known selectors: a, b; did you mean 'perplexity_band'?``."""
    valid = ", ".join(str(c) for c in choices) or "none"
    return f"unknown {kind} {value!r}; known {kind}s: {valid}{did_you_mean(value, choices)}"


# --------------------------------------------------------------------------- pydantic errors


def _model_at(model: type[BaseModel] | None, loc: Sequence[Any]) -> type[BaseModel] | None:
    """The nested model that ``loc`` (a path of field names) leads to, if any."""
    for part in loc:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return None
        model = _as_model(model.model_fields[part].annotation)
    return model


def _as_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _as_model(arg)
        if found is not None:
            return found
    return None


def _dotted(loc: Sequence[Any]) -> str:
    return ".".join(str(p) for p in loc if not isinstance(p, str) or not p.startswith("function"))


def _sentence(err: dict[str, Any], model: type[BaseModel] | None) -> str:
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    key = _dotted(loc) or "(options)"
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        valid = sorted(parent.model_fields) if parent else []
        known = f"; valid options: {', '.join(valid)}" if valid else ""
        return f"unknown option {key!r}{known}{did_you_mean(loc[-1], valid)}"
    if kind == "missing":
        return f"option {key!r} is required"
    message = err["msg"].removeprefix("Value error, ")
    if not loc:  # the model's own check of several values
        return message
    value = err.get("input")
    shown = repr(value) if not isinstance(value, dict | list) or len(repr(value)) < 60 else "..."
    message = message[0].lower() + message[1:]
    if kind in ("literal_error", "enum"):
        expected = str((err.get("ctx") or {}).get("expected", ""))
        options = [o.strip().strip("'\"") for o in expected.replace(" or ", ", ").split(",")]
        return f"{key}={shown}: {message}{did_you_mean(value, [o for o in options if o])}"
    if kind in ("float_type", "int_type") and isinstance(value, str) and _is_number(value):
        message += " (a number, not text: leave out the quotes)"
    return f"{key}={shown}: {message}"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def explain(exc: ValidationError, model: type[BaseModel] | None = None, what: str = "") -> str:
    """Pydantic's errors as sentences on one line: each names the key, the bad value, the
    valid options, and the likely intended one."""
    sentences = [_sentence(err, model) for err in exc.errors()]
    return (f"{what}: " if what else "") + "; ".join(sentences)


# --------------------------------------------------------------------------- input columns


def first_shard(input: Any) -> Any:
    """The first input shard (in path order), or None when the input has none."""
    from datafilter.io.shards import scan_input

    shards = scan_input(input).shards
    return shards[0].path if shards else None


def check_columns(input: Any, columns: dict[str, str | None], shard: Any = None) -> None:
    """Every named column is in the first input shard's schema: else one InputError naming the
    option, the column, the shard, the columns it has and the likely intended one. ``columns``
    maps an option's name (``"--text-column"``) to the column it names (None: not used)."""
    from datafilter.io.shards import open_shard

    wanted = {flag: col for flag, col in columns.items() if col is not None}
    if not wanted:
        return
    path = shard if shard is not None else first_shard(input)
    if path is None:
        return  # no shards: the stage says so itself
    names = open_shard(path).schema_arrow.names  # Parquet or JSONL
    for flag, column in wanted.items():
        if column not in names:
            raise InputError(
                f"{flag} {column!r}: no such column in the first input shard; its columns are "
                f"{', '.join(names)}{did_you_mean(column, names)}",
                path=str(path),
            )


def check_path_exists(path: str | Path, what: str) -> None:
    """A local path that must exist before the stage starts (object-storage URIs pass)."""
    from datafilter.errors import ConfigError
    from datafilter.io.storage import is_remote

    if is_remote(str(path)):
        return
    if not Path(path).exists():
        raise ConfigError(f"{what} {str(path)!r} does not exist")
