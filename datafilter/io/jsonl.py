"""JSONL shards (``.jsonl``, ``.jsonl.gz``, ``.jsonl.zst``): read as Arrow, written back as JSONL.

One JSON object per line; blank lines are not rows. A shard is read whole (decompressed) into
memory, so its rows are numbered exactly as the lines that hold them, in both the score and the
select stage. A line that is not a JSON object is one error naming the file and the line.
Values are read by pyarrow's JSON reader, except that strings stay strings (the reader would
turn ISO-8601 strings into timestamps); the select stage writes each kept row back as one JSON
object of its parsed values (a key missing from a line comes back as ``null``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.json as pajson

from datafilter.errors import InputError
from datafilter.io.atomic import atomic_path
from datafilter.io.storage import AnyPath, ObjectPath

# Extension -> Arrow's codec name (None: not compressed).
JSONL_SUFFIXES: dict[str, str | None] = {".jsonl": None, ".jsonl.gz": "gzip", ".jsonl.zst": "zstd"}


def jsonl_suffix(name: str) -> str | None:
    """The JSONL extension ``name`` ends with, or None."""
    return next((s for s in JSONL_SUFFIXES if name.endswith(s)), None)


def is_jsonl(name: str) -> bool:
    return jsonl_suffix(name) is not None


def _codec(path: AnyPath) -> str | None:
    suffix = jsonl_suffix(path.name)
    if suffix is None:
        raise InputError("not a JSONL file (.jsonl, .jsonl.gz, .jsonl.zst)", path=str(path))
    return JSONL_SUFFIXES[suffix]


def _read_bytes(path: AnyPath) -> bytes:
    codec = _codec(path)
    try:
        if isinstance(path, ObjectPath):
            with path.open_input_file() as raw:
                stream = pa.CompressedInputStream(raw, codec) if codec else raw
                return stream.read()
        with pa.input_stream(str(path), compression=codec) as stream:
            return stream.read()
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"cannot read this JSONL file ({exc})", path=str(path)) from exc


@dataclass(frozen=True)
class _Metadata:
    num_rows: int


class JsonlShard:
    """A JSONL shard read whole, with the ``pyarrow.parquet.ParquetFile`` calls the stages use:
    ``metadata.num_rows``, ``schema_arrow``, ``iter_batches``, ``read``."""

    def __init__(self, path: AnyPath):
        self.path = path
        data = _read_bytes(path)
        numbered = [
            (n, line) for n, line in enumerate(data.split(b"\n"), start=1) if line.strip()
        ]
        self.table = _parse(path, numbered)
        self.metadata = _Metadata(self.table.num_rows)

    @property
    def schema_arrow(self) -> pa.Schema:
        return self.table.schema

    def read(self, columns: list[str] | None = None) -> pa.Table:
        return self.table if columns is None else self.table.select(columns)

    def iter_batches(
        self, batch_size: int, columns: list[str] | None = None
    ) -> Iterator[pa.RecordBatch]:
        yield from self.read(columns).to_batches(max_chunksize=batch_size)


def _parse(path: AnyPath, numbered: list[tuple[int, bytes]]) -> pa.Table:
    if not numbered:
        return pa.table({})
    body = b"\n".join(line for _, line in numbered)
    try:
        table = pajson.read_json(pa.BufferReader(body))
        strings = pa.schema(
            [f.with_type(pa.string()) if pa.types.is_timestamp(f.type) else f for f in table.schema]
        )
        if strings != table.schema:  # ISO-8601 strings were read as timestamps: keep them text
            options = pajson.ParseOptions(explicit_schema=strings)
            table = pajson.read_json(pa.BufferReader(body), parse_options=options)
    except pa.ArrowInvalid as exc:
        raise _bad_line(path, numbered, exc) from None
    if table.num_rows != len(numbered):
        raise InputError(
            f"read {table.num_rows} rows from {len(numbered)} lines; one JSON object per line",
            path=str(path),
        )
    return table


def _bad_line(path: AnyPath, numbered: list[tuple[int, bytes]], exc: Exception) -> InputError:
    """The first line that is not a JSON object, as an error naming the file and line."""
    for n, line in numbered:
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            return InputError(
                f"line {n}: not valid JSON: {err.msg} (column {err.colno})", path=str(path)
            )
        except ValueError as err:  # not UTF-8
            return InputError(f"line {n}: not valid JSON ({err})", path=str(path))
        if not isinstance(value, dict):
            return InputError(
                f"line {n}: a JSON {type(value).__name__}, expected an object", path=str(path)
            )
    return InputError(f"cannot read as JSONL ({exc})", path=str(path))


def _plain(value: Any) -> Any:
    """JSON for values Arrow gives that json cannot write (bytes, dates, decimals)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class JsonlWriter:
    """Writes tables as JSON lines to an open (possibly compressing) stream."""

    def __init__(self, stream: Any):
        self._stream = stream

    def write_table(self, table: pa.Table) -> None:
        lines = [
            json.dumps(row, ensure_ascii=False, default=_plain) + "\n" for row in table.to_pylist()
        ]
        self._stream.write("".join(lines).encode())


@contextmanager
def jsonl_writer(path: AnyPath, content: dict[str, Any] | None = None) -> Iterator[JsonlWriter]:
    """A JSONL writer compressing as ``path``'s extension says; the file appears at ``path``
    only when complete (its sha256 stored in ``content`` when given)."""
    codec = _codec(path)
    with atomic_path(path, content) as tmp, pa.output_stream(
        str(Path(tmp)), compression=codec
    ) as stream:
        yield JsonlWriter(stream)
