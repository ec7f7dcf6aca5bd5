"""The report's harmful-content section: per group, the histogram of the statistic the
``harmful_outlier`` selector decided on, with its fitted components, its cut, the labelled
documents (calibrated mode) and the documents nearest the cut, beside what decided and why.

Only bounded aggregates are read: one histogram per group (DuckDB), the rest is the plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from datafilter.aggregate import ScoreStats

SELECTOR = "harmful_outlier"
BINS = 80
MAX_GROUPS = 12


@dataclass
class HarmfulPanel:
    """One group: its histogram on the selector's axis (ln ppl, or the log ratio with a clean
    model) and the plan's entry for the group."""

    group: str
    edges: np.ndarray
    counts: np.ndarray
    entry: dict[str, Any]
    log_ppl: bool  # the axis is ln(ppl): ticks are drawn in perplexity units

    @property
    def cut(self) -> float | None:
        return self.entry.get("cut")

    def fitted_counts(self, x: np.ndarray) -> list[tuple[dict[str, Any], np.ndarray]]:
        """Each fitted component's expected documents per bin of this histogram, at ``x``."""
        fit = self.entry.get("fit") or {}
        width = float(self.edges[1] - self.edges[0]) if len(self.edges) > 1 else 1.0
        total = float(self.counts.sum())
        out = []
        for c in fit.get("components", []):
            z = (x - c["mean"]) / c["sd"]
            density = np.exp(-0.5 * z * z) / (c["sd"] * math.sqrt(2 * math.pi))
            out.append((c, total * width * c["weight"] * density))
        return out


def collect_harmful(manifest: dict[str, Any] | None, stats: ScoreStats) -> list[HarmfulPanel]:
    """The panels of a harmful_outlier selection (its largest groups), else none."""
    if not manifest or (manifest.get("selector") or {}).get("name") != SELECTOR:
        return []
    plan = manifest.get("thresholds") or {}
    groups = plan.get("groups") or {}
    if not groups:
        return []
    combined = bool(plan.get("combined"))
    metric = str(plan.get("metric", "ppl"))
    hist = stats.histogram(metric, BINS, log=not combined)
    order = sorted(groups, key=lambda g: (-int(groups[g].get("n_docs", 0)), g))[:MAX_GROUPS]
    panels = []
    for g in sorted(order):
        if g not in hist:
            continue
        edges, group_counts = hist[g]
        panels.append(HarmfulPanel(g, edges, group_counts, groups[g], not combined))
    return panels
