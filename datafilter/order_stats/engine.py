"""Exact order statistics of score shards in memory that does not grow with the number of rows.

Pass 1 streams the shards once: exact counts per group and, per metric, a histogram over a
grid of key ranges (:mod:`grid`). Every wanted order statistic (a group and a 0-based rank)
then lies in one known cell, with a known number of rows before it. Each further pass streams
the shards again and, for each cell (or finer range) holding a wanted rank, either *collects*
its rows (when they fit the memory budget) and picks the wanted ones by sorting that handful,
or *counts* its rows over finer sub-ranges (and, for the metric word, counts its distinct
values, which settles heavy ties at once), narrowing the range for the next pass. Ranks of the
full sort key (metric, id_hash, score file, row) narrow through the tie-break words the same
way, so documents tied on the metric are ordered exactly as DuckDB's
``ORDER BY metric, id_hash, score_file, row`` orders them.

Typical data takes two passes; heavy ties or a misleading pilot sample may take a few more.
The approximate mode stops after pass 1 and reports, per group, a bound on the rank error.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from datafilter.errors import InputError
from datafilter.io.shards import open_parquet
from datafilter.io.storage import location
from datafilter.order_stats.encoding import (
    NULL_KEY,
    decode,
    duckdb_fuses_interpolation,
    encode,
    interpolate,
    quantile_ranks,
)
from datafilter.order_stats.grid import Grid
from datafilter.order_stats.scan import (
    REJECTED,
    Batch,
    GroupCodes,
    ScoreShards,
    read_shard,
    run_workers,
)
from datafilter.order_stats.tree import IGNORE, WORD_MAX, Tree, WordSource, word_to_row

COLLECT, HIST = 0, 1
VALUE_ROW_BYTES = 24  # a collected row of a value rank: leaf id, key, and the sort's copy
KEY_ROW_BYTES = 64  # of a full-key rank: leaf id and four words, and the sort's copies
DISTINCT_ENTRY_BYTES = 16


@dataclass
class Target:
    """One wanted order statistic: the row at 0-based ``rank`` of a group, by ``metric``."""

    metric: str
    group: int  # group code
    rank: int
    full: bool  # the full sort key, not only the metric's value
    slot: int = -1
    below: int = 0  # rows of the group ordered before the slot's range
    count: int = 0  # rows in the slot
    dim: int = 0  # the word the slot's range is over
    lo: int = 0
    hi: int = 0
    fixed: list[int] = field(default_factory=list)  # words fixed above ``dim``
    key: tuple[int, ...] | None = None  # the answer: (metric key,) or all four words
    rank_error: int = 0  # approximate answers: the rank may be off by this many rows


@dataclass
class PassInfo:
    """What one pass over the shards did (for reports and the benchmark)."""

    seconds: float
    leaves: int = 0
    collected_rows: int = 0
    counted_ranges: int = 0


@dataclass
class _Leaf:
    metric: str
    slot: int
    count: int
    dim: int  # the word its rows are counted over (HIST) or the slot's word
    lo: int
    hi: int
    full: bool
    action: int = COLLECT
    shift: int = 0
    top: int = 0
    hist_base: int = 0
    distinct: bool = False
    targets: list[Target] = field(default_factory=list)


class OrderStats:
    """Counts and exact order statistics of valid scored rows, per group, in bounded memory.

    ``metrics``: the score columns to rank by (all read in the same passes).
    ``memory_budget``: bytes for histograms and collected rows (not counting the batches being
    read: about ``workers * batch_rows * 40`` bytes more).
    """

    def __init__(
        self,
        shards: ScoreShards,
        metrics: Sequence[str] = ("ppl", "bpb"),
        *,
        workers: int | None = None,
        memory_budget: int = 1 << 30,
        batch_rows: int = 1 << 20,
        pilot_rows: int = 1 << 20,
        pilot_shards: int = 32,
        grid_cells: int | None = None,
    ):
        if not shards.score_files:
            raise InputError("no finished score shards to compute order statistics from")
        self.shards = shards
        self.metrics = list(metrics)
        self.workers = workers or min(os.cpu_count() or 1, 8)
        self.memory_budget = int(memory_budget)
        self.batch_rows = int(batch_rows)
        self.pilot_rows = int(pilot_rows)
        self.pilot_shards = int(pilot_shards)
        self.grid_cells = grid_cells
        self.groups = GroupCodes(shards.all_label, shards.null_label)
        order = sorted(range(len(shards.score_files)), key=lambda i: str(shards.score_files[i]))
        self._file_rank = np.empty(len(order), dtype=np.int64)
        self._file_rank[order] = np.arange(len(order))
        self.passes: list[PassInfo] = []
        self._pass1_done = False
        self._fused = duckdb_fuses_interpolation()

    # ---------------------------------------------------------------- pass 1 -------------------
    def _ensure_pass1(self) -> None:
        if self._pass1_done:
            return
        t0 = time.perf_counter()
        self.grids = self._pilot()
        grids = self.grids

        def make_state() -> _Pass1State:
            return _Pass1State(self.metrics)

        def work(state: _Pass1State, index: int) -> None:
            for batch in read_shard(
                self.shards, index, self.metrics, self.groups, self.batch_rows
            ):
                state.add(batch, grids)

        states = run_workers(len(self.shards.score_files), work, make_state, self.workers)
        n_codes = len(self.groups.names)
        self._counts = _sum_padded([s.counts for s in states], n_codes)
        self._counts[REJECTED] = 0
        self._nonnull: dict[str, np.ndarray] = {}
        self._root: dict[str, np.ndarray] = {}
        self._trees: dict[str, Tree] = {}
        for m in self.metrics:
            for s in states:
                s.flush(m)
            self._nonnull[m] = self._counts - _sum_padded([s.nulls[m] for s in states], n_codes)
            self._nonnull[m][REJECTED] = 0
            size = n_codes * grids[m].cells
            self._root[m] = _sum_padded([s.hist[m] for s in states], size)
            self._root[m][: grids[m].cells] = 0  # rejected rows
            self._trees[m] = Tree(size)
        self._pass1_done = True
        self.passes.append(PassInfo(time.perf_counter() - t0))

    def _pilot(self) -> dict[str, Grid]:
        """Grids from a sample: the middle row group of up to ``pilot_shards`` shards."""
        n = len(self.shards.score_files)
        picks = sorted(set(np.linspace(0, n - 1, min(n, self.pilot_shards)).round().astype(int)))
        per_shard = max(1, self.pilot_rows // len(picks))
        samples: list[list[Batch]] = [[] for _ in picks]
        sizes = [0] * len(picks)

        def work(_state: None, i: int) -> None:
            index = picks[i]
            meta = open_parquet(location(self.shards.score_files[index]))
            try:
                sizes[i] = meta.metadata.num_rows
                n_rg = meta.metadata.num_row_groups
            finally:
                meta.close(force=True)
            if n_rg == 0:
                return
            for batch in read_shard(
                self.shards, index, self.metrics, self.groups, self.batch_rows, [n_rg // 2]
            ):
                samples[i].append(_head(batch, per_shard))

        run_workers(len(picks), work, lambda: None, self.workers)
        batches = [b for bs in samples for b in bs]
        est_rows = int(np.mean(sizes) * n) if sizes else 0
        n_groups = max(1, len(self.groups.names) - 1)
        per_metric_cells = self.grid_cells or _auto_cells(
            n_groups, est_rows, self.memory_budget, self.workers, len(self.metrics)
        )
        per_group = max(16, per_metric_cells // n_groups)
        grids = {}
        for m in self.metrics:
            keys = [
                encode(b.columns[m][b.codes != REJECTED]) for b in batches if len(b)
            ]
            sample = np.concatenate(keys) if keys else np.zeros(0, dtype=np.uint64)
            grids[m] = Grid.from_sample(sample, per_group)
        self.pilot_info = {"rows": sum(len(b) for b in batches), "shards": len(picks),
                           "estimated_rows": est_rows, "cells_per_group": per_group}
        return grids

    # ---------------------------------------------------------------- public API ---------------
    def counts(self) -> dict[str, int]:
        """Valid rows (``reject_reason`` null) per group, groups sorted by name; groups without
        a valid row are left out."""
        self._ensure_pass1()
        return self._named(self._counts)

    def value_counts(self, metric: str) -> dict[str, int]:
        """Valid rows whose ``metric`` is not null, per group (the ``n`` of its quantiles)."""
        self._ensure_pass1()
        return self._named(self._nonnull[self._metric(metric)])

    def _named(self, per_code: np.ndarray) -> dict[str, int]:
        names = self.groups.names
        return {names[c]: int(per_code[c]) for c in self._sorted_codes() if per_code[c]}

    def _sorted_codes(self) -> list[int]:
        names = self.groups.names
        return sorted(range(1, len(names)), key=names.__getitem__)

    def _metric(self, metric: str) -> str:
        if metric not in self.metrics:
            raise ValueError(f"metric {metric!r} is not one of {self.metrics}")
        return metric

    def quantiles(
        self, qs: Sequence[float], metric: str = "ppl", approx: bool = False
    ) -> dict[str, list[float]]:
        """Per group (sorted by name), DuckDB's ``quantile_cont(metric, qs)`` over the group's
        non-null values, bit for bit (exact), or estimated from pass 1 (``approx``)."""
        return self.quantiles_many({metric: qs}, approx)[metric]

    def quantiles_many(
        self, wanted: Mapping[str, Sequence[float]], approx: bool = False
    ) -> dict[str, dict[str, list[float]]]:
        """``quantiles`` of several metrics, found in the same passes."""
        self._ensure_pass1()
        plans: dict[str, dict[int, list[tuple[int, int, float]]]] = {}
        targets: dict[tuple[str, int, int], Target] = {}
        for metric, qs in wanted.items():
            metric = self._metric(metric)
            per_group = plans.setdefault(metric, {})
            for code in self._sorted_codes():
                n = int(self._nonnull[metric][code])
                if n == 0:
                    continue
                ranks = [quantile_ranks(n, float(q)) for q in qs]
                per_group[code] = ranks
                for lo, hi, _ in ranks:
                    for r in (lo, hi):
                        targets.setdefault((metric, code, r), Target(metric, code, r, False))
        self._resolve(list(targets.values()), approx)
        self.last_rank_error = {}
        out: dict[str, dict[str, list[float]]] = {}
        for metric, per_group in plans.items():
            out[metric] = {}
            for code, ranks in per_group.items():
                values = []
                for lo, hi, d in ranks:
                    a = _value(targets[(metric, code, lo)])
                    if hi == lo:
                        values.append(a)
                    else:
                        values.append(interpolate(a, _value(targets[(metric, code, hi)]), d,
                                                  self._fused))
                name = self.groups.names[code]
                out[metric][name] = values
                if approx:
                    err = max(targets[(metric, code, r)].rank_error for lo, hi, _ in ranks
                              for r in (lo, hi))
                    self.last_rank_error[(metric, name)] = err
        return out

    def keys_at_ranks(
        self, wanted: Mapping[str, Sequence[int]], metric: str = "ppl"
    ) -> dict[tuple[str, int], tuple[float, int, str, int]]:
        """The full sort key (metric value, id_hash, score file, row) at each 0-based rank of
        each group, ascending by that key (DuckDB's ``ORDER BY metric, id_hash, score_file,
        row``, nulls last): unique per row even when ids and scores repeat."""
        self._ensure_pass1()
        metric = self._metric(metric)
        code_of = {name: c for c, name in enumerate(self.groups.names) if c != REJECTED}
        targets = []
        for group, ranks in wanted.items():
            code = code_of.get(group)
            n = 0 if code is None else int(self._counts[code])
            for r in ranks:
                if not 0 <= r < n:
                    raise ValueError(f"rank {r} is outside group {group!r} of {n} rows")
                targets.append(Target(metric, code, int(r), True))  # type: ignore[arg-type]
        self._resolve(targets, approx=False)
        files = self.shards.score_files
        by_rank = {int(self._file_rank[i]): str(files[i]) for i in range(len(files))}
        out = {}
        for t in targets:
            assert t.key is not None
            k0, id_hash, file_rank, row = t.key
            value = float(decode(np.array([k0], dtype=np.uint64))[0])
            out[(self.groups.names[t.group], t.rank)] = (
                value, int(id_hash), by_rank[int(file_rank)], word_to_row(int(row))
            )
        return out

    # ---------------------------------------------------------------- resolution ----------------
    def _resolve(self, targets: list[Target], approx: bool) -> None:
        """Find every target's key: place it in its grid cell, then pass until all are known."""
        for metric in {t.metric for t in targets}:
            self._place_in_grid([t for t in targets if t.metric == metric], metric)
        if approx:
            for t in targets:
                self._estimate(t)
            return
        while True:
            leaves = self._plan([t for t in targets if t.key is None])
            if not leaves:
                return
            self._pass(leaves)

    def _place_in_grid(self, targets: list[Target], metric: str) -> None:
        grid, root = self.grids[metric], self._root[metric]
        by_group: dict[int, list[Target]] = {}
        for t in targets:
            by_group.setdefault(t.group, []).append(t)
        for code, ts in by_group.items():
            counts = root[code * grid.cells : (code + 1) * grid.cells]
            cum = np.cumsum(counts)
            ranks = np.array([t.rank for t in ts], dtype=np.int64)
            cells = np.searchsorted(cum, ranks, side="right")
            for t, i in zip(ts, cells.tolist(), strict=True):
                t.slot = code * grid.cells + i
                t.below = int(cum[i - 1]) if i else 0
                t.count = int(counts[i])
                t.dim = 0
                t.lo, t.hi = grid.cell_range(i)
                t.fixed = []
                t.key = None

    def _estimate(self, t: Target) -> None:
        """An approximate key for a value rank from its grid cell: interpolated in key space
        (about a log scale; the end cells clipped to the grid's range); its rank is off by less
        than the cell's count."""
        grid = self.grids[t.metric]
        lo = max(t.lo, grid.lo)
        hi = max(lo, min(t.hi, grid.lo + (grid.cells << grid.shift) - 1))
        frac = (t.rank - t.below + 0.5) / max(t.count, 1)
        t.key = (lo + int((hi - lo) * frac),)
        t.rank_error = t.count

    def _plan(self, targets: list[Target]) -> list[_Leaf]:
        """The leaves of the next pass; settles the targets that need no pass."""
        leaves: dict[tuple[str, int], _Leaf] = {}
        for t in targets:
            if t.dim == 0 and t.lo == t.hi and not t.full:
                t.key = (t.lo,)  # the range is one value
                continue
            if t.full and t.dim == 3 and t.lo == t.hi:
                t.key = (*t.fixed, t.lo)  # every row of the range has the same full key
                continue
            leaf = leaves.get((t.metric, t.slot))
            if leaf is None:
                leaf = leaves[(t.metric, t.slot)] = _Leaf(
                    t.metric, t.slot, t.count, t.dim, t.lo, t.hi, t.full
                )
            leaf.full |= t.full
            leaf.targets.append(t)
        if not leaves:
            return []
        collect_budget = self.memory_budget // 2
        ordered = sorted(leaves.values(), key=lambda lf: lf.count)
        spent = 0
        hist_leaves = []
        for leaf in ordered:
            cost = leaf.count * (KEY_ROW_BYTES if leaf.full else VALUE_ROW_BYTES)
            if spent + cost <= collect_budget or leaf.count <= 1:
                spent += cost
                leaf.action = COLLECT
            else:
                leaf.action = HIST
                hist_leaves.append(leaf)
        if hist_leaves:
            budget_cells = max(
                len(hist_leaves) * 2, self.memory_budget // 8 // (8 * (self.workers + 1))
            )
            per_leaf = 1 << max(4, min(16, (budget_cells // len(hist_leaves)).bit_length() - 1))
            base = 0
            for leaf in hist_leaves:
                if leaf.lo == leaf.hi:  # one value of this word: count over the next word
                    leaf.dim += 1
                    leaf.lo, leaf.hi = 0, self._word_max(leaf.dim)
                span = leaf.hi - leaf.lo
                shift = 0
                while span >> shift >= per_leaf:
                    shift += 1
                leaf.shift, leaf.top = shift, span >> shift
                leaf.hist_base = base
                base += leaf.top + 1
                leaf.distinct = True
        return ordered

    def _word_max(self, dim: int) -> int:
        return len(self.shards.score_files) - 1 if dim == 2 else WORD_MAX

    def _pass(self, leaves: list[_Leaf]) -> None:
        """Stream the shards once for ``leaves``; then settle or narrow their targets."""
        t0 = time.perf_counter()
        by_metric: dict[str, list[_Leaf]] = {}
        for leaf in leaves:
            by_metric.setdefault(leaf.metric, []).append(leaf)
        tables = {}
        for metric, ls in by_metric.items():
            tree = self._trees[metric]
            tree.reset_leaves()
            for i, leaf in enumerate(ls):
                tree.slot_to[leaf.slot] = i
            tables[metric] = _LeafTable(ls)
        distinct_cap = max(1 << 10, self.memory_budget // 16 // DISTINCT_ENTRY_BYTES)
        n_distinct = sum(int(t.distinct.sum()) for t in tables.values())
        for t in tables.values():
            t.distinct_cap = max(4096, distinct_cap // max(1, n_distinct))
        need_keys = any(leaf.full for leaf in leaves)
        columns = [*by_metric, *(["id_hash", "row"] if need_keys else [])]

        def make_state() -> _PassState:
            return _PassState(tables)

        def work(state: _PassState, index: int) -> None:
            for batch in read_shard(self.shards, index, columns, self.groups, self.batch_rows):
                if len(self.groups.names) > len(self._counts):
                    raise InputError(
                        "has groups it did not have in the first pass: the score shards "
                        "changed while being read",
                        path=str(self.shards.score_files[index]),
                    )
                for metric in by_metric:
                    state.add(metric, batch, self, int(self._file_rank[index]))

        states = run_workers(len(self.shards.score_files), work, make_state, self.workers)
        info = PassInfo(0.0, leaves=len(leaves))
        for metric, ls in by_metric.items():
            merged = _merge_pass(metric, states, tables[metric])
            info.collected_rows += len(merged.collect_leaf)
            info.counted_ranges += sum(1 for lf in ls if lf.action == HIST)
            self._settle(metric, ls, merged)
            self._trees[metric].reset_leaves()
        info.seconds = time.perf_counter() - t0
        self.passes.append(info)

    def _settle(self, metric: str, leaves: list[_Leaf], merged: _Merged) -> None:
        tree = self._trees[metric]
        collected = [i for i, lf in enumerate(leaves) if lf.action == COLLECT]
        if collected:
            _pick_collected(leaves, merged)
        for i, leaf in enumerate(leaves):
            if leaf.action != HIST:
                continue
            distinct = merged.distinct.get(i)
            if distinct is not None:
                self._settle_distinct(tree, leaf, *distinct)
                continue
            counts = merged.hist[leaf.hist_base : leaf.hist_base + leaf.top + 1]
            _check_total(int(counts.sum()), leaf, self.shards)
            node = tree.add_bucket_node(leaf.slot, leaf.dim, leaf.lo, leaf.shift, leaf.top)
            cum = np.cumsum(counts)
            for t in leaf.targets:
                if t.dim != leaf.dim:  # moved on to the next word
                    t.fixed = [*t.fixed, t.lo]
                offset = t.rank - t.below
                j = int(np.searchsorted(cum, offset, side="right"))
                t.slot = node.base + j
                t.below += int(cum[j - 1]) if j else 0
                t.count = int(counts[j])
                t.dim = leaf.dim
                t.lo = leaf.lo + (j << leaf.shift)
                t.hi = min(leaf.hi, leaf.lo + ((j + 1) << leaf.shift) - 1)

    def _settle_distinct(self, tree: Tree, leaf: _Leaf, values: np.ndarray,
                         counts: np.ndarray) -> None:
        """The leaf's distinct words and their counts: value ranks (metric word) are read off;
        a full key rank goes on among the rows of its one word."""
        _check_total(int(counts.sum()), leaf, self.shards)
        cum = np.cumsum(counts)
        picks = {}
        for t in leaf.targets:
            j = int(np.searchsorted(cum, t.rank - t.below, side="right"))
            if not t.full:
                t.key = (int(values[j]),)
            else:
                picks[id(t)] = j
        full = [t for t in leaf.targets if t.full]
        if not full:
            return
        chosen = sorted(set(picks.values()))
        node = tree.add_values_node(leaf.slot, leaf.dim, values[chosen])
        for t in full:
            if t.dim != leaf.dim:  # moved on to the next word
                t.fixed = [*t.fixed, t.lo]
            j = picks[id(t)]
            t.slot = node.base + chosen.index(j)
            t.below += int(cum[j - 1]) if j else 0
            t.count = int(counts[j])
            t.dim = leaf.dim
            t.lo = t.hi = int(values[j])


# -------------------------------------------------------------------- pass 1 state --------------
class _Pass1State:
    """One worker's counts and grid histograms."""

    def __init__(self, metrics: list[str]):
        self.counts = np.zeros(0, dtype=np.int64)
        self.nulls = {m: np.zeros(0, dtype=np.int64) for m in metrics}
        self.hist = {m: np.zeros(0, dtype=np.int64) for m in metrics}
        self._pending: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
        self._pending_rows = dict.fromkeys(metrics, 0)

    def add(self, batch: Batch, grids: dict[str, Grid]) -> None:
        codes = batch.codes
        self.counts = _add_counts(self.counts, np.bincount(codes))
        code64 = codes.astype(np.int64)
        for m, grid in grids.items():
            cells = grid.cells_of(batch.columns[m], code64 * grid.cells)
            self._pending[m].append(cells)
            self._pending_rows[m] += len(cells)
            null = batch.nulls[m]
            if null is not None:
                self.nulls[m] = _add_counts(self.nulls[m], np.bincount(codes[null]))
            if self._pending_rows[m] >= max(1 << 20, len(self.hist[m]) // 2):
                self.flush(m)

    def flush(self, m: str) -> None:
        if not self._pending[m]:
            return
        cells = np.concatenate(self._pending[m])
        self._pending[m], self._pending_rows[m] = [], 0
        self.hist[m] = _add_counts(self.hist[m], np.bincount(cells))


def _add_counts(total: np.ndarray, more: np.ndarray) -> np.ndarray:
    if len(more) > len(total):
        grown = np.zeros(len(more), dtype=np.int64)
        grown[: len(total)] = total
        total = grown
    total[: len(more)] += more
    return total


def _sum_padded(arrays: list[np.ndarray], size: int) -> np.ndarray:
    out = np.zeros(size, dtype=np.int64)
    for a in arrays:
        out[: len(a)] += a[:size]
    return out


def _head(batch: Batch, n: int) -> Batch:
    if len(batch) <= n:
        return batch
    return Batch(
        batch.shard,
        batch.codes[:n],
        {k: v[:n] for k, v in batch.columns.items()},
        {k: None if v is None else v[:n] for k, v in batch.nulls.items()},
        batch.all_valid,
    )


def _auto_cells(n_groups: int, est_rows: int, budget: int, workers: int, n_metrics: int) -> int:
    """Grid cells per metric: 4,096 per group up to the budget's share (a quarter of it over
    the workers' histograms and their sum), and no more than one per 8 rows."""
    budget_cells = budget // 4 // (8 * (workers + 2) * max(1, n_metrics))
    cells = max(1 << 16, n_groups << 12)
    cells = min(cells, budget_cells, max(1 << 10, est_rows // 8))
    return 1 << max(10, cells.bit_length() - 1)


# -------------------------------------------------------------------- later passes --------------
class _LeafTable:
    """The leaves of one metric in one pass, as arrays for vectorised lookups."""

    def __init__(self, leaves: list[_Leaf]):
        self.leaves = leaves
        self.action = np.array([lf.action for lf in leaves], dtype=np.int8)
        self.full = np.array([lf.full for lf in leaves], dtype=bool)
        self.dim = np.array([lf.dim for lf in leaves], dtype=np.int64)
        self.lo = np.array([lf.lo for lf in leaves], dtype=np.uint64)
        self.shift = np.array([lf.shift for lf in leaves], dtype=np.uint64)
        self.top = np.array([lf.top for lf in leaves], dtype=np.uint64)
        self.hist_base = np.array([lf.hist_base for lf in leaves], dtype=np.int64)
        self.distinct = np.array([lf.distinct for lf in leaves], dtype=bool)
        self.distinct_cap = 0  # distinct keys kept per leaf; set by the pass
        self.hist_size = max((lf.hist_base + lf.top + 1 for lf in leaves if lf.action == HIST),
                             default=0)
        self.any_full_collect = bool((self.full & (self.action == COLLECT)).any())


class _PassState:
    """One worker's share of a later pass: counts of sub-ranges, collected rows, distinct keys."""

    def __init__(self, tables: dict[str, _LeafTable]):
        self.hist = {m: np.zeros(t.hist_size, dtype=np.int64) for m, t in tables.items()}
        self.collect: dict[str, list[tuple[np.ndarray, ...]]] = {m: [] for m in tables}
        self.distinct: dict[str, dict[int, list[tuple[np.ndarray, np.ndarray]]]] = {
            m: {} for m in tables
        }
        self.failed: dict[str, set[int]] = {m: set() for m in tables}
        self.tables = tables

    def add(self, metric: str, batch: Batch, owner: OrderStats, file_rank: int) -> None:
        grid, tree, table = owner.grids[metric], owner._trees[metric], self.tables[metric]
        values = batch.columns[metric]
        cells = grid.cells_of(values, batch.codes.astype(np.int64) * grid.cells)
        ref = tree.slot_to[cells]
        first = np.flatnonzero(ref != IGNORE)
        if not len(first):
            return
        keys = encode(values[first])
        null = batch.nulls[metric]
        if null is not None:
            keys[null[first]] = NULL_KEY
        words = WordSource(keys, batch.columns.get("id_hash"), file_rank,
                           batch.columns.get("row"), first)
        rows, leaf = tree.route(first, ref[first], words)
        if not len(rows):
            return
        action = table.action[leaf]
        take = action == COLLECT
        if take.any():
            r, lf = rows[take], leaf[take]
            k0 = words.get(0, r)
            if table.any_full_collect:
                self.collect[metric].append(
                    (lf, k0, words.get(1, r), words.get(2, r), words.get(3, r))
                )
            else:
                self.collect[metric].append((lf, k0))
        count = ~take
        if count.any():
            r, lf = rows[count], leaf[count]
            slots = np.empty(len(r), dtype=np.int64)
            dims = table.dim[lf]
            for dim in np.unique(dims).tolist():
                here = dims == dim
                w = words.get(dim, r[here])
                sub = (w - table.lo[lf[here]]) >> table.shift[lf[here]]
                sub = np.minimum(sub, table.top[lf[here]]).astype(np.int64)
                slots[here] = table.hist_base[lf[here]] + sub
                self._distinct(metric, lf[here], w)
            hist = self.hist[metric]
            if len(slots) * 8 > len(hist):
                hist += np.bincount(slots, minlength=len(hist))
            else:
                np.add.at(hist, slots, 1)

    def _distinct(self, metric: str, leaf: np.ndarray, words: np.ndarray) -> None:
        table, failed = self.tables[metric], self.failed[metric]
        wanted = table.distinct[leaf]
        if not wanted.any():
            return
        leaf, words = leaf[wanted], words[wanted]
        order = np.argsort(leaf, kind="stable")
        leaf, words = leaf[order], words[order]
        starts = np.flatnonzero(np.r_[True, leaf[1:] != leaf[:-1]])
        ends = np.r_[starts[1:], len(leaf)]
        store = self.distinct[metric]
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            i = int(leaf[s])
            if i in failed:
                continue
            vals, counts = np.unique(words[s:e], return_counts=True)
            parts = store.setdefault(i, [])
            parts.append((vals, counts.astype(np.int64)))
            if sum(len(v) for v, _ in parts) > 2 * table.distinct_cap:
                merged = _merge_distinct(parts)
                if len(merged[0]) > table.distinct_cap:
                    failed.add(i)
                    del store[i]
                else:
                    store[i] = [merged]


def _merge_distinct(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    vals = np.concatenate([v for v, _ in parts])
    counts = np.concatenate([c for _, c in parts])
    order = np.argsort(vals, kind="stable")
    vals, counts = vals[order], counts[order]
    starts = np.flatnonzero(np.r_[True, vals[1:] != vals[:-1]])
    return vals[starts], np.add.reduceat(counts, starts)


@dataclass
class _Merged:
    hist: np.ndarray
    collect_leaf: np.ndarray
    collect_words: list[np.ndarray]
    distinct: dict[int, tuple[np.ndarray, np.ndarray]]


def _merge_pass(metric: str, states: list[_PassState], table: _LeafTable) -> _Merged:
    hist = np.zeros(table.hist_size, dtype=np.int64)
    for s in states:
        hist += s.hist[metric]
    parts = [p for s in states for p in s.collect[metric]]
    width = 5 if table.any_full_collect else 2
    if parts:
        columns = [np.concatenate([p[i] for p in parts]) for i in range(width)]
    else:
        columns = [np.zeros(0, dtype=np.int64)] + [np.zeros(0, dtype=np.uint64)] * (width - 1)
    failed = set().union(*(s.failed[metric] for s in states)) if states else set()
    distinct = {}
    cap = table.distinct_cap
    for i, leaf in enumerate(table.leaves):
        if leaf.action != HIST or not leaf.distinct or i in failed:
            continue
        found = [p for s in states for p in s.distinct[metric].get(i, [])]
        if not found:
            continue
        vals, counts = _merge_distinct(found)
        if len(vals) <= cap:
            distinct[i] = (vals, counts)
    return _Merged(hist, columns[0], columns[1:], distinct)


def _pick_collected(leaves: list[_Leaf], merged: _Merged) -> None:
    """Sort each collecting leaf's rows by the full key and read off its targets."""
    leaf_ids = merged.collect_leaf.astype(np.int64)
    words = merged.collect_words
    n_leaves = len(leaves)
    got = np.bincount(leaf_ids, minlength=n_leaves)
    for i, leaf in enumerate(leaves):
        if leaf.action == COLLECT and got[i] != leaf.count:
            raise InputError(
                f"found {got[i]} rows where the first pass counted {leaf.count}: the score "
                "shards changed while being read"
            )
    if len(words) == 1:
        order = _sort_by_leaf_and_key(leaf_ids, words[0], leaves)
    else:
        order = np.lexsort((words[3], words[2], words[1], words[0], leaf_ids))
    start = np.zeros(n_leaves + 1, dtype=np.int64)
    np.cumsum(got, out=start[1:])
    for i, leaf in enumerate(leaves):
        if leaf.action != COLLECT:
            continue
        for t in leaf.targets:
            at = order[start[i] + (t.rank - t.below)]
            if t.full:
                t.key = tuple(int(w[at]) for w in words)
            else:
                t.key = (int(words[0][at]),)


def _sort_by_leaf_and_key(
    leaf_ids: np.ndarray, keys: np.ndarray, leaves: list[_Leaf]
) -> np.ndarray:
    """The order of (leaf, key): one sort of packed uint64 where leaf ranges are narrow enough,
    else a lexsort."""
    if not len(keys):
        return np.zeros(0, dtype=np.int64)
    lo = np.array([lf.lo for lf in leaves], dtype=np.uint64)
    width = max(((lf.hi - lf.lo).bit_length() for lf in leaves if lf.action == COLLECT),
                default=0)
    leaf_bits = max(1, (len(leaves) - 1).bit_length())
    if leaf_bits + width <= 64:
        packed = (leaf_ids.astype(np.uint64) << np.uint64(width)) | (keys - lo[leaf_ids])
        return np.argsort(packed, kind="stable")
    return np.lexsort((keys, leaf_ids))


def _check_total(total: int, leaf: _Leaf, shards: ScoreShards) -> None:
    if total != leaf.count:
        raise InputError(
            f"counted {total} rows where an earlier pass counted {leaf.count}: the score shards "
            "changed while being read"
        )


def _value(t: Target) -> float:
    assert t.key is not None
    return float(decode(np.array([t.key[0]], dtype=np.uint64))[0])
