"""Stream documents out of Parquet shards (one or more text columns) or plain text files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from datafilter.errors import InputError
from datafilter.io.shards import discover_shards, open_parquet, require_column

TEXT_SUFFIXES = {".txt", ".text"}


def iter_texts(
    inputs: list[str | Path], text_columns: list[str], batch_rows: int = 4096
) -> Iterator[str]:
    """Every non-empty text: Parquet column values, or each line of a text file."""
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_file() and path.suffix in TEXT_SUFFIXES:
            yield from _iter_text_file(path)
        elif path.is_dir() and not any(path.rglob("*.parquet")):
            for file in sorted(p for p in path.rglob("*") if p.suffix in TEXT_SUFFIXES):
                yield from _iter_text_file(file)
        else:
            for shard in discover_shards(path):
                yield from _iter_parquet(shard.path, text_columns, batch_rows)


def _iter_text_file(path: Path) -> Iterator[str]:
    try:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield line.rstrip("\n")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"not valid UTF-8 ({exc.reason} at byte {exc.start})", path=str(path)
        ) from None


def _iter_parquet(path: Path, columns: list[str], batch_rows: int) -> Iterator[str]:
    pf = open_parquet(path)
    for column in columns:
        kind = require_column(pf, column, path)
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise InputError(
                f"column {column!r} has type {kind}, expected string", path=str(path)
            ) from None
    for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
        for column in columns:
            for value in batch.column(column).to_pylist():
                if value and value.strip():
                    yield value
