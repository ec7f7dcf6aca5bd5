"""Histograms of a metric per group, streamed in two passes (its range, then its counts).

Memory is a few arrays per group, whatever the number of rows. The bins are those of
``ScoreStats.histogram`` / ``shared_histogram``: ``bins`` equal bins from the smallest to the
largest finite value of the metric (or of its natural log, over positive values), per group or
shared by all groups, a value's bin ``floor((x - lo) / (hi - lo) * bins)`` clipped to the
ends.
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


def _transformed(batch: Batch, metric: str, log: bool) -> tuple[np.ndarray, np.ndarray]:
    """Group codes and values (``ln`` of the positive ones with ``log``) of the valid rows
    whose value is finite."""
    x = batch.columns[metric]
    keep = batch.codes != REJECTED
    null = batch.nulls[metric]
    if null is not None:
        keep &= ~null
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.log(np.where(x > 0, x, np.nan))
    keep &= np.isfinite(x)
    return batch.codes[keep], x[keep]


def histograms(
    shards: ScoreShards,
    groups: GroupCodes,
    metric: str,
    bins: int,
    log: bool,
    shared_edges: bool,
    workers: int,
    batch_rows: int,
    lo: float | None = None,
    hi: float | None = None,
) -> tuple[dict[int, tuple[float, float]], dict[int, np.ndarray]]:
    """Per group code (groups with a finite value): its ``(lo, hi)`` range (one range for
    all with ``shared_edges``; ``lo``/``hi`` where given) and its ``bins`` counts."""

    def scan_range(state: list[np.ndarray], index: int) -> None:
        for batch in read_shard(shards, index, [metric], groups, batch_rows):
            codes, x = _transformed(batch, metric, log)
            if not len(x):
                continue
            n = int(codes.max()) + 1
            if len(state[0]) < n:
                state[0] = np.concatenate([state[0], np.full(n - len(state[0]), np.inf)])
                state[1] = np.concatenate([state[1], np.full(n - len(state[1]), -np.inf)])
            np.minimum.at(state[0], codes, x)
            np.maximum.at(state[1], codes, x)

    n_codes = len(groups.names)
    mins, maxs = np.full(n_codes, np.inf), np.full(n_codes, -np.inf)
    if lo is None or hi is None:
        found = run_workers(len(shards.score_files), scan_range,
                            lambda: [np.zeros(0), np.zeros(0)], workers)
        n_codes = len(groups.names)
        mins, maxs = np.full(n_codes, np.inf), np.full(n_codes, -np.inf)
        for low, high in found:
            mins[: len(low)] = np.minimum(mins[: len(low)], low)
            maxs[: len(high)] = np.maximum(maxs[: len(high)], high)
    if shared_edges:
        seen = np.isfinite(mins)
        mins[:] = lo if lo is not None else (mins[seen].min() if seen.any() else 0.0)
        maxs[:] = hi if hi is not None else (maxs[seen].max() if seen.any() else 1.0)

    def scan_counts(state: list[np.ndarray], index: int) -> None:
        for batch in read_shard(shards, index, [metric], groups, batch_rows):
            codes, x = _transformed(batch, metric, log)
            if not len(x):
                continue
            a, b = mins[codes], maxs[codes]
            with np.errstate(divide="ignore", invalid="ignore"):
                position = np.where(b > a, np.floor((x - a) / (b - a) * bins), 0.0)
            which = np.clip(position, 0, bins - 1).astype(np.int64)
            more = np.bincount(codes.astype(np.int64) * bins + which)
            if len(state[0]) < len(more):
                state[0] = np.concatenate([state[0], np.zeros(len(more) - len(state[0]),
                                                              dtype=np.int64)])
            state[0][: len(more)] += more

    counted = run_workers(len(shards.score_files), scan_counts,
                          lambda: [np.zeros(0, dtype=np.int64)], workers)
    counts = np.zeros(n_codes * bins, dtype=np.int64)
    for (part,) in counted:
        counts[: len(part)] += part[: len(counts)]
    per_group = {
        c: counts[c * bins:(c + 1) * bins] for c in range(1, n_codes)
        if counts[c * bins:(c + 1) * bins].any()
    }
    ranges = {c: (float(mins[c]), float(maxs[c])) for c in per_group}
    return ranges, per_group
