"""Completion records: one small JSON file per finished shard and stage."""

from __future__ import annotations

import json
from typing import Any

from datafilter.io.atomic import write_json
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
    """Finished when the record exists, its output exists and its key fields match ``expected``."""
    record = read_marker(marker)
    if record is None or not output.exists():
        return False
    return all(record.get(k) == v for k, v in expected.items())


def write_marker(path: AnyPath, record: dict[str, Any]) -> None:
    write_json(path, record)
