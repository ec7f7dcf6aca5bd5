"""A fixed pseudo-random sample per group in one streaming pass: the rows of smallest id hash.

Each worker keeps, per group, only rows whose ``id_hash`` is at most that group's current
``n``-th smallest one; when its buffer grows past twice what it must keep, it sorts the buffer
and cuts every group back to ``n`` rows. Memory: about ``n`` rows per group (the sample itself)
plus a batch, whatever the number of rows.
"""

from __future__ import annotations

import numpy as np

from datafilter.order_stats.scan import (
    REJECTED,
    Batch,
    GroupCodes,
    ScoreShards,
    read_shard,
    run_workers,
)

MAX_HASH = np.uint64(np.iinfo(np.uint64).max)
COMPACT_ROWS = 1 << 20  # rows buffered beyond twice the kept ones before a compaction


class _Smallest:
    """One worker's (or the merged) rows of smallest (id_hash, file rank, row) per group."""

    def __init__(self, n: int):
        self.n = n
        self.parts: list[tuple[np.ndarray, ...]] = []  # code, id_hash, file rank, row, value
        self.rows = 0
        self.kept = 0
        self.limit = np.zeros(0, dtype=np.uint64)  # per code: largest id_hash still wanted

    def add(self, codes: np.ndarray, hashes: np.ndarray, files: np.ndarray, rows: np.ndarray,
            values: np.ndarray) -> None:
        self._grow(int(codes.max(initial=0)) + 1)
        take = hashes <= self.limit[codes]
        if not take.any():
            return
        self.parts.append((codes[take], hashes[take], files[take], rows[take], values[take]))
        self.rows += int(take.sum())
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
        code, h, f, r, v = (np.concatenate([p[i] for p in self.parts]) for i in range(5))
        order = np.lexsort((r, f, h, code))
        code, h, f, r, v = code[order], h[order], f[order], r[order], v[order]
        starts = np.searchsorted(code, code, side="left")
        keep = np.arange(len(code)) - starts < self.n
        code, h, f, r, v = code[keep], h[keep], f[keep], r[keep], v[keep]
        self.parts = [(code, h, f, r, v)]
        self.rows = self.kept = len(code)
        self._grow(int(code.max(initial=0)) + 1)
        counts = np.bincount(code, minlength=len(self.limit))
        full = np.flatnonzero(counts >= self.n)
        if len(full):
            ends = np.searchsorted(code, full, side="right") - 1
            self.limit[full] = h[ends]

    def result(self) -> dict[int, np.ndarray]:
        self.compact()
        if not self.parts:
            return {}
        code, _, _, _, v = self.parts[0]
        cut = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
        return {int(code[s]): v[s:e] for s, e in zip(cut, np.r_[cut[1:], len(code)],
                                                        strict=True)}


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

    def work(state: _Smallest, index: int) -> None:
        for batch in read_shard(shards, index, [metric, "id_hash", "row"], groups, batch_rows):
            _add(state, batch, metric, int(file_rank[index]))

    states = run_workers(len(shards.score_files), work, lambda: _Smallest(n), workers)
    merged = _Smallest(n)
    for state in states:
        state.compact()
        merged.parts.extend(state.parts)
        merged.limit = np.zeros(0, dtype=np.uint64)
    return merged.result()


def _add(state: _Smallest, batch: Batch, metric: str, file_rank: int) -> None:
    valid = batch.codes != REJECTED
    if not valid.any():
        return
    state.add(
        batch.codes[valid].astype(np.int64),
        batch.columns["id_hash"][valid],
        np.full(int(valid.sum()), file_rank, dtype=np.int64),
        batch.columns["row"][valid],
        batch.columns[metric][valid],
    )
