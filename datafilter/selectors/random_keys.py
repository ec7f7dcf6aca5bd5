"""Deterministic per-document uniform numbers from (seed, id hash): reruns keep the same docs."""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection of uint64 that scrambles every bit."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def uniform(id_hash: np.ndarray, seed: int) -> np.ndarray:
    """One number in [0, 1) per document, a pure function of its id hash and ``seed``."""
    with np.errstate(over="ignore"):
        key = _mix(np.asarray([seed % (1 << 64)], dtype=np.uint64) * _GOLDEN + _GOLDEN)
        mixed = _mix(np.asarray(id_hash, dtype=np.uint64) ^ key)
    return (mixed >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
