"""Completion records: one small JSON file per finished shard and stage.

A record names what the shard was made from and with which settings, and its output's size,
signature and sha256 (:mod:`datafilter.io.content`): a shard counts as finished only while its
output still holds those bytes, so a truncated or damaged output is made again."""

from __future__ import annotations

import json
from typing import Any

from datafilter.io.atomic import write_json
from datafilter.io.content import current_record
from datafilter.io.storage import AnyPath


def file_fingerprint(path: AnyPath) -> dict[str, int]:
    """Size and modification time: enough to notice that an input shard was replaced."""
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def read_marker(path: AnyPath) -> dict[str, Any] | None:
    """The completion record at ``path``, or None when the shard is unfinished."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError:
        return None  # a torn record counts as unfinished work


def is_complete(marker: AnyPath, output: AnyPath, expected: dict[str, Any]) -> bool:
    """Finished when the record exists, its key fields match ``expected`` and its output still
    holds the bytes the record describes."""
    record = read_marker(marker)
    if record is None or any(record.get(k) != v for k, v in expected.items()):
        return False
    return current_record(output, record.get("output")) is not None


def write_marker(path: AnyPath, record: dict[str, Any]) -> None:
    write_json(path, record)
