"""Split a histogram into two modes at its valley (Otsu's method) and say how clear the split is."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class TwoModes:
    """The cut between two modes of a histogram and a summary of each side."""

    cut: float
    low_mass: float
    high_mass: float
    low_mean: float
    high_mean: float
    low_std: float
    high_std: float
    separation: float  # Ashman's D: above 2 means the modes are cleanly apart

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def ashman_d(mean_a: float, std_a: float, mean_b: float, std_b: float) -> float:
    """Ashman's D = sqrt(2) |mean_a - mean_b| / sqrt(std_a^2 + std_b^2); inf for point masses."""
    spread = math.sqrt(std_a**2 + std_b**2)
    gap = abs(mean_a - mean_b)
    if spread == 0:
        return math.inf if gap > 0 else 0.0
    return math.sqrt(2.0) * gap / spread


def otsu_split(edges: np.ndarray, counts: np.ndarray) -> TwoModes | None:
    """The bin edge that maximises the between-class variance; None without two non-empty sides."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total == 0 or np.count_nonzero(counts) < 2:
        return None
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(counts)[:-1]
    s0 = np.cumsum(counts * centers)[:-1]
    w1 = total - w0
    s1 = (counts * centers).sum() - s0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = w0 * w1 * (s0 / w0 - s1 / w1) ** 2
    between[(w0 == 0) | (w1 == 0)] = -1.0
    k = int(np.argmax(between)) + 1  # the cut is edges[k]: bins [0, k) below, [k, n) above
    low, high = slice(0, k), slice(k, len(counts))
    low_mean, low_std = _weighted_moments(centers[low], counts[low])
    high_mean, high_std = _weighted_moments(centers[high], counts[high])
    return TwoModes(
        cut=float(edges[k]),
        low_mass=float(counts[low].sum() / total),
        high_mass=float(counts[high].sum() / total),
        low_mean=low_mean,
        high_mean=high_mean,
        low_std=low_std,
        high_std=high_std,
        separation=ashman_d(low_mean, low_std, high_mean, high_std),
    )


def _weighted_moments(values: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    mean = float(np.average(values, weights=weights))
    return mean, float(math.sqrt(np.average((values - mean) ** 2, weights=weights)))
