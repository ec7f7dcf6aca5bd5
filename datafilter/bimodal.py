"""Split a histogram into two modes at its valley and say how clear the split is.

Otsu's method picks the split that best separates the histogram into two classes; the peak of
each class is then found on a lightly smoothed histogram and the cut is placed at the lowest
point between the two peaks. The depth of that valley relative to the smaller peak tells a real
second mode (a deep valley) from a single mode cut in two (no valley): Otsu always finds a split,
and even Ashman's D of its two halves exceeds 2 for a single Gaussian, so D alone cannot tell.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class TwoModes:
    """The cut between two modes of a histogram and a summary of each side."""

    cut: float
    low_peak: float
    high_peak: float
    valley_ratio: float  # smoothed density at the cut / the smaller peak: near 0 = deep valley
    low_mass: float
    high_mass: float
    low_mean: float
    high_mean: float
    low_std: float
    high_std: float
    separation: float  # Ashman's D of the two sides

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def ashman_d(mean_a: float, std_a: float, mean_b: float, std_b: float) -> float:
    """Ashman's D = sqrt(2) |mean_a - mean_b| / sqrt(std_a^2 + std_b^2); inf for point masses."""
    spread = math.sqrt(std_a**2 + std_b**2)
    gap = abs(mean_a - mean_b)
    if spread == 0:
        return math.inf if gap > 0 else 0.0
    return math.sqrt(2.0) * gap / spread


def otsu_index(counts: np.ndarray, centers: np.ndarray) -> int:
    """k such that bins [0, k) and [k, n) maximise the between-class variance."""
    total = counts.sum()
    w0 = np.cumsum(counts)[:-1]
    s0 = np.cumsum(counts * centers)[:-1]
    w1 = total - w0
    s1 = (counts * centers).sum() - s0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = w0 * w1 * (s0 / w0 - s1 / w1) ** 2
    between[(w0 == 0) | (w1 == 0)] = -1.0
    return int(np.argmax(between)) + 1


def smooth(counts: np.ndarray, width: int) -> np.ndarray:
    """A centred moving average (edges padded with zeros)."""
    if width <= 1:
        return counts.astype(np.float64)
    return np.convolve(counts, np.ones(width) / width, mode="same")


def split_modes(edges: np.ndarray, counts: np.ndarray) -> TwoModes | None:
    """The valley between the two modes; None without two non-empty sides."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total == 0 or np.count_nonzero(counts) < 2:
        return None
    centers = (edges[:-1] + edges[1:]) / 2
    k = otsu_index(counts, centers)
    smoothed = smooth(counts, max(1, len(counts) // 40) | 1)
    low_peak = int(np.argmax(smoothed[:k]))
    high_peak = k + int(np.argmax(smoothed[k:]))
    valley = low_peak + int(np.argmin(smoothed[low_peak : high_peak + 1]))
    cut_bin = valley if valley > low_peak else k  # adjacent peaks: keep Otsu's split
    smaller_peak = min(smoothed[low_peak], smoothed[high_peak])
    ratio = float(smoothed[valley] / smaller_peak) if smaller_peak > 0 else 1.0
    cut = float(edges[cut_bin]) if cut_bin == k else float(centers[cut_bin])
    low = centers < cut
    low_mean, low_std = _weighted_moments(centers[low], counts[low])
    high_mean, high_std = _weighted_moments(centers[~low], counts[~low])
    return TwoModes(
        cut=cut,
        low_peak=float(centers[low_peak]),
        high_peak=float(centers[high_peak]),
        valley_ratio=ratio,
        low_mass=float(counts[low].sum() / total),
        high_mass=float(counts[~low].sum() / total),
        low_mean=low_mean,
        high_mean=high_mean,
        low_std=low_std,
        high_std=high_std,
        separation=ashman_d(low_mean, low_std, high_mean, high_std),
    )


def _weighted_moments(values: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    if weights.sum() == 0:
        return math.nan, math.nan
    mean = float(np.average(values, weights=weights))
    return mean, float(math.sqrt(np.average((values - mean) ** 2, weights=weights)))
