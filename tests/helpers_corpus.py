"""Helpers for tests that build small input folders and drive the CLI in a subprocess."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from datafilter.demo_corpus import DemoCorpus
from datafilter.runtime import RuntimeOptions

# In-process execution without Ray: fast and deterministic, for most tests.
LOCAL = RuntimeOptions(executor="local")
PLAN_KEYS = ("selector", "options", "scorer_id", "group_by")


def quiet(_message: str) -> None:
    pass


class _Lines(logging.Handler):
    def __init__(self, lines: list[str], callback: Callable[[str], None] | None):
        super().__init__(logging.DEBUG)
        self.lines, self.callback = lines, callback

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.lines.append(message)
        if self.callback is not None:
            self.callback(message)


@contextmanager
def log_lines(callback: Callable[[str], None] | None = None) -> Iterator[list[str]]:
    """The lines datafilter logs inside the block (info and up); ``callback`` sees each as it is
    logged (an exception it raises stops the stage there)."""
    lines: list[str] = []
    logger = logging.getLogger("datafilter")
    handler = _Lines(lines, callback)
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def plan_and_select(run: Path, out: Path, *, runtime: Any = LOCAL, **options: Any) -> dict:
    """The selection's plan (``thresholds --selector --no-table``), then the selection: what
    ``select`` did alone before the plan was the thresholds stage's file."""
    from datafilter import api

    plan = {k: options[k] for k in PLAN_KEYS if k in options}
    plan.setdefault("selector", "perplexity_band")
    api.thresholds(run, table=False, **plan)
    return api.select(run, out, runtime=runtime, **options)


def select_args(*args: str | os.PathLike) -> list[str]:
    """The ``thresholds`` arguments that make the plan of a ``select`` command line."""
    args = [str(a) for a in args]
    keep = {"--run", "--selector", "--set", "--group-by", "--scorer-id", "--storage-option"}
    plan = []
    for i, arg in enumerate(args):
        name = arg.split("=", 1)[0]
        if name in keep and "=" in arg:
            plan.append(arg)
        elif name in keep and i + 1 < len(args):
            plan += [arg, args[i + 1]]
    if "--selector" not in [a.split("=", 1)[0] for a in plan]:
        plan += ["--selector", "perplexity_band"]
    return ["thresholds", "--no-table", *plan]


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


def run_cli_select(*args: str | os.PathLike, timeout: float = 120) -> subprocess.CompletedProcess:
    """``datafilter select ARGS`` after the ``thresholds`` command that makes its plan (the
    thresholds command's process is returned when it fails)."""
    proc = run_cli(*select_args(*args), timeout=timeout)
    return proc if proc.returncode else run_cli("select", *args, timeout=timeout)


def wait_until(condition: Callable[[], bool], timeout: float = 60, poll: float = 0.002) -> None:
    """Poll ``condition`` until it holds; an AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(poll)
