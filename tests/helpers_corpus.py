"""Helpers for tests that build small input folders and drive the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from datafilter.demo_corpus import DemoCorpus
from datafilter.runtime import RuntimeOptions

# In-process execution without Ray: fast and deterministic, for most tests.
LOCAL = RuntimeOptions(executor="local", progress=False)


def quiet(_message: str) -> None:
    pass


def real_texts(corpus: DemoCorpus, n: int | None = None) -> list[str]:
    """Texts of the demo pool (real news, subtitles, ...), in a fixed order."""
    texts = pq.read_table(corpus.pool_dir, columns=["text"])["text"].to_pylist()
    return texts if n is None else texts[:n]


def write_shard(path: Path, data: pa.Table | dict[str, Any]) -> Path:
    """Write one Parquet shard (creating its folder); ``data`` is a table or column mapping."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = data if isinstance(data, pa.Table) else pa.table(data)
    pq.write_table(table, path)
    return path


def text_shard(path: Path, texts: Sequence[str | None], prefix: str | None = None) -> Path:
    """A shard with an ``id`` column (``prefix-row``) and a ``text`` column."""
    prefix = prefix or path.stem
    ids = [f"{prefix}-{i}" for i in range(len(texts))]
    return write_shard(path, {"id": ids, "text": pa.array(list(texts), pa.string())})


def split_pool(corpus: DemoCorpus, folder: Path, n_shards: int, copies: int = 1) -> list[Path]:
    """The demo pool (id, text, source, domain, quality), repeated ``copies`` times (ids made
    unique: ``<id>~r<copy>``), re-cut into ``n_shards`` shards."""
    table = pq.read_table(corpus.pool_dir)
    if copies > 1:
        ids = table.column("id").to_pylist()
        table = pa.concat_tables(
            table.set_column(
                table.schema.get_field_index("id"), "id", pa.array([f"{i}~r{k}" for i in ids])
            )
            for k in range(copies)
        )
    size = -(-table.num_rows // n_shards)
    return [
        write_shard(folder / f"part-{i:05d}.parquet", table.slice(i * size, size))
        for i in range(n_shards)
    ]


def files_under(root: Path, *, skip: Callable[[Path], bool] = lambda _p: False) -> dict[str, bytes]:
    """Every file under ``root`` (relative posix path -> bytes), minus those ``skip`` names."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not skip(p.relative_to(root))
    }


def temp_files(root: Path) -> list[Path]:
    """Leftover temporary files (``.<name>.tmp-<pid>-<hex>``) anywhere under ``root``."""
    return sorted(p for p in root.rglob(".*") if ".tmp-" in p.name)


def mtimes(root: Path, pattern: str = "*") -> dict[str, int]:
    """Modification times (ns) of the files under ``root``, by relative posix path."""
    return {
        p.relative_to(root).as_posix(): p.stat().st_mtime_ns
        for p in root.rglob(pattern)
        if p.is_file()
    }


def cli_command(*args: str | os.PathLike) -> list[str]:
    return [sys.executable, "-m", "datafilter.cli", *(str(a) for a in args)]


def run_cli(*args: str | os.PathLike, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``datafilter ARGS`` in a subprocess; returns the completed process (text output)."""
    return subprocess.run(
        cli_command(*args), capture_output=True, text=True, timeout=timeout, check=False
    )


def wait_until(condition: Callable[[], bool], timeout: float = 60, poll: float = 0.002) -> None:
    """Poll ``condition`` until it holds; an AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(poll)
