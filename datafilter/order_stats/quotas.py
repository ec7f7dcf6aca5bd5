"""Per group, the documents that fit a quota, in streaming passes of bounded memory.

A group's documents are taken in ``(id_hash, score file, row)`` order while the running total
of an amount column (tokens or bytes) stays within the group's quota; what is wanted is how many
are taken, their amount, and the sort key of the last one (the cut the select workers apply).

Pass 1 counts each group's documents and amount per bucket of the id_hash's top bits. The first
bucket whose running total passes the quota holds the first document that does not fit; the
non-empty bucket before it holds the last one that fits when none of that bucket's do. The two
buckets form the group's *window*; later passes count the window's rows over finer sub-buckets
until it holds few enough rows to collect, and the collected rows, sorted, settle the group.
id_hash is a hash, so buckets of equal width hold about equal numbers of documents; an id_hash
repeated many times (copies of one document) ends the refining and its rows are collected
whatever their number. A null amount counts as 0.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial

import numpy as np

from datafilter.errors import InputError
from datafilter.order_stats.scan import (
    REJECTED,
    Batch,
    GroupCodes,
    ScoreShards,
    file_ranks,
    read_shard,
    run_workers,
)

FIRST_BITS = 8  # pass 1: 256 buckets per group
MAX_BITS = 16  # a refining pass: at most 65,536 sub-buckets per group
COLLECTED_ROW_BYTES = 96  # five columns of a collected row, their copies and the sort's order
COUNT_CELL_BYTES = 16  # a bucket's document count and amount


@dataclass
class QuotaFill:
    """One group: its valid documents and their amount; with a quota, those taken, and the
    (id_hash, score file, row) of the last one taken (None when none or all are taken)."""

    documents: int
    amount: int
    kept_documents: int = 0
    kept_amount: int = 0
    last: dict | None = None


class _Windows:
    """Per group code: the id_hash range still searched (inclusive), and the documents and
    amount before it."""

    def __init__(self, n_codes: int):
        self.lo = np.zeros(n_codes, dtype=np.uint64)
        self.hi = np.full(n_codes, np.iinfo(np.uint64).max, dtype=np.uint64)
        self.base_docs = np.zeros(n_codes, dtype=np.int64)
        self.base_amount = np.zeros(n_codes, dtype=np.int64)
        self.rows = np.zeros(n_codes, dtype=np.int64)  # rows inside the window
        self.stuck = np.zeros(n_codes, dtype=bool)  # the last count did not narrow it


class _Plan:
    """What one pass does per group code: count over sub-buckets (``shift``, ``offset`` into
    the flat counts), collect the window's rows, or nothing."""

    def __init__(self, windows: _Windows, count: np.ndarray, collect: np.ndarray, bits: int):
        self.lo, self.hi = windows.lo.copy(), windows.hi.copy()
        self.count, self.collect = count, collect
        n = len(count)
        self.shift = np.zeros(n, dtype=np.uint64)
        self.size = np.zeros(n, dtype=np.int64)
        for c in np.flatnonzero(count):
            width = int(self.hi[c] - self.lo[c])
            shift = max(0, width.bit_length() - bits)
            self.shift[c] = shift
            self.size[c] = (width >> shift) + 1
        self.offset = np.concatenate([[0], np.cumsum(self.size)[:-1]]).astype(np.int64)
        self.cells = int(self.size.sum())


class _PassState:
    """One worker's counts (flat over the counted groups' sub-buckets) and collected rows."""

    def __init__(self, plan: _Plan, amount: str):
        self.plan, self.amount_column = plan, amount
        self.docs = np.zeros(plan.cells, dtype=np.int64)
        self.amount = np.zeros(plan.cells, dtype=np.float64)
        self.collected: list[tuple[np.ndarray, ...]] = []

    def add(self, batch: Batch, file_rank: int) -> None:
        plan, amount = self.plan, self.amount_column
        codes = batch.codes
        ids = batch.columns["id_hash"]
        inside = (ids >= plan.lo[codes]) & (ids <= plan.hi[codes])
        counted = inside & plan.count[codes]
        if counted.any():
            c = codes[counted]
            sub = (ids[counted] - plan.lo[c]) >> plan.shift[c]
            cells = plan.offset[c] + sub.astype(np.int64)
            self.docs += np.bincount(cells, minlength=plan.cells)
            self.amount += np.bincount(cells, weights=_amounts(batch, amount)[counted],
                                        minlength=plan.cells)
        taken = inside & plan.collect[codes]
        if taken.any():
            self.collected.append((
                codes[taken],
                ids[taken],
                np.full(int(taken.sum()), file_rank, dtype=np.int64),
                batch.columns["row"][taken],
                np.rint(_amounts(batch, amount)[taken]).astype(np.int64),
            ))


def fill_quotas(
    shards: ScoreShards,
    amount: str,
    quotas: Mapping[str, int] | None,
    *,
    groups: GroupCodes | None = None,
    workers: int | None = None,
    memory_budget: int = 1 << 29,
    batch_rows: int = 1 << 20,
) -> dict[str, QuotaFill]:
    """Per group (sorted by name): its documents and amount, and with ``quotas`` (group ->
    quota; groups not named have quota 0) those taken within the quota, as DuckDB's
    ``sum(amount) OVER (PARTITION BY group ORDER BY id_hash, score_file, row) <= quota``."""
    groups = groups or GroupCodes(shards.all_label, shards.null_label)
    workers = workers or min(os.cpu_count() or 1, 8)
    file_rank = file_ranks(shards.score_files)
    columns = [amount, "id_hash", "row"]

    def scan(work, make_state):
        def read(state, index: int) -> None:
            for batch in read_shard(shards, index, columns, groups, batch_rows):
                work(state, batch, int(file_rank[index]))

        return run_workers(len(shards.score_files), read, make_state, workers)

    docs, amounts = _first_pass(scan, amount)
    n_codes = len(groups.names)
    docs, amounts = _padded(docs, n_codes << FIRST_BITS), _padded(amounts, n_codes << FIRST_BITS)
    per_bucket_docs = docs.reshape(n_codes, -1)
    per_bucket_amount = amounts.reshape(n_codes, -1)
    names = groups.names
    result = {
        names[c]: QuotaFill(int(per_bucket_docs[c].sum()), int(per_bucket_amount[c].sum()))
        for c in range(1, n_codes)
        if per_bucket_docs[c].sum()
    }
    if quotas is None:
        return dict(sorted(result.items()))
    quota = np.array([quotas.get(names[c], 0) if c else 0 for c in range(n_codes)], np.int64)
    windows = _Windows(n_codes)
    pending = np.zeros(n_codes, dtype=bool)
    for c in range(1, n_codes):
        fill = result.get(names[c])
        if fill is None:
            continue
        if fill.amount <= quota[c]:
            fill.kept_documents, fill.kept_amount = fill.documents, fill.amount
            continue
        shift = np.uint64(64 - FIRST_BITS)
        _narrow(windows, c, np.uint64(0), shift, per_bucket_docs[c], per_bucket_amount[c],
                int(quota[c]))
        pending[c] = True
    budget_rows = max(1, memory_budget // COLLECTED_ROW_BYTES)
    while pending.any():
        collect = pending & (_fits(windows.rows, pending, budget_rows) | windows.stuck)
        count = pending & ~collect
        plan = _Plan(windows, count, collect, _bits(int(count.sum()), memory_budget, workers))
        states = scan(_PassState.add, partial(_PassState, plan, amount))
        _settle(result, names, windows, quota, [p for s in states for p in s.collected], shards)
        pending &= ~collect
        if count.any():
            docs = sum(s.docs for s in states)
            sums = np.rint(sum(s.amount for s in states)).astype(np.int64)
            for c in np.flatnonzero(count):
                cells = slice(plan.offset[c], plan.offset[c] + plan.size[c])
                _narrow(windows, c, plan.lo[c], plan.shift[c], docs[cells], sums[cells],
                        int(quota[c]))
    return dict(sorted(result.items()))


def _first_pass(scan, amount: str) -> tuple[np.ndarray, np.ndarray]:
    """Documents and amount per (group code, top id_hash bits), flat: ``code << FIRST_BITS |
    bucket``."""
    lock = threading.Lock()
    totals = [np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)]

    def work(_state: None, batch: Batch, _rank: int) -> None:
        valid = batch.codes != REJECTED
        ids = batch.columns["id_hash"][valid]
        cells = (batch.codes[valid].astype(np.int64) << FIRST_BITS) | (
            ids >> np.uint64(64 - FIRST_BITS)
        ).astype(np.int64)
        docs = np.bincount(cells)
        sums = np.bincount(cells, weights=_amounts(batch, amount)[valid])
        with lock:
            for i, more in enumerate((docs, sums)):
                if len(more) > len(totals[i]):
                    grown = np.zeros(len(more), dtype=totals[i].dtype)
                    grown[: len(totals[i])] = totals[i]
                    totals[i] = grown
                totals[i][: len(more)] += more

    scan(work, lambda: None)
    return totals[0], np.rint(totals[1]).astype(np.int64)


def _padded(a: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros(size, dtype=a.dtype)
    out[: len(a)] = a
    return out


def _amounts(batch: Batch, amount: str) -> np.ndarray:
    values = batch.columns[amount]
    return np.where(np.isnan(values), 0.0, values)


def _narrow(windows: _Windows, c: int, lo: np.uint64, shift: np.uint64, docs: np.ndarray,
            sums: np.ndarray, quota: int) -> None:
    """Narrow group ``c``'s window to the sub-bucket where the running total first passes the
    quota and the non-empty one before it (``docs``, ``sums``: the window's sub-buckets of
    ``2**shift`` id_hash values from ``lo``)."""
    running = windows.base_amount[c] + np.cumsum(sums)
    over = running > quota
    if not over.any():
        raise InputError("the score shards changed while being read: a later pass found "
                         "fewer tokens than the first; run the command again")
    first_over = int(np.argmax(over))
    before = np.flatnonzero(docs[:first_over])
    start = int(before[-1]) if len(before) else first_over
    windows.base_docs[c] += int(docs[:start].sum())
    windows.base_amount[c] += int(sums[:start].sum())
    windows.rows[c] = int(docs[start : first_over + 1].sum())
    old = (int(windows.lo[c]), int(windows.hi[c]))
    new_lo = int(lo) + (start << int(shift))
    new_hi = min(int(lo) + ((first_over + 1) << int(shift)) - 1, old[1])
    windows.lo[c], windows.hi[c] = np.uint64(new_lo), np.uint64(new_hi)
    windows.stuck[c] = (new_lo, new_hi) == old


def _fits(rows: np.ndarray, pending: np.ndarray, budget_rows: int) -> np.ndarray:
    """The pending groups whose windows are collected this pass: smallest first, while they fit
    the budget; a window that can no longer be narrowed (one id_hash) always."""
    out = np.zeros(len(rows), dtype=bool)
    used = 0
    for c in sorted(np.flatnonzero(pending), key=lambda c: rows[c]):
        if used + rows[c] > budget_rows:
            break
        out[c] = True
        used += int(rows[c])
    return out


def _bits(n_counted: int, budget: int, workers: int) -> int:
    """Sub-bucket bits of a refining pass: its counts (one copy per worker and the sum) within
    half the budget."""
    if n_counted == 0:
        return 0
    cells = budget // 2 // (COUNT_CELL_BYTES * (workers + 1) * n_counted)
    return int(max(1, min(MAX_BITS, int(cells).bit_length() - 1)))


def _settle(result: dict[str, QuotaFill], names: list[str], windows: _Windows,
            quota: np.ndarray, parts: list[tuple[np.ndarray, ...]], shards: ScoreShards) -> None:
    """Sort the collected windows (by group, then id_hash, score file, row) and take each
    group's documents while they fit."""
    if not parts:
        return
    codes, ids, ranks, rows, amounts = (np.concatenate([p[i] for p in parts]) for i in range(5))
    order = np.lexsort((rows, ranks, ids, codes))
    codes, ids, ranks, rows, amounts = (a[order] for a in (codes, ids, ranks, rows, amounts))
    by_rank = sorted(str(f) for f in shards.score_files)
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    for a, b in zip(starts, np.r_[starts[1:], len(codes)], strict=True):
        c = int(codes[a])
        fill = result[names[c]]
        running = windows.base_amount[c] + np.cumsum(amounts[a:b])
        taken = int(np.searchsorted(running, quota[c], side="right"))
        fill.kept_documents = int(windows.base_docs[c]) + taken
        fill.kept_amount = int(running[taken - 1]) if taken else int(windows.base_amount[c])
        if taken:
            at = a + taken - 1
            fill.last = {"id_hash": int(ids[at]), "shard": by_rank[int(ranks[at])],
                         "row": int(rows[at])}
