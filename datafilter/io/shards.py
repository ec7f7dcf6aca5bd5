"""Find the input shards and open them with clear errors."""

from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.parquet as pq

from datafilter.errors import InputError
from datafilter.io.atomic import TMP_MARK
from datafilter.io.jsonl import JsonlShard, is_jsonl
from datafilter.io.storage import AnyPath, ObjectPath, location


@dataclass(frozen=True)
class Shard:
    """One input shard (Parquet, or JSONL: see datafilter/io/jsonl.py): its path and its path
    relative to the input root."""

    rel: str
    path: Path | ObjectPath

    def with_suffix_rel(self, suffix: str = ".parquet") -> str:
        """The relative path with its extension replaced by ``suffix``."""
        return str(Path(self.rel).with_suffix(suffix))


GLOB_CHARS = "*?["


@dataclass(frozen=True)
class InputScan:
    """The shards of an input and the real folders they were found in: the input folder (or a
    glob's fixed leading folder) and every folder reached through a symbolic link."""

    shards: list[Shard]
    folders: list[AnyPath]


def discover_shards(input_path: str | Path | ObjectPath) -> list[Shard]:
    """Every ``*.parquet`` (and ``*.jsonl``, ``*.jsonl.gz``, ``*.jsonl.zst``) under
    ``input_path`` (a folder, one file, or a glob such as ``data/*.parquet``), sorted by
    relative path."""
    return scan_input(input_path).shards


def scan_input(input_path: str | Path | ObjectPath) -> InputScan:
    """The shards of ``input_path`` and the folders holding them (see :class:`InputScan`).

    Symbolic links to folders are followed; a link that leads back to a folder already on the
    way (a loop), or to a folder reached another way too (its shards would be read twice), and
    a link whose target does not exist are errors naming the link."""
    root = location(input_path)
    try:
        if not root.exists() and has_glob(input_path):
            found, folders, base = _expand_glob(root)
        elif root.is_file():
            return InputScan([Shard(rel=root.name, path=root)], [])
        elif not root.is_dir():
            raise InputError("input path does not exist", path=str(input_path))
        else:
            base = root
            found, folders = _walk(root)
    except OSError as exc:
        raise InputError(f"cannot list the input ({exc})", path=str(input_path)) from exc
    shards = sorted(
        (Shard(rel=p.relative_to(base).as_posix(), path=p) for p in found), key=lambda s: s.rel
    )
    if not shards:
        raise InputError(
            "no *.parquet or *.jsonl[.gz|.zst] files found under this folder", path=str(root)
        )
    for shard in shards:
        if any(c in shard.rel for c in "*?[{"):
            raise InputError(
                "file names with *, ?, [ or { are not supported (DuckDB reads them as patterns); "
                "rename the file",
                path=str(shard.path),
            )
    return InputScan(shards, folders)


def has_glob(value: str | Path | ObjectPath) -> bool:
    return any(c in str(value) for c in GLOB_CHARS)


def glob_base(root: AnyPath) -> AnyPath:
    """The leading folders of a glob pattern, before its first part with a wildcard."""
    parts = PurePosixPath(root.key).parts if isinstance(root, ObjectPath) else root.parts
    fixed = []
    for part in parts:
        if any(c in part for c in GLOB_CHARS):
            break
        fixed.append(part)
    if isinstance(root, ObjectPath):
        return ObjectPath(root.scheme, root.bucket, "/".join(fixed))
    return Path(*fixed)


def _expand_glob(pattern: AnyPath) -> tuple[list[AnyPath], list[AnyPath], AnyPath]:
    """Files matched by a glob (``**`` spans folders, locally) and the shards of matched
    folders; the real folders walked; the glob's fixed leading folder."""
    base = glob_base(pattern)
    if isinstance(pattern, ObjectPath):
        wanted = PurePosixPath(pattern.key).parts
        matches: list[AnyPath] = [
            p
            for p in base.rglob("*")
            if len(PurePosixPath(p.key).parts) == len(wanted)
            and all(map(fnmatch.fnmatchcase, PurePosixPath(p.key).parts, wanted))
        ]
        folders: list[AnyPath] = [base]
    else:
        matches = [Path(p) for p in sorted(glob.glob(str(pattern), recursive=True))]
        folders = [Path(os.path.realpath(base))]
    if not matches:
        raise InputError("no file matches this pattern", path=str(pattern))
    found: list[AnyPath] = []
    for match in matches:
        if _is_hidden(Path(match.relative_to(base).as_posix())):
            continue
        if isinstance(match, Path) and match.is_dir():
            files, walked = _walk(match)
            found += files
            folders += walked
        elif is_shard_name(match.name):
            found.append(match)
    return found, folders, base


def _walk(root: AnyPath) -> tuple[list[AnyPath], list[AnyPath]]:
    """Shards under a folder (following symbolic links to folders) and the real folders."""
    if isinstance(root, ObjectPath):
        files = [
            p
            for p in root.rglob("*")
            if is_shard_name(p.name) and not _is_hidden(Path(p.relative_to(root).as_posix()))
        ]
        return files, [root]
    files_found: list[AnyPath] = []
    folders: list[AnyPath] = []
    seen: dict[tuple[int, int], Path] = {}

    def visit(folder: Path, ancestors: frozenset[tuple[int, int]]) -> None:
        st = os.stat(folder)
        key = (st.st_dev, st.st_ino)
        if key in ancestors:
            raise InputError(
                f"symbolic link loop: it leads back to {os.path.realpath(folder)}, a folder "
                "it lies in; remove the link",
                path=str(folder),
            )
        if key in seen:
            raise InputError(
                f"reaches {os.path.realpath(folder)} again (also reached as {seen[key]}): its "
                "shards would be read twice; remove one of the links",
                path=str(folder),
            )
        seen[key] = folder
        folders.append(Path(os.path.realpath(folder)))
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if _is_hidden(Path(entry.name)):
                    continue
                path = folder / entry.name
                if entry.is_symlink() and not os.path.exists(path):
                    raise InputError(
                        f"broken symbolic link (its target {os.readlink(path)} does not exist); "
                        "remove it or restore its target",
                        path=str(path),
                    )
                if entry.is_dir():
                    visit(path, ancestors | {key})
                elif is_shard_name(entry.name) and entry.is_file():
                    files_found.append(path)

    visit(root, frozenset())
    return files_found, folders


def is_shard_name(name: str) -> bool:
    """Whether a file of this name is read as an input shard (Parquet or JSONL)."""
    return name.endswith(".parquet") or is_jsonl(name)


def open_shard(path: Path | ObjectPath) -> pq.ParquetFile | JsonlShard:
    """An input shard, Parquet or JSONL by its extension (see :func:`open_parquet`)."""
    return JsonlShard(path) if is_jsonl(path.name) else open_parquet(path)


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


def iter_batches(pf: pq.ParquetFile, columns: list[str] | None, batch_rows: int, path: AnyPath):
    """Record batches of a Parquet file; a read error is an InputError naming the file."""
    try:
        yield from pf.iter_batches(batch_size=batch_rows, columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"corrupt or truncated Parquet data ({exc})", path=str(path)) from exc


def read_ahead(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The batches, each next one read in a background thread while this one is used
    (Parquet reads release the GIL)."""
    end = object()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as pool:
        pending = pool.submit(next, batches, end)
        while (batch := pending.result()) is not end:
            pending = pool.submit(next, batches, end)
            yield batch


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
