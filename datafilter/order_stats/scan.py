"""Streaming reads of score shards (and the group column of their row-aligned input shards).

One pass reads every score shard once, a few columns at a time, in batches of ``batch_rows``
rows; each shard (and its input shard) is opened, read and closed by one worker, so at most
``workers`` pairs of files are open at once, whatever the number of shards. Paths may be local
or on object storage (``s3://`` ...: :mod:`datafilter.io.storage`).

A row is valid where ``reject_reason`` is null. Batches hold every row (no copies to drop the
rejected ones): each row's group as an integer code, ``REJECTED`` (0) for a rejected row, group
names as DuckDB's ``CAST(x AS VARCHAR)`` prints them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datafilter.errors import InputError
from datafilter.io.shards import open_parquet
from datafilter.io.storage import ObjectPath, location

_GROUPABLE = (
    pa.types.is_string,
    pa.types.is_large_string,
    pa.types.is_integer,
    pa.types.is_boolean,
    pa.types.is_null,
)


@dataclass(frozen=True)
class ScoreShards:
    """Score shards and, row-aligned with each (row k of one is row k of the other), the input
    shard holding the group column; ``input_files`` may be left out when ``group_by`` is None."""

    score_files: Sequence[str]
    input_files: Sequence[str] | None = None
    group_by: str | None = None
    all_label: str = "__all__"  # the one group when there is no group column
    null_label: str = "__null__"  # the group of rows whose group value is null

    def __post_init__(self) -> None:
        if self.group_by is not None and (
            self.input_files is None or len(self.input_files) != len(self.score_files)
        ):
            raise ValueError("grouping needs one input shard per score shard")


REJECTED = 0  # the group code of a rejected row (``reject_reason`` not null)


def file_ranks(score_files: Sequence[str]) -> np.ndarray:
    """Each score shard's rank by its path as text: the ``score_file`` word of the sort keys
    (DuckDB orders the file names so)."""
    order = sorted(range(len(score_files)), key=lambda i: str(score_files[i]))
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order))
    return ranks


@dataclass
class Batch:
    """One batch of rows of one shard: group codes and the requested columns."""

    shard: int
    codes: np.ndarray  # int32 group code per row; REJECTED for rejected rows
    columns: dict[str, np.ndarray]  # float64 metrics (NaN where null), uint64 id_hash, int64 row
    nulls: dict[str, np.ndarray | None]  # per column: True where null (None: no nulls)
    all_valid: bool  # no row of the batch is rejected

    def __len__(self) -> int:
        return len(self.codes)


class GroupCodes:
    """Group names seen so far and their codes (1, 2, ...; 0 is REJECTED), shared by the
    readers of one scan. ``names_of`` names the distinct values of a group column (default:
    the value as text; None for the null group)."""

    def __init__(
        self,
        all_label: str,
        null_label: str,
        names_of: Callable[[pa.Array], list[str | None]] | None = None,
    ):
        self.all_label, self.null_label = all_label, null_label
        self._names_of = names_of or (lambda values: values.cast(pa.string()).to_pylist())
        self.names: list[str] = ["<rejected>"]  # index = code
        self._code_of: dict[str, int] = {}
        self._lock = threading.Lock()
        self._local = threading.local()  # each reader thread's last dictionary and its codes

    def code(self, name: str) -> int:
        with self._lock:
            return self._code(name)

    def _code(self, name: str) -> int:
        found = self._code_of.get(name)
        if found is None:
            found = self._code_of[name] = len(self.names)
            self.names.append(name)
        return found

    def of(self, column: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """The code of each value of a group column."""
        chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        parts = [self._of_chunk(chunk) for chunk in chunks]
        if not parts:
            return np.zeros(0, dtype=np.int32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _of_chunk(self, chunk: pa.Array) -> np.ndarray:
        if pa.types.is_null(chunk.type):
            return np.full(len(chunk), self.code(self.null_label), dtype=np.int32)
        if not pa.types.is_dictionary(chunk.type):
            chunk = pc.dictionary_encode(chunk)
        lut = self._lut(chunk.dictionary)
        indices = chunk.indices
        if indices.null_count:
            indices = pc.fill_null(indices, len(lut) - 1)  # the last entry: a null row
        return lut[indices.to_numpy(zero_copy_only=False)]

    def _lut(self, dictionary: pa.Array) -> np.ndarray:
        """Codes of a dictionary's entries, then the null group's (cached: the row groups of
        a shard, and often of all shards, share one dictionary)."""
        cached = getattr(self._local, "last", None)
        if cached is not None and cached[0].equals(dictionary):
            return cached[1]
        names = self._names_of(dictionary)
        with self._lock:
            table = [self._code(self.null_label if v is None else v) for v in names]
            table.append(self._code(self.null_label))
        lut = np.asarray(table, dtype=np.int32)
        self._local.last = (dictionary, lut)
        return lut


def check_group_column(schema: pa.Schema, column: str, path: str) -> None:
    """An error if the group column is missing or of a type DuckDB and Arrow print
    differently."""
    if column not in schema.names:
        raise InputError(f"group column {column!r} not found", path=path)
    kind = schema.field(column).type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if not any(check(kind) for check in _GROUPABLE):
        raise InputError(
            f"group column {column!r} has type {kind}; group by a string, integer or boolean "
            "column (other types print differently in DuckDB and Arrow)",
            path=path,
        )


def read_shard(
    shards: ScoreShards,
    index: int,
    columns: Sequence[str],
    groups: GroupCodes,
    batch_rows: int,
    row_groups: Sequence[int] | None = None,
) -> Iterator[Batch]:
    """The rows of one score shard, batch by batch; its files are closed at the end.

    ``columns``: score columns wanted besides ``reject_reason`` (metrics, ``id_hash``, ``row``).
    ``row_groups``: only these row groups of the score shard (the pilot sample)."""
    score_path = shards.score_files[index]
    score = open_parquet(location(score_path))
    group_file = None
    try:
        schema = score.schema_arrow
        for name in ["reject_reason", *columns]:
            if name not in schema.names:
                raise InputError(
                    f"column {name!r} not found; columns are {', '.join(schema.names)}",
                    path=score_path,
                )
        wanted = ["reject_reason", *columns]
        group_batches = None
        if shards.group_by is not None:
            assert shards.input_files is not None
            input_path = shards.input_files[index]
            group_file = open_parquet_dictionary(input_path, shards.group_by)
            check_group_column(group_file.schema_arrow, shards.group_by, input_path)
            n_input, n_score = group_file.metadata.num_rows, score.metadata.num_rows
            if n_input != n_score:
                raise InputError(
                    f"has {n_input} rows but its score shard {score_path} has {n_score}: the "
                    "score shard is not row-aligned with it; score it again",
                    path=input_path,
                )
            group_batches = _Rows(
                _batches(group_file, [shards.group_by], batch_rows, input_path, row_groups, score)
            )
        for batch in _batches(score, wanted, batch_rows, score_path, row_groups, score):
            group_column = None
            if group_batches is not None:
                group_column = _take_rows(group_batches, batch.num_rows)
                if len(group_column) != batch.num_rows:
                    raise InputError(
                        "is not row-aligned with its score shard (it ends early)",
                        path=str(shards.input_files[index]),  # type: ignore[index]
                    )
            yield _batch(index, batch, columns, group_column, groups)
    finally:
        score.close(force=True)
        if group_file is not None:
            group_file.close(force=True)


class _Rows:
    """The first column of a stream of record batches, handed out by row counts (a
    dictionary-encoded column comes in batches cut at its own row groups)."""

    def __init__(self, batches: Iterator[pa.RecordBatch]):
        self._batches = batches
        self._rest: list[pa.Array] = []

    def take(self, n: int) -> pa.ChunkedArray:
        out: list[pa.Array] = []
        while n > 0:
            if not self._rest:
                batch = next(self._batches, None)
                if batch is None:
                    break
                self._rest = [batch.column(0)]
            head = self._rest.pop(0)
            if len(head) > n:
                self._rest.insert(0, head.slice(n))
                head = head.slice(0, n)
            out.append(head)
            n -= len(head)
        return pa.chunked_array(out) if out else pa.chunked_array([], pa.null())


def _take_rows(rows: _Rows, n: int) -> pa.ChunkedArray:
    return rows.take(n)


def open_parquet_dictionary(path: str, column: str):
    """A Parquet file whose ``column``, if textual, is read as a dictionary (codes, not
    strings)."""
    import pyarrow.parquet as pq

    source = location(path)
    try:
        opened = source.open_input_file() if isinstance(source, ObjectPath) else str(source)
    except OSError as exc:
        raise InputError(f"cannot open on object storage ({exc})", path=path) from exc
    try:
        return pq.ParquetFile(opened, read_dictionary=[column])
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"not a readable Parquet file ({exc})", path=path) from exc


def _batches(pf, columns, batch_rows, path, row_groups, score) -> Iterator[pa.RecordBatch]:
    """Record batches of ``batch_rows`` rows (the last one shorter); with ``row_groups`` (row
    groups of the score shard ``score``), only the rows those row groups hold."""
    try:
        if row_groups is None:
            yield from pf.iter_batches(batch_size=batch_rows, columns=columns, use_threads=False)
            return
        starts = np.cumsum([0] + [score.metadata.row_group(i).num_rows for i in range(
            score.metadata.num_row_groups)])
        for rg in row_groups:
            lo, hi = int(starts[rg]), int(starts[rg + 1])
            yield _read_rows(pf, columns, lo, hi)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"corrupt or truncated Parquet data ({exc})", path=str(path)) from exc


def _read_rows(pf, columns, lo: int, hi: int) -> pa.RecordBatch:
    """Rows [lo, hi) of a Parquet file, reading only the row groups they lie in."""
    meta = pf.metadata
    start, picked, first = 0, [], None
    for i in range(meta.num_row_groups):
        n = meta.row_group(i).num_rows
        if start + n > lo and start < hi:
            picked.append(i)
            first = start if first is None else first
        start += n
    table = pf.read_row_groups(picked, columns=columns, use_threads=False)
    table = table.slice(lo - (first or 0), hi - lo).combine_chunks()
    batches = table.to_batches()
    if not batches:
        return pa.RecordBatch.from_pydict({c: pa.array([], table.schema.field(c).type)
                                           for c in columns})
    return batches[0]


def _batch(
    index: int,
    batch: pa.RecordBatch,
    columns: Sequence[str],
    group_column: pa.Array | None,
    groups: GroupCodes,
) -> Batch:
    valid = batch.column(0).is_null().to_numpy(zero_copy_only=False)
    everything = bool(valid.all())
    if group_column is None:
        codes = np.full(len(valid), groups.code(groups.all_label), dtype=np.int32)
    else:
        codes = groups.of(group_column)
    if not everything:
        codes[~valid] = REJECTED
    out: dict[str, np.ndarray] = {}
    nulls: dict[str, np.ndarray | None] = {}
    for i, name in enumerate(columns, start=1):
        column = batch.column(i)
        kind = np.uint64 if name == "id_hash" else np.int64 if name == "row" else np.float64
        out[name] = np.asarray(column.to_numpy(zero_copy_only=False), dtype=kind)
        null = column.is_null().to_numpy(zero_copy_only=False) if column.null_count else None
        nulls[name] = null if null is not None and (null & valid).any() else None
    return Batch(index, codes, out, nulls, everything)


def run_workers(
    n_items: int,
    work: Callable[[Any, int], None],
    make_state: Callable[[], Any],
    workers: int,
) -> list[Any]:
    """``work(state, i)`` for i in 0..n_items-1 on ``workers`` threads, each with its own
    ``state`` (returned, one per thread that ran). The first error stops the others and is
    raised."""
    lock = threading.Lock()
    next_item = iter(range(n_items))
    failed: list[BaseException] = []
    states: list[Any] = []

    def loop() -> None:
        state = make_state()
        with lock:
            states.append(state)
        while True:
            with lock:
                if failed:
                    return
                i = next(next_item, None)
            if i is None:
                return
            try:
                work(state, i)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                with lock:
                    failed.append(exc)
                return

    n = max(1, min(workers, n_items))
    if n == 1:
        loop()
    else:
        threads = [threading.Thread(target=loop, daemon=True) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if failed:
        raise failed[0]
    return states
