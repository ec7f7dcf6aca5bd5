"""Find the input shards and open them with clear errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from datafilter.errors import InputError
from datafilter.io.atomic import TMP_MARK
from datafilter.io.storage import AnyPath, ObjectPath, location


@dataclass(frozen=True)
class Shard:
    """One input Parquet file: its path and its path relative to the input root."""

    rel: str
    path: Path | ObjectPath

    def with_suffix_rel(self, suffix: str = ".parquet") -> str:
        """The relative path with its extension replaced by ``suffix``."""
        return str(Path(self.rel).with_suffix(suffix))


def discover_shards(input_path: str | Path | ObjectPath) -> list[Shard]:
    """Every ``*.parquet`` under ``input_path`` (or the file itself), sorted by relative path."""
    root = location(input_path)
    try:
        if root.is_file():
            return [Shard(rel=root.name, path=root)]
        found = sorted(root.rglob("*.parquet"), key=str)
    except OSError as exc:
        raise InputError(f"cannot list the input ({exc})", path=str(input_path)) from exc
    if not found and not root.is_dir():
        raise InputError("input path does not exist", path=str(input_path))
    shards = [
        Shard(rel=p.relative_to(root).as_posix(), path=p)
        for p in found
        if (isinstance(p, ObjectPath) or p.is_file())
        and not _is_hidden(Path(p.relative_to(root).as_posix()))
    ]
    if not shards:
        raise InputError("no *.parquet files found under this folder", path=str(root))
    for shard in shards:
        if any(c in shard.rel for c in "*?[{"):
            raise InputError(
                "file names with *, ?, [ or { are not supported (DuckDB reads them as patterns); "
                "rename the file",
                path=str(shard.path),
            )
    return shards


def _is_hidden(rel: Path) -> bool:
    return any(part.startswith((".", "_")) or TMP_MARK in part for part in rel.parts)


def open_parquet(path: Path | ObjectPath) -> pq.ParquetFile:
    """Open a Parquet file, turning a corrupt or truncated file into an InputError."""
    source = path
    if isinstance(path, ObjectPath):
        try:
            source = path.open_input_file()
        except OSError as exc:
            raise InputError(f"cannot open on object storage ({exc})", path=str(path)) from exc
    try:
        return pq.ParquetFile(source)
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
        raise InputError(f"not a readable Parquet file ({exc})", path=str(path)) from exc


def require_column(pf: pq.ParquetFile, column: str, path: Path | ObjectPath) -> pa.DataType:
    """The Arrow type of ``column``; an InputError listing the columns if it is missing."""
    schema = pf.schema_arrow
    if column not in schema.names:
        raise InputError(
            f"column {column!r} not found; columns are {', '.join(schema.names)}", path=str(path)
        )
    return schema.field(column).type


def read_parquet_table(path: AnyPath, columns: list[str] | None = None) -> pa.Table:
    """A whole Parquet file (or some of its columns), local or on object storage."""
    if isinstance(path, ObjectPath):
        with path.open_input_file() as source:
            return pq.read_table(source, columns=columns)
    return pq.read_table(path, columns=columns)
