"""A fixed pseudo-random sample per group in one streaming pass: the rows of smallest id hash.

Each worker keeps, per group, only rows whose ``id_hash`` is at most that group's current
``n``-th smallest one; when its buffer grows past twice what it must keep, it sorts the buffer
and cuts every group back to ``n`` rows. Memory: about ``n`` rows per group (the sample itself)
plus a batch, whatever the number of rows.
"""

from __future__ import annotations

import threading

import numpy as np

from datafilter.order_stats.encoding import NULL_KEY, encode
from datafilter.order_stats.scan import (
    REJECTED,
    Batch,
    GroupCodes,
    ScoreShards,
    read_shard,
    run_workers,
)

MAX_HASH = np.uint64(np.iinfo(np.uint64).max)
COMPACT_ROWS = 1 << 18  # rows buffered beyond twice the kept ones before a compaction


class _Smallest:
    """The rows of smallest (key, id_hash, file rank, row) per group, kept for all workers at
    once (one buffer, added to under a lock: memory does not grow with the workers)."""

    def __init__(self, n: int):
        self.n = n
        self.lock = threading.Lock()
        # code, key, id_hash, file rank, row, value
        self.parts: list[tuple[np.ndarray, ...]] = []
        self.rows = 0
        self.kept = 0
        self.limit = np.zeros(0, dtype=np.uint64)  # per code: largest key still wanted

    def add(self, codes: np.ndarray, keys: np.ndarray, hashes: np.ndarray, files: np.ndarray,
            rows: np.ndarray, values: np.ndarray) -> None:
        limit = self.limit  # a stale copy only lets more rows through: compaction drops them
        size = int(codes.max(initial=0)) + 1
        if len(limit) < size:
            limit = np.concatenate([limit, np.full(size - len(limit), MAX_HASH, np.uint64)])
        take = keys <= limit[codes]
        if not take.any():
            return
        part = tuple(a[take] for a in (codes, keys, hashes, files, rows, values))
        with self.lock:
            self.parts.append(part)
            self.rows += len(part[0])
            if self.rows > 2 * self.kept + COMPACT_ROWS:
                self.compact()

    def _grow(self, size: int) -> None:
        if len(self.limit) < size:
            grown = np.full(size, MAX_HASH, dtype=np.uint64)
            grown[: len(self.limit)] = self.limit
            self.limit = grown

    def compact(self) -> None:
        """Sort the buffer and keep each group's first ``n`` rows."""
        if not self.parts:
            return
        cols = [np.concatenate([p[i] for p in self.parts]) for i in range(6)]
        code, key, h, f, r, _ = cols
        order = np.lexsort((r, f, h, key, code))
        cols = [c[order] for c in cols]
        code = cols[0]
        starts = np.searchsorted(code, code, side="left")
        keep = np.arange(len(code)) - starts < self.n
        cols = [c[keep] for c in cols]
        code, key = cols[0], cols[1]
        self.parts = [tuple(cols)]
        self.rows = self.kept = len(code)
        self._grow(int(code.max(initial=0)) + 1)
        counts = np.bincount(code, minlength=len(self.limit))
        full = np.flatnonzero(counts >= self.n)
        if len(full):
            ends = np.searchsorted(code, full, side="right") - 1
            self.limit[full] = key[ends]

    def result(self) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per group code: file ranks, rows and values of its rows, in order."""
        self.compact()
        if not self.parts:
            return {}
        code, _, _, f, r, v = self.parts[0]
        cut = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
        return {int(code[s]): (f[s:e], r[s:e], v[s:e])
                for s, e in zip(cut, np.r_[cut[1:], len(code)], strict=True)}


def smallest_rows(
    shards: ScoreShards,
    groups: GroupCodes,
    metric: str,
    n: int,
    file_rank: np.ndarray,
    workers: int,
    batch_rows: int,
    targets: np.ndarray | None = None,
) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per group code: the file ranks, rows and ``metric`` values (NaN where null) of its ``n``
    valid rows of smallest (id_hash, score file, row), in that order (all of its rows when it
    has fewer); with ``targets`` (per group code, NaN: none), of its ``n`` rows nearest the
    group's target, ordered by (|value - target|, id_hash, score file, row), NaN and nulls
    last."""

    def work(state: _Smallest, index: int) -> None:
        for batch in read_shard(shards, index, [metric, "id_hash", "row"], groups, batch_rows):
            _add(state, batch, metric, int(file_rank[index]), targets)

    shared = _Smallest(n)
    run_workers(len(shards.score_files), work, lambda: shared, workers)
    return shared.result()


def smallest_hash_sample(
    shards: ScoreShards,
    groups: GroupCodes,
    metric: str,
    n: int,
    file_rank: np.ndarray,
    workers: int,
    batch_rows: int,
) -> dict[int, np.ndarray]:
    """Per group code: ``metric`` of its ``n`` valid rows of smallest (id_hash, score file,
    row), in that order (all of its rows when it has fewer; NaN where the metric is null)."""
    found = smallest_rows(shards, groups, metric, n, file_rank, workers, batch_rows)
    return {code: values for code, (_, _, values) in found.items()}


def _add(state: _Smallest, batch: Batch, metric: str, file_rank: int,
         targets: np.ndarray | None) -> None:
    valid = batch.codes != REJECTED
    codes = batch.codes.astype(np.int64)
    values = batch.columns[metric]
    if targets is not None:
        known = np.zeros(len(codes), dtype=bool)
        inside = codes < len(targets)
        known[inside] = ~np.isnan(targets[codes[inside]])
        valid &= known
    if not valid.any():
        return
    codes, values = codes[valid], values[valid]
    hashes = batch.columns["id_hash"][valid]
    if targets is None:
        keys = hashes
    else:
        with np.errstate(invalid="ignore"):
            keys = encode(np.abs(values - targets[codes]))
        null = batch.nulls[metric]
        if null is not None:
            keys[null[valid]] = NULL_KEY
    state.add(codes, keys, hashes, np.full(len(codes), file_rank, dtype=np.int64),
              batch.columns["row"][valid], values)
