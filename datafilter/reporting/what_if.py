"""The report's what-if view: the share of each group a perplexity band would keep at keep 0.3,
0.5 and 0.7 with thresholds taken over all documents, read from the percentile tables alone (no
rescan of the scores).

For a keep fraction ``k`` and a criterion (``low``: the lowest scores, ``medium``: the middle,
``high``: the highest), the band's bounds are the global percentiles at the band's ends; a
group keeps the share of its documents between them, which its own percentile table gives by
interpolation (to within a percentile)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

KEEPS = (0.3, 0.5, 0.7)
CRITERIA = ("low", "medium", "high")


def band(keep: float, criterion: str) -> tuple[float, float]:
    """The band's ends as quantiles of all documents."""
    if criterion == "low":
        return 0.0, keep
    if criterion == "high":
        return 1.0 - keep, 1.0
    return (1.0 - keep) / 2, (1.0 + keep) / 2


def _curve(rows: dict[float, float]) -> tuple[np.ndarray, np.ndarray]:
    qs = np.array(sorted(rows))
    return qs, np.array([rows[q] for q in qs])


def share_below(rows: dict[float, float], value: float) -> float:
    """The share of a group's documents at or below ``value``, from its percentiles."""
    qs, values = _curve(rows)
    if value < values[0]:
        return 0.0
    if value >= values[-1]:
        return 1.0
    right = int(np.searchsorted(values, value, side="right"))  # first percentile above value
    lo_v, hi_v, lo_q, hi_q = values[right - 1], values[right], qs[right - 1], qs[right]
    if hi_v == lo_v:
        return float(hi_q)
    return float(lo_q + (hi_q - lo_q) * (value - lo_v) / (hi_v - lo_v))


def quantile(rows: dict[float, float], q: float) -> float:
    """The value at quantile ``q``, interpolated between the table's quantiles."""
    qs, values = _curve(rows)
    return float(np.interp(q, qs, values))


def keep_table(
    overall: dict[float, float],
    groups: dict[str, dict[float, float]],
    criterion: str,
    keeps: tuple[float, ...] = KEEPS,
) -> dict[str, Any] | None:
    """Bounds per keep fraction and each group's kept share: ``{"bounds": {keep: (lo, hi)},
    "shares": {group: {keep: share}}}``; None without a global percentile table."""
    if len(overall) < 2 or criterion not in CRITERIA:
        return None
    bounds, shares = {}, {}
    for keep in keeps:
        lo_q, hi_q = band(keep, criterion)
        lo = quantile(overall, lo_q) if lo_q > 0 else -math.inf
        hi = quantile(overall, hi_q) if hi_q < 1 else math.inf
        bounds[keep] = (lo, hi)
    for group, rows in groups.items():
        if len(rows) < 2:
            continue
        shares[group] = {
            keep: max(0.0, share_below(rows, hi) - (share_below(rows, lo) if lo > -math.inf else 0))
            for keep, (lo, hi) in bounds.items()
        }
    return {"bounds": bounds, "shares": shares}
