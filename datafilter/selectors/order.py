"""The documents' sort keys, compared row by row: what the selectors' cut-offs are made of.

A document's place in a ranking is its full sort key: a metric (when the ranking is by one),
then ``id_hash``, then its score shard and row, so that the order is total even when ids and
scores repeat. Plans record the key of the document at a cut-off; ``decide`` compares each
row's key with it. Used by ``perplexity_band`` (metric, id_hash, shard, row) and by
``perplexity_correlation`` and its fastText distillation (id_hash, shard, row).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def compare_to_key(scores: dict[str, np.ndarray], metric: str, key: dict[str, Any]) -> np.ndarray:
    """-1, 0 or 1 per row: its sort key (metric, id_hash, score shard, row) against ``key``."""
    parts = (
        (scores[metric], key["value"]),
        (scores["id_hash"], np.uint64(key["id_hash"])),
        (scores["score_file"], key["shard"]),
        (scores["row"], key["row"]),
    )
    result = np.zeros(len(scores[metric]), dtype=np.int8)
    undecided = np.ones(len(result), dtype=bool)
    for mine, theirs in parts:
        less, more = undecided & (mine < theirs), undecided & (mine > theirs)
        result[less], result[more] = -1, 1
        undecided &= ~(less | more)
    return result


def at_or_above(scores: dict[str, np.ndarray], metric: str, key: dict[str, Any]) -> np.ndarray:
    """Rows whose (metric, id_hash, score shard, row) sorts at or after ``key``."""
    return compare_to_key(scores, metric, key) >= 0


def at_or_below(scores: dict[str, np.ndarray], metric: str, key: dict[str, Any]) -> np.ndarray:
    """Rows whose (metric, id_hash, score shard, row) sorts at or before ``key``."""
    return compare_to_key(scores, metric, key) <= 0


def at_or_before(scores: dict[str, np.ndarray], last: dict[str, Any]) -> np.ndarray:
    """Rows whose (id_hash, score shard, row) sorts at or before ``last`` (one key, or one per
    row)."""
    parts = (
        (scores["id_hash"], np.asarray(last["id_hash"], dtype=np.uint64)),
        (scores["score_file"], last["shard"]),
        (scores["row"], last["row"]),
    )
    n = len(scores["row"])
    result = np.ones(n, dtype=bool)
    undecided = np.ones(n, dtype=bool)
    for mine, theirs in parts:
        less, more = undecided & (mine < theirs), undecided & (mine > theirs)
        result[more] = False
        undecided &= ~(less | more)
    return result
