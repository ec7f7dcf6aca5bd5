"""Exact order statistics of score shards in memory that does not grow with the number of rows.

Pass 1 streams the shards once: exact counts per group and, per metric, a histogram over a
grid of key ranges (:mod:`grid`). Every wanted order statistic (a group and a 0-based rank)
then lies in one known cell, with a known number of rows before it. Each further pass streams
the shards again and, for each cell (or finer range) holding a wanted rank, either *collects*
its rows (while they fit the memory budget) and picks the wanted ones by sorting that handful,
or *counts* its rows over finer sub-ranges and, at the same time, counts its distinct words
(which settles a range of a few repeated values, heavy ties, at once), narrowing the range for
the next pass. Ranks of the full sort key (metric, id_hash, score file, row) narrow through the
tie-break words the same way, so documents tied on the metric are ordered as DuckDB's
``ORDER BY metric, id_hash, score_file, row`` orders them.

Typical data takes two or three passes; heavy ties or a misleading pilot sample may take a few
more. The approximate mode stops after pass 1 and reports, per group, a bound on the rank error.
Wanted ranks are kept as arrays (one entry each), so a thousand groups of a hundred
percentiles cost megabytes, not Python objects.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from datafilter.errors import InputError
from datafilter.io.shards import open_parquet
from datafilter.io.storage import location
from datafilter.order_stats.encoding import (
    NULL_KEY,
    decode,
    encode,
    interpolate_many,
)
from datafilter.order_stats.grid import Grid
from datafilter.order_stats.histograms import histograms
from datafilter.order_stats.sample import smallest_hash_sample, smallest_rows
from datafilter.order_stats.scan import (
    REJECTED,
    Batch,
    GroupCodes,
    ScoreShards,
    file_ranks,
    read_shard,
    run_workers,
)
from datafilter.order_stats.tree import (
    WORD_MAX,
    Tree,
    WordSource,
    bit_length,
    word_to_row,
)

COLLECT, COUNT = 0, 1
PACKED_ROW_BYTES = 16  # a collected row of a value rank: (leaf, key) packed in one uint64, and
# its copy while the workers' parts are joined
VALUE_ROW_BYTES = 32  # the same unpacked: leaf id, key, and the sort's order
KEY_ROW_BYTES = 64  # of a full-key rank: leaf id and four words, and the sort's order
DISTINCT_ENTRY_BYTES = 32  # a distinct entry and its count, and merge space
DISTINCT_MIN_ROWS = 1 << 10  # value ranges with fewer rows are only counted over sub-ranges
SAMPLE_ROW_BYTES = 320  # a sampled row: six columns, a buffer of up to as many, sort copies
MIN_SAMPLE = 1000  # rows per group a sample keeps whatever the budget
ID_BITS = 12  # id_hash bits counted with each distinct key of a full-key range
LOCAL_HIST_CELLS = 1 << 22  # sub-range counts up to this size are kept per worker


@dataclass
class PassInfo:
    """What one pass over the shards did (for reports and the benchmark)."""

    seconds: float
    leaves: int = 0
    collected_rows: int = 0
    counted_ranges: int = 0
    settled_by_distinct: int = 0


class _Targets:
    """The wanted ranks of one metric, as arrays: where each one is known to lie, and its key
    once found. Slot ranges: rows of ``group`` whose word ``dim`` is in ``[lo, hi]`` (and whose
    words before ``dim`` are ``fixed``), ``count`` of them, ``below`` rows ordered before."""

    def __init__(self, group: np.ndarray, rank: np.ndarray, full: np.ndarray):
        n = len(group)
        self.group = group.astype(np.int64)
        self.rank = rank.astype(np.int64)
        self.full = full.astype(bool)
        self.slot = np.zeros(n, dtype=np.int64)
        self.below = np.zeros(n, dtype=np.int64)
        self.count = np.zeros(n, dtype=np.int64)
        self.dim = np.zeros(n, dtype=np.int64)
        self.lo = np.zeros(n, dtype=np.uint64)
        self.hi = np.zeros(n, dtype=np.uint64)
        self.fixed = np.zeros((n, 3), dtype=np.uint64)
        self.key = np.zeros((n, 4), dtype=np.uint64)
        self.done = np.zeros(n, dtype=bool)
        self.error = np.zeros(n, dtype=np.int64)  # approximate answers: rank error bound

    def __len__(self) -> int:
        return len(self.group)


@dataclass
class _Leaves:
    """The leaves of one metric in one pass (arrays, one entry per leaf)."""

    slot: np.ndarray
    count: np.ndarray
    dim: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    full: np.ndarray
    members: np.ndarray  # per pending target: its leaf
    pending: np.ndarray  # the targets these leaves hold
    action: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8))
    shift: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    top: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    hist_base: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    hist_size: int = 0
    pack_bits: int = -1  # collected rows of ``packed`` leaves: one uint64, leaf << bits | key - lo
    packed: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    distinct: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    # Distinct (leaf, metric key[, id_hash prefix]) entries, packed in a uint64:
    # ((leaf << distinct_bits | key - lo) << id_bits) | id_hash >> (64 - id_bits).
    distinct_bits: int = -1  # -1: no distinct counting this pass
    id_bits: int = 0

    def __len__(self) -> int:
        return len(self.slot)


class OrderStats:
    """Counts and exact order statistics of valid scored rows, per group, in bounded memory.

    ``metrics``: the score columns to rank by (all read in the same passes).
    ``memory_budget``: bytes for the grid histograms, collected rows and counts of a pass (the
    batches being read take about ``workers * batch_rows * 60`` bytes more).
    ``fused``: whether ``formula='duckdb'`` interpolates with one rounding, as DuckDB's x86-64
    and arm64 wheels do (``datafilter.aggregate.duckdb_fuses_interpolation`` asks DuckDB).
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
        distinct_min_rows: int = DISTINCT_MIN_ROWS,
        fused: bool = True,
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
        self.distinct_min_rows = distinct_min_rows
        self.groups = GroupCodes(shards.all_label, shards.null_label)
        self._file_rank = file_ranks(shards.score_files)
        self.passes: list[PassInfo] = []
        self.last_rank_error: dict[tuple[str, str], int] = {}
        self._pass1_done = False
        self._fused = fused

    # ---------------------------------------------------------------- pass 1 -------------------
    def _ensure_pass1(self) -> None:
        if self._pass1_done:
            return
        t0 = time.perf_counter()
        self.grids = self._pilot()
        grids = self.grids
        n_metrics = len(self.metrics)
        flush_rows = max(1 << 20, max(g.cells for g in grids.values()) * len(self.groups.names))

        def work(state: _Pass1State, index: int) -> None:
            for batch in read_shard(self.shards, index, self.metrics, self.groups,
                                    self.batch_rows):
                state.add(batch, grids)

        shared = _Pass1Shared(self.metrics)
        states = run_workers(
            len(self.shards.score_files), work,
            lambda: _Pass1State(self.metrics, shared, flush_rows // max(1, n_metrics)),
            self.workers,
        )
        for s in states:
            s.flush_all()
        n_codes = len(self.groups.names)
        self._counts = _padded(shared.counts, n_codes)
        self._counts[REJECTED] = 0
        self._nonnull: dict[str, np.ndarray] = {}
        self._root: dict[str, np.ndarray] = {}
        self._trees: dict[str, Tree] = {}
        for m in self.metrics:
            self._nonnull[m] = self._counts - _padded(shared.nulls[m], n_codes)
            self._nonnull[m][REJECTED] = 0
            size = n_codes * grids[m].cells
            self._root[m] = _padded(shared.hist[m], size)
            self._root[m][: grids[m].cells] = 0  # rejected rows
            self._trees[m] = Tree(size)
        self._pass1_done = True
        self.passes.append(PassInfo(time.perf_counter() - t0))
        pa.default_memory_pool().release_unused()

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
            keys = [encode(b.columns[m][b.codes != REJECTED]) for b in batches if len(b)]
            sample = np.concatenate(keys) if keys else np.zeros(0, dtype=np.uint64)
            grids[m] = Grid.from_sample(sample, per_group)
        self.pilot_info = {
            "rows": sum(len(b) for b in batches),
            "shards": len(picks),
            "estimated_rows": est_rows,
            "cells_per_group": {m: g.cells for m, g in grids.items()},
        }
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
        self, qs: Sequence[float], metric: str = "ppl", approx: bool = False,
        formula: str = "duckdb",
    ) -> dict[str, list[float]]:
        """Per group (sorted by name), DuckDB's ``quantile_cont(metric, qs)`` over the group's
        non-null values: bit for bit (exact), or estimated from pass 1 (``approx``; then
        ``last_rank_error[(metric, group)]`` bounds how many ranks off each estimate is).

        ``formula``: ``duckdb`` interpolates between the two order statistics as DuckDB
        does, ``lo * (1 - d) + hi * d`` (see ``encoding.interpolate``); ``numpy`` as
        ``numpy.quantile`` and ``columnar_stats`` do, ``lo + (hi - lo) * d`` (1 ulp apart at
        times)."""
        return self.quantiles_many({metric: qs}, approx, formula)[metric]

    def quantiles_many(
        self, wanted: Mapping[str, Sequence[float]], approx: bool = False,
        formula: str = "duckdb",
    ) -> dict[str, dict[str, list[float]]]:
        """``quantiles`` of several metrics, found in the same passes."""
        if formula not in ("duckdb", "numpy"):
            raise ValueError(f"formula must be 'duckdb' or 'numpy', not {formula!r}")
        self._ensure_pass1()
        codes = np.array(self._sorted_codes(), dtype=np.int64)
        plans = {}
        targets = {}
        for metric, qs in wanted.items():
            metric = self._metric(metric)
            n = self._nonnull[metric][codes]
            present = codes[n > 0]
            n = n[n > 0]
            q = np.asarray([float(x) for x in qs], dtype=np.float64)
            if ((q < 0) | (q > 1)).any():
                raise ValueError("quantiles must lie between 0 and 1")
            rn = (n[:, None] - 1).astype(np.float64) * q[None, :]  # DuckDB: (n - 1) * q
            lo = np.floor(rn).astype(np.int64)
            hi = np.ceil(rn).astype(np.int64)
            plans[metric] = (present, lo, hi, rn - lo)
            group = np.repeat(present, 2 * len(q))
            rank = np.stack([lo, hi], axis=2).reshape(-1)
            pairs = np.unique(np.stack([group, rank], axis=1), axis=0)
            targets[metric] = _Targets(pairs[:, 0], pairs[:, 1], np.zeros(len(pairs), bool))
        self._resolve(targets, approx)
        out: dict[str, dict[str, list[float]]] = {}
        self.last_rank_error = {}
        for metric, (present, lo, hi, d) in plans.items():
            t = targets[metric]
            packed = (t.group << 40) | t.rank  # sorted: the targets came from np.unique
            groups = present[:, None]
            ia = np.searchsorted(packed, (groups << 40) | lo)
            ib = np.searchsorted(packed, (groups << 40) | hi)
            values = decode(t.key[:, 0])
            a, b = values[ia], values[ib]
            if formula == "numpy":
                with np.errstate(invalid="ignore"):
                    result = np.where(lo == hi, a, a + (b - a) * d)
            else:
                result = interpolate_many(a.ravel(), b.ravel(), d.ravel(), (lo == hi).ravel(),
                                          self._fused).reshape(lo.shape)
            names = [self.groups.names[c] for c in present.tolist()]
            out[metric] = dict(zip(names, result.tolist(), strict=True))
            if approx:
                err = np.maximum(t.error[ia], t.error[ib]).max(axis=1)
                for name, e in zip(names, err.tolist(), strict=True):
                    self.last_rank_error[(metric, name)] = int(e)
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
        groups, ranks, names = [], [], []
        for group, rs in wanted.items():
            code = code_of.get(group, -1)
            n = 0 if code < 0 else int(self._counts[code])
            for r in rs:
                if not 0 <= r < n:
                    raise ValueError(f"rank {r} is outside group {group!r} of {n} rows")
                groups.append(code)
                ranks.append(int(r))
                names.append(group)
        t = _Targets(np.array(groups, np.int64), np.array(ranks, np.int64),
                     np.ones(len(groups), bool))
        self._resolve({metric: t}, approx=False)
        files = self.shards.score_files
        by_rank = {int(self._file_rank[i]): str(files[i]) for i in range(len(files))}
        values = decode(t.key[:, 0])
        return {
            (names[i], ranks[i]): (
                float(values[i]),
                int(t.key[i, 1]),
                by_rank[int(t.key[i, 2])],
                word_to_row(int(t.key[i, 3])),
            )
            for i in range(len(t))
        }

    def histogram(
        self, metric: str = "ppl", bins: int = 100, log: bool = True
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per group: ``bins + 1`` edges from the smallest to the largest finite value of the
        metric (of its natural log, over positive values, with ``log``) and the counts
        (``ScoreStats.histogram``'s bins), in two streaming passes."""
        ranges, counts = histograms(self.shards, self.groups, metric, bins, log, False,
                                    self.workers, self.batch_rows)
        names = self.groups.names
        return {
            names[c]: (np.linspace(*ranges[c], bins + 1), counts[c])
            for c in sorted(counts, key=names.__getitem__)
        }

    def shared_histogram(
        self, metric: str = "ppl", bins: int = 60, log: bool = True,
        lo: float | None = None, hi: float | None = None,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``bins + 1`` edges shared by all groups (from ``lo`` to ``hi``, else the smallest to
        the largest finite value; values outside fall in the end bins) and each group's counts
        (``ScoreStats.shared_histogram``'s bins)."""
        ranges, counts = histograms(self.shards, self.groups, metric, bins, log, True,
                                    self.workers, self.batch_rows, lo, hi)
        if not counts:
            return np.linspace(0.0, 1.0, bins + 1), {}
        names = self.groups.names
        edges = np.linspace(*next(iter(ranges.values())), bins + 1)
        return edges, {names[c]: counts[c] for c in sorted(counts, key=names.__getitem__)}

    def sample_size(self, n: int) -> int:
        """Rows per group a sample of ``n`` per group takes: fewer when every group's ``n``
        would not fit the memory budget (at least ``MIN_SAMPLE`` a group)."""
        self._ensure_pass1()
        groups = max(1, int(np.count_nonzero(self._counts)))
        return min(n, max(MIN_SAMPLE, self.memory_budget // SAMPLE_ROW_BYTES // groups))

    def sample(self, metric: str, n: int) -> dict[str, np.ndarray]:
        """Per group (sorted by name): ``metric`` of up to ``sample_size(n)`` valid rows, a
        fixed pseudo-random subset (smallest id hashes; ties by score file and row), in one
        pass."""
        got = smallest_hash_sample(self.shards, self.groups, metric, self.sample_size(n),
                                   self._file_rank, self.workers, self.batch_rows)
        names = self.groups.names
        return {names[c]: got[c] for c in sorted(got, key=names.__getitem__)}

    def nearest(
        self, metric: str, values: Mapping[str, float], k: int
    ) -> dict[str, list[tuple[str, int, float]]]:
        """Per group of ``values`` (sorted by name): the score file, row and ``metric`` of its
        ``k`` valid rows nearest that group's value, ordered by (distance, id_hash, score
        file, row), in one pass."""
        codes = {name: self.groups.code(name) for name in values}
        targets = np.full(max(codes.values(), default=0) + 1, np.nan)
        for name, code in codes.items():
            targets[code] = float(values[name])
        got = smallest_rows(self.shards, self.groups, metric, k, self._file_rank, self.workers,
                            self.batch_rows, targets)
        files = self.shards.score_files
        by_rank = {int(self._file_rank[i]): str(files[i]) for i in range(len(files))}
        out = {}
        for name in sorted(values):
            f, r, v = got.get(codes[name], (np.zeros(0), np.zeros(0), np.zeros(0)))
            if len(v):
                out[name] = [(by_rank[int(a)], int(b), float(c))
                             for a, b, c in zip(f.tolist(), r.tolist(), v.tolist(), strict=True)]
        return out

    # ---------------------------------------------------------------- resolution ----------------
    def _resolve(self, targets: dict[str, _Targets], approx: bool) -> None:
        """Find every target's key: place it in its grid cell, then pass until all are known."""
        for metric, t in targets.items():
            self._place_in_grid(t, metric)
        if approx:
            for metric, t in targets.items():
                self._estimate(t, metric)
            return
        while True:
            plans = {m: lv for m, t in targets.items() if (lv := self._leaves(t)) is not None}
            if not plans:
                return
            self._budget(plans)
            self._pass(targets, plans)

    def _place_in_grid(self, t: _Targets, metric: str) -> None:
        grid, root = self.grids[metric], self._root[metric]
        if not len(t):
            return
        cells = grid.cells
        # Cumulative counts within each group's cells, searched for each rank at once.
        cum = np.cumsum(root)
        group_start = t.group * cells
        before_group = np.where(group_start > 0, cum[np.maximum(group_start - 1, 0)], 0)
        at = np.searchsorted(cum, before_group + t.rank, side="right")
        t.slot = at
        t.below = np.where(at > group_start, cum[at - 1] - before_group, 0)
        t.count = root[at]
        t.dim[:] = 0
        i = (at - group_start).astype(np.uint64)
        shift = np.uint64(grid.shift)
        t.lo = np.where(i == 0, np.uint64(0), np.uint64(grid.lo) + (i << shift))
        t.hi = np.where(
            i == grid.cells - 1,
            np.uint64(WORD_MAX),
            np.uint64(grid.lo) + ((i + np.uint64(1)) << shift) - np.uint64(1),
        )
        t.done[:] = False

    def _estimate(self, t: _Targets, metric: str) -> None:
        """An approximate key for each value rank from its grid cell: interpolated in key
        space (about a log scale; the end cells clipped to the grid's range); its rank is off
        by less than the cell's count."""
        grid = self.grids[metric]
        top = grid.lo + (grid.cells << grid.shift) - 1
        lo = np.maximum(t.lo, np.uint64(grid.lo)).astype(np.float64)
        hi = np.maximum(np.minimum(t.hi, np.uint64(min(top, WORD_MAX))).astype(np.float64), lo)
        frac = (t.rank - t.below + 0.5) / np.maximum(t.count, 1)
        t.key[:, 0] = np.minimum(lo + (hi - lo) * frac, hi).astype(np.uint64)
        t.error = t.count.copy()
        t.done[:] = True

    def _leaves(self, t: _Targets) -> _Leaves | None:
        """Settle the targets that need no pass; group the others by slot into leaves."""
        pending = ~t.done
        one_value = pending & ~t.full & (t.dim == 0) & (t.lo == t.hi)
        t.key[one_value, 0] = t.lo[one_value]  # the range is one metric value
        one_key = pending & t.full & (t.dim == 3) & (t.lo == t.hi)
        t.key[one_key, :3] = t.fixed[one_key]  # every row of the range has the same full key
        t.key[one_key, 3] = t.lo[one_key]
        t.done |= one_value | one_key
        idx = np.flatnonzero(~t.done)
        if not len(idx):
            return None
        slots, first, members = np.unique(t.slot[idx], return_index=True, return_inverse=True)
        rep = idx[first]
        full = np.bincount(members, weights=t.full[idx], minlength=len(slots)) > 0
        return _Leaves(slots, t.count[rep], t.dim[rep].copy(), t.lo[rep].copy(),
                       t.hi[rep].copy(), full, members, idx)

    def _budget(self, plans: dict[str, _Leaves]) -> None:
        """Collect the smallest leaves while their rows fit half the budget; count the others
        over sub-ranges (and their distinct metric words) for the next pass."""
        costs, owners = [], []
        for lv in plans.values():
            self._choose_packing(lv)
            per_row = np.where(lv.full, KEY_ROW_BYTES,
                               np.where(lv.packed, PACKED_ROW_BYTES, VALUE_ROW_BYTES))
            costs.append(lv.count * per_row)
            owners.append(np.full(len(lv), len(owners)))
        cost = np.concatenate(costs)
        owner = np.concatenate(owners)
        order = np.argsort(cost, kind="stable")
        fits = np.cumsum(cost[order]) <= self.memory_budget // 2
        collect = np.zeros(len(cost), dtype=bool)
        collect[order[fits]] = True
        n_count = int((~collect).sum())
        # Sub-ranges per counted leaf: enough that the next pass can collect what the wanted
        # ranks' sub-ranges hold (if the rows spread), within the budget's quarter for counts.
        rows_after = float((cost[~collect] / 16).sum())  # about the rows they hold
        need = max(1.0, rows_after * 2 / max(1, self.memory_budget // 2 // PACKED_ROW_BYTES))
        cells_budget = self.memory_budget // 4 // 8
        most = np.log2(max(2, cells_budget // max(1, n_count)))
        per_leaf_bits = int(max(4, min(16, most, np.ceil(np.log2(need)) + 2)))
        for k, lv in enumerate(plans.values()):
            mine = collect[owner == k]
            lv.action = np.where(mine, COLLECT, COUNT).astype(np.int8)
            self._count_plan(lv, per_leaf_bits)

    def _choose_packing(self, lv: _Leaves) -> None:
        """Rows of a value leaf pack into one uint64 (leaf id, then the key's offset in the
        leaf's range) where both fit: every leaf but the widest ones (the grid's end cells)."""
        width = bit_length(lv.hi - lv.lo).astype(np.int64)
        limit = 64 - max(1, int(len(lv) - 1).bit_length())
        fits = ~lv.full & (width <= limit)
        lv.pack_bits = int(width[fits].max()) if fits.any() else -1
        lv.packed = fits

    def _count_plan(self, lv: _Leaves, per_leaf_bits: int) -> None:
        """Sub-ranges for the counted leaves: a leaf of one word value moves on to the next
        word; each range splits into at most 2**per_leaf_bits equal power-of-two parts."""
        count = lv.action == COUNT
        one = count & (lv.lo == lv.hi)
        lv.dim = lv.dim + one.astype(np.int64)
        n_files = np.uint64(len(self.shards.score_files) - 1)
        lv.lo = np.where(one, np.uint64(0), lv.lo)
        lv.hi = np.where(one, np.where(lv.dim == 2, n_files, np.uint64(WORD_MAX)), lv.hi)
        span = lv.hi - lv.lo
        shift = np.maximum(bit_length(span).astype(np.int64) - per_leaf_bits, 0).astype(
            np.uint64)
        top = np.where(count, span >> shift, np.uint64(0))
        sizes = np.where(count, top.astype(np.int64) + 1, 0)
        lv.shift, lv.top = shift, top
        lv.hist_base = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        lv.hist_size = int(sizes.sum())
        # Distinct metric keys of the large counted ranges (a heavy tie is one key: counting
        # sub-ranges would take a pass per few bits), and of every full-key range, with the
        # top bits of the id hash there (rows tied on the key are ordered by it next).
        lv.distinct = count & (lv.dim == 0) & (lv.full | (lv.count >= self.distinct_min_rows))
        lv.distinct_bits, lv.id_bits = -1, 0
        if lv.distinct.any():
            width = int(bit_length(span[lv.distinct]).max())
            leaf_bits = max(1, int(len(lv) - 1).bit_length())
            if leaf_bits + width <= 64:
                lv.distinct_bits = width
                n_full = int((lv.distinct & lv.full).sum())
                if n_full:
                    # About 32 distinct keys per range, each split 2**id_bits ways, within
                    # the cap on distinct entries.
                    room = self._distinct_cap() // (n_full * 32)
                    wanted = max(0, min(ID_BITS, room.bit_length() - 1))
                    lv.id_bits = max(0, min(wanted, 64 - leaf_bits - width))
            else:
                lv.distinct[:] = False

    def _distinct_cap(self) -> int:
        """Distinct entries one worker keeps per metric (an eighth of the budget in all)."""
        return max(1 << 12, self.memory_budget // 8 // DISTINCT_ENTRY_BYTES // (self.workers + 1))

    def _pass(self, targets: dict[str, _Targets], plans: dict[str, _Leaves]) -> None:
        """Stream the shards once for the leaves; then settle or narrow their targets."""
        t0 = time.perf_counter()
        for metric, lv in plans.items():
            tree = self._trees[metric]
            tree.reset_leaves()
            tree.slot_to[lv.slot] = np.arange(len(lv))
            tree.mark_needed_cells()
        need_keys = any(lv.full.any() or (lv.dim > 0).any() for lv in plans.values())
        columns = [*plans, *(["id_hash", "row"] if need_keys else [])]
        shared = _PassShared(plans, self._distinct_cap())

        def work(state: _PassState, index: int) -> None:
            for batch in read_shard(self.shards, index, columns, self.groups, self.batch_rows):
                if len(self.groups.names) > len(self._counts):
                    raise InputError(
                        "has groups it did not have in the first pass: the score shards "
                        "changed while being read",
                        path=str(self.shards.score_files[index]),
                    )
                for metric in plans:
                    state.add(metric, batch, self, int(self._file_rank[index]))

        states = run_workers(len(self.shards.score_files), work,
                             lambda: _PassState(plans, shared), self.workers)
        info = PassInfo(0.0, leaves=sum(len(lv) for lv in plans.values()))
        for metric, lv in plans.items():
            merged = _merge(metric, states, shared, lv)
            info.collected_rows += merged.n_collected
            info.counted_ranges += int((lv.action == COUNT).sum())
            info.settled_by_distinct += self._settle(metric, targets[metric], lv, merged)
            self._trees[metric].reset_leaves()
        info.seconds = time.perf_counter() - t0
        self.passes.append(info)
        pa.default_memory_pool().release_unused()

    def _settle(self, metric: str, t: _Targets, lv: _Leaves, merged: _Merged) -> int:
        """Read the collected targets off their sorted rows; narrow the counted ones."""
        member = np.full(len(t), -1, dtype=np.int64)
        member[lv.pending] = lv.members
        mine = member >= 0
        collect = mine & (lv.action[np.maximum(member, 0)] == COLLECT)
        if collect.any():
            _pick_collected(t, np.flatnonzero(collect), member, lv, merged)
        counted = np.flatnonzero(mine & ~collect)
        if not len(counted):
            return 0
        leaf = member[counted]
        # Leaves whose distinct words were all counted: settle from those counts.
        by_distinct = np.zeros(len(counted), dtype=bool)
        settled = 0
        if merged.distinct is not None:
            ok = merged.distinct_ok[leaf]
            by_distinct = ok
            if ok.any():
                settled = self._settle_distinct(metric, t, counted[ok], leaf[ok], lv, merged)
        rest = counted[~by_distinct]
        if len(rest):
            self._settle_counted(metric, t, rest, member[rest], lv, merged.hist)
        return settled

    def _settle_counted(self, metric: str, t: _Targets, idx: np.ndarray, leaf: np.ndarray,
                        lv: _Leaves, hist: np.ndarray) -> None:
        tree = self._trees[metric]
        leaves = np.unique(leaf)
        for i in leaves.tolist():
            total = int(hist[lv.hist_base[i]: lv.hist_base[i] + int(lv.top[i]) + 1].sum())
            _check_total(total, int(lv.count[i]))
        bases = tree.add_bucket_nodes(lv.slot[leaves], lv.dim[leaves], lv.lo[leaves],
                                      lv.shift[leaves], lv.top[leaves])
        node_base = np.zeros(len(lv), dtype=np.int64)
        node_base[leaves] = bases
        cum = np.cumsum(hist)
        start = lv.hist_base[leaf]
        before = np.where(start > 0, cum[np.maximum(start - 1, 0)], 0)
        at = np.searchsorted(cum, before + (t.rank[idx] - t.below[idx]), side="right")
        j = (at - start).astype(np.uint64)
        moved = t.dim[idx] != lv.dim[leaf]  # a one-value range moved on to the next word
        if moved.any():
            m = idx[moved]
            t.fixed[m, t.dim[m]] = t.lo[m]
        shift = lv.shift[leaf]
        lo = lv.lo[leaf]
        span = lv.hi[leaf] - lo
        t.slot[idx] = node_base[leaf] + j.astype(np.int64)
        t.below[idx] += np.where(at > start, cum[at - 1] - before, 0)
        t.count[idx] = hist[at]
        t.dim[idx] = lv.dim[leaf]
        t.lo[idx] = lo + (j << shift)
        end = ((j + np.uint64(1)) << shift) - np.uint64(1)  # wraps to WORD_MAX at the top
        t.hi[idx] = lo + np.minimum(span, end)

    def _settle_distinct(self, metric: str, t: _Targets, idx: np.ndarray, leaf: np.ndarray,
                         lv: _Leaves, merged: _Merged) -> int:
        """From the leaves' distinct (key, id prefix) counts: value ranks are read off; a
        full-key rank goes on among the rows of its key and id prefix."""
        entries, counts = merged.distinct  # sorted: by leaf, key, id prefix
        id_bits = np.uint64(lv.id_bits)
        width = np.uint64(lv.distinct_bits)
        inner = entries >> id_bits
        entry_leaf = (inner >> width).astype(np.int64)
        words = (inner & ((np.uint64(1) << width) - np.uint64(1))) + lv.lo[entry_leaf]
        prefix = entries & ((np.uint64(1) << id_bits) - np.uint64(1))
        cum = np.cumsum(counts)
        first_entry = np.searchsorted(entry_leaf, leaf, side="left")
        before = np.where(first_entry > 0, cum[np.maximum(first_entry - 1, 0)], 0)
        for i in np.unique(leaf).tolist():
            s, e = np.searchsorted(entry_leaf, [i, i + 1])
            _check_total(int(counts[s:e].sum()), int(lv.count[i]))
        at = np.searchsorted(cum, before + (t.rank[idx] - t.below[idx]), side="right")
        values = ~t.full[idx]
        t.key[idx[values], 0] = words[at[values]]
        t.done[idx[values]] = True
        full = np.flatnonzero(~values)
        if not len(full):
            return int(len(np.unique(leaf)))
        tree = self._trees[metric]
        k, a = idx[full], at[full]
        t.below[k] += np.where(a > first_entry[full], cum[np.maximum(a - 1, 0)] - before[full],
                               0)
        t.count[k] = counts[a]
        value_slots = np.zeros(len(full), dtype=np.int64)
        for i in np.unique(leaf[full]).tolist():
            here = np.flatnonzero(leaf[full] == i)
            chosen = np.unique(words[a[here]])
            base = tree.add_values_node(int(lv.slot[i]), 0, chosen)
            value_slots[here] = base + np.searchsorted(chosen, words[a[here]])
        t.fixed[k, 0] = words[a]
        if lv.id_bits:
            # Each chosen key's slot splits over the id hash's top bits.
            slots, where = np.unique(value_slots, return_inverse=True)
            shift = np.uint64(64 - lv.id_bits)
            top = (np.uint64(1) << id_bits) - np.uint64(1)
            bases = tree.add_bucket_nodes(
                slots, np.ones(len(slots), np.int64), np.zeros(len(slots), np.uint64),
                np.full(len(slots), shift, np.uint64), np.full(len(slots), top, np.uint64))
            p = prefix[a]
            t.slot[k] = bases[where] + p.astype(np.int64)
            t.dim[k] = 1
            t.lo[k] = p << shift
            t.hi[k] = (p << shift) | ((np.uint64(1) << shift) - np.uint64(1))
        else:
            t.slot[k] = value_slots
            t.dim[k] = 0
            t.lo[k] = t.hi[k] = words[a]
        return int(len(np.unique(leaf)))


# -------------------------------------------------------------------- pass 1 state --------------
class _Pass1Shared:
    """Totals of pass 1, added to by every worker under a lock."""

    def __init__(self, metrics: list[str]):
        self.lock = threading.Lock()
        self.counts = np.zeros(0, dtype=np.int64)
        self.nulls = {m: np.zeros(0, dtype=np.int64) for m in metrics}
        self.hist = {m: np.zeros(0, dtype=np.int64) for m in metrics}


class _Pass1State:
    """One worker's pending grid cells (counted in large runs: a count over many cells costs
    a pass over them all) and counts."""

    def __init__(self, metrics: list[str], shared: _Pass1Shared, flush_rows: int):
        self.shared = shared
        self.flush_rows = flush_rows
        self._pending: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
        self._pending_rows = dict.fromkeys(metrics, 0)

    def add(self, batch: Batch, grids: dict[str, Grid]) -> None:
        codes = batch.codes
        counts = np.bincount(codes)
        nulls = {}
        code64 = codes.astype(np.int64)
        for m, grid in grids.items():
            cells = grid.cells_of(batch.columns[m], code64 * grid.cells)
            self._pending[m].append(cells)
            self._pending_rows[m] += len(cells)
            null = batch.nulls[m]
            if null is not None:
                nulls[m] = np.bincount(codes[null])
        with self.shared.lock:
            self.shared.counts = _add_counts(self.shared.counts, counts)
            for m, more in nulls.items():
                self.shared.nulls[m] = _add_counts(self.shared.nulls[m], more)
        for m in grids:
            if self._pending_rows[m] >= self.flush_rows:
                self.flush(m)

    def flush(self, m: str) -> None:
        if not self._pending[m]:
            return
        cells = np.concatenate(self._pending[m])
        self._pending[m], self._pending_rows[m] = [], 0
        counted = np.bincount(cells)
        with self.shared.lock:
            self.shared.hist[m] = _add_counts(self.shared.hist[m], counted)

    def flush_all(self) -> None:
        for m in self._pending:
            self.flush(m)


def _add_counts(total: np.ndarray, more: np.ndarray) -> np.ndarray:
    if len(more) > len(total):
        grown = np.zeros(len(more), dtype=np.int64)
        grown[: len(total)] = total
        total = grown
    total[: len(more)] += more
    return total


def _padded(a: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros(size, dtype=np.int64)
    out[: min(size, len(a))] = a[:size]
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
    """Grid cells per metric: up to 16,384 per group (at least 2**16 in all), and no more than
    one per 8 rows, within half the budget: pass 1 holds, per metric, the shared histogram
    and each worker's pending cell numbers and their count (8 bytes a cell each). Only the
    shared histogram outlives pass 1."""
    budget_cells = budget // 2 // (8 * (1 + 2 * workers) * max(1, n_metrics))
    cells = max(1 << 16, n_groups << 14)
    return max(1 << 10, min(cells, budget_cells, est_rows // 8))


# -------------------------------------------------------------------- later passes --------------
class _PassShared:
    """A later pass's shared totals: counts of sub-ranges (added under a lock) and which
    leaves' distinct entries overflowed (they are counted anyway)."""

    def __init__(self, plans: dict[str, _Leaves], distinct_cap: int):
        self.lock = threading.Lock()
        self.hist = {m: np.zeros(lv.hist_size if lv.hist_size > LOCAL_HIST_CELLS else 0,
                                 dtype=np.int64) for m, lv in plans.items()}
        self.dropped = {m: np.zeros(len(lv), dtype=bool) for m, lv in plans.items()}
        self.cap = distinct_cap  # distinct entries one worker keeps per metric


class _Distinct:
    """One worker's distinct entries of one metric and their counts: a sorted set updated in
    place, and new entries merged in when they add up."""

    def __init__(self) -> None:
        self.values = np.zeros(0, dtype=np.uint64)
        self.counts = np.zeros(0, dtype=np.int64)
        self.new: list[tuple[np.ndarray, np.ndarray]] = []
        self.n_new = 0

    def add(self, values: np.ndarray, counts: np.ndarray) -> None:
        if len(self.values):
            at = np.minimum(np.searchsorted(self.values, values), len(self.values) - 1)
            found = self.values[at] == values
            self.counts[at[found]] += counts[found]
            values, counts = values[~found], counts[~found]
        if len(values):
            self.new.append((values, counts))
            self.n_new += len(values)
            if self.n_new > max(1 << 16, len(self.values) // 2):
                self.merge()

    def merge(self) -> None:
        if self.new:
            self.values, self.counts = _merge_sorted_counts(
                [(self.values, self.counts), *self.new])
            self.new, self.n_new = [], 0

    def size(self) -> int:
        return len(self.values) + self.n_new

    def drop(self, keep: np.ndarray) -> None:
        self.merge()
        self.values, self.counts = self.values[keep], self.counts[keep]


class _PassState:
    """One worker's share of a later pass: collected rows (kept per worker) and pending counts."""

    def __init__(self, plans: dict[str, _Leaves], shared: _PassShared):
        self.plans = plans
        self.shared = shared
        # Per metric: packed rows; (leaf, key) rows; (leaf, four words) rows.
        self.collect: dict[str, tuple[list, list, list]] = {m: ([], [], []) for m in plans}
        self.distinct = {m: _Distinct() for m in plans}
        # Small counts are kept per worker (no lock); large ones shared, added under a lock.
        self.hist = {m: np.zeros(lv.hist_size if lv.hist_size <= LOCAL_HIST_CELLS else 0,
                                 dtype=np.int64) for m, lv in plans.items()}

    def add(self, metric: str, batch: Batch, owner: OrderStats, file_rank: int) -> None:
        grid, tree, lv = owner.grids[metric], owner._trees[metric], self.plans[metric]
        values = batch.columns[metric]
        cells = grid.cells_of(values, batch.codes.astype(np.int64) * grid.cells)
        rows = np.flatnonzero(tree.needed_cells[cells])
        if not len(rows):
            return
        ref = tree.slot_to[cells[rows]]
        keys = encode(values[rows])
        null = batch.nulls[metric]
        if null is not None:
            keys[null[rows]] = NULL_KEY
        words = WordSource(keys, rows, batch.columns.get("id_hash"), file_rank,
                           batch.columns.get("row"))
        pos, leaf = tree.route(ref, words)
        if not len(pos):
            return
        action = lv.action[leaf]
        take = action == COLLECT
        if take.any():
            p, lf = pos[take], leaf[take]
            k0 = words.get(0, p)
            packed = lv.packed[lf]
            full = lv.full[lf]
            rest = ~packed & ~full
            if packed.any():
                offset = k0[packed] - lv.lo[lf[packed]]
                self.collect[metric][0].append(
                    (lf[packed].astype(np.uint64) << np.uint64(lv.pack_bits)) | offset
                )
            if rest.any():
                self.collect[metric][1].append((lf[rest], k0[rest]))
            if full.any():
                pf = p[full]
                self.collect[metric][2].append(
                    (lf[full], k0[full], words.get(1, pf), words.get(2, pf), words.get(3, pf))
                )
        count = np.flatnonzero(~take)
        if len(count):
            self._count(metric, pos[count], leaf[count], words, lv)

    def _count(self, metric: str, pos: np.ndarray, leaf: np.ndarray, words: WordSource,
               lv: _Leaves) -> None:
        slots = np.empty(len(pos), dtype=np.int64)
        dims = lv.dim[leaf]
        for dim in np.unique(dims).tolist():
            here = np.flatnonzero(dims == dim)
            lf = leaf[here]
            offset = words.get(dim, pos[here]) - lv.lo[lf]
            sub = np.minimum(offset >> lv.shift[lf], lv.top[lf]).astype(np.int64)
            slots[here] = lv.hist_base[lf] + sub
            if dim == 0 and lv.distinct_bits >= 0:
                keep = lv.distinct[lf] & ~self.shared.dropped[metric][lf]
                if keep.any():
                    self._add_distinct(metric, lf[keep], offset[keep], pos[here[keep]],
                                       words, lv)
        local = self.hist[metric]
        if len(local):
            if len(slots) * 8 > len(local):
                local += np.bincount(slots, minlength=len(local))
            else:
                np.add.at(local, slots, 1)
            return
        hist = self.shared.hist[metric]
        with self.shared.lock:
            np.add.at(hist, slots, 1)

    def _add_distinct(self, metric: str, leaf: np.ndarray, offset: np.ndarray, pos: np.ndarray,
                      words: WordSource, lv: _Leaves) -> None:
        """Count this batch's distinct entries; past the cap, drop the leaves with the most
        entries (their sub-ranges are counted anyway)."""
        entry = (leaf.astype(np.uint64) << np.uint64(lv.distinct_bits)) | offset
        if lv.id_bits:
            top = words.get(1, pos) >> np.uint64(64 - lv.id_bits)
            entry = (entry << np.uint64(lv.id_bits)) | np.where(lv.full[leaf], top,
                                                                 np.uint64(0))
        values, counts = np.unique(entry, return_counts=True)
        store = self.distinct[metric]
        store.add(values, counts.astype(np.int64))
        if store.size() > self.shared.cap:
            store.merge()
            shift = np.uint64(lv.distinct_bits + lv.id_bits)
            entry_leaf = (store.values >> shift).astype(np.int64)
            per_leaf = np.bincount(entry_leaf, minlength=len(lv))
            dropped = self.shared.dropped[metric]
            while per_leaf.sum() > self.shared.cap // 2:
                worst = int(np.argmax(per_leaf))
                dropped[worst] = True  # seen by every worker (a benign race: counted anyway)
                per_leaf[worst] = 0
            store.drop(~dropped[entry_leaf])


def _merge_sorted_counts(parts: list[tuple[np.ndarray, np.ndarray]]):
    """Sorted distinct values of several (values, counts) parts, with summed counts."""
    values = np.concatenate([v for v, _ in parts])
    counts = np.concatenate([c for _, c in parts])
    order = np.argsort(values, kind="stable")
    values, counts = values[order], counts[order]
    if not len(values):
        return values, counts
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    return values[starts], np.add.reduceat(counts, starts)


@dataclass
class _Merged:
    hist: np.ndarray
    packed: np.ndarray  # collected rows of packed leaves
    pairs: list[np.ndarray]  # leaf, key of the other value leaves
    full: list[np.ndarray]  # leaf and four words of full-key leaves
    n_collected: int
    distinct: tuple[np.ndarray, np.ndarray] | None
    distinct_ok: np.ndarray  # per leaf: its distinct words are complete


def _merge(metric: str, states: list[_PassState], shared: _PassShared, lv: _Leaves) -> _Merged:
    lists = [s.collect[metric] for s in states]
    for state in states:
        state.collect[metric] = ([], [], [])

    def join(which: int, width: int) -> list[np.ndarray]:
        parts = [p for ls in lists for p in ls[which]]
        out = [
            np.concatenate([p[i] for p in parts]) if parts else np.zeros(0, np.uint64)
            for i in range(width)
        ]
        for ls in lists:
            ls[which].clear()
        return out

    packed = [p for ls in lists for p in ls[0]]
    packed_rows = np.concatenate(packed) if packed else np.zeros(0, np.uint64)
    for ls in lists:
        ls[0].clear()
    del packed
    pairs, full = join(1, 2), join(2, 5)
    n = len(packed_rows) + len(pairs[0]) + len(full[0])
    hist = shared.hist[metric]
    if not len(hist):
        hist = np.zeros(lv.hist_size, dtype=np.int64)
        for state in states:
            hist += state.hist[metric]
            state.hist[metric] = np.zeros(0, dtype=np.int64)
    ok = lv.distinct & ~shared.dropped[metric]
    distinct = None
    if ok.any():
        for state in states:
            state.distinct[metric].merge()
        distinct = _merge_sorted_counts(
            [(s.distinct[metric].values, s.distinct[metric].counts) for s in states])
        shift = np.uint64(lv.distinct_bits + lv.id_bits)
        distinct_leaf = (distinct[0] >> shift).astype(np.int64)
        keep = ok[distinct_leaf]
        distinct = (distinct[0][keep], distinct[1][keep])
    for state in states:
        state.distinct[metric] = _Distinct()
    return _Merged(hist, packed_rows, pairs, full, n, distinct, ok)


def _pick_collected(t: _Targets, idx: np.ndarray, member: np.ndarray, lv: _Leaves,
                    merged: _Merged) -> None:
    """Sort the collected rows by (leaf, full key) and read each target off its leaf's run."""
    n_leaves = len(lv)
    leaf = member[idx]
    offset = t.rank[idx] - t.below[idx]
    packed = lv.packed[leaf]
    if packed.any():
        rows = merged.packed
        rows.sort()  # in place: (leaf, key) order
        bits = np.uint64(lv.pack_bits)
        start = np.searchsorted(rows, np.arange(n_leaves + 1, dtype=np.uint64) << bits)
        _check_counts(np.diff(start), lv, leaf[packed])
        mask = (np.uint64(1) << bits) - np.uint64(1)
        lf = leaf[packed]
        t.key[idx[packed], 0] = (rows[start[lf] + offset[packed]] & mask) + lv.lo[lf]
    for cols, mine in ((merged.pairs, ~packed & ~lv.full[leaf]), (merged.full, lv.full[leaf])):
        if not mine.any():
            continue
        leaf_ids = cols[0].astype(np.int64)
        order = np.lexsort((*cols[:0:-1], leaf_ids))  # leaf, then the words in order
        got = np.bincount(leaf_ids, minlength=n_leaves)
        _check_counts(got, lv, leaf[mine])
        start = np.concatenate([[0], np.cumsum(got)[:-1]])
        at = order[start[leaf[mine]] + offset[mine]]
        for w, column in enumerate(cols[1:]):
            t.key[idx[mine], w] = column[at]
    t.done[idx] = True


def _check_counts(got: np.ndarray, lv: _Leaves, leaf: np.ndarray) -> None:
    leaves = np.unique(leaf)
    bad = got[leaves] != lv.count[leaves]
    if bad.any():
        i = leaves[np.argmax(bad)]
        _check_total(int(got[i]), int(lv.count[i]))


def _check_total(total: int, expected: int) -> None:
    if total != expected:
        raise InputError(
            f"counted {total} rows where an earlier pass counted {expected}: the score shards "
            "changed while being read"
        )

