"""Perplexity pruning (Ankner et al. 2024; Marion et al. 2023): keep a band of the ranking.

Documents are ordered by (metric, id_hash, score shard, row): ties in the metric are broken by
the hash of the document id, and repeated ids by their place in the corpus, so the kept count is
exactly ``floor(keep * n + 0.5)`` per group (``keep * n`` in float64, rounded half up: keep 0.5
of 5 documents keeps 3, where Python's ``round`` would give 2) and reruns agree.

Without a ``criterion``, the stages take it from the kind of reference the scores' model was
trained on (:func:`default_criterion`): ``low`` for a model of clean reference text (CCNet's
head: KenLM's recipe says ``clean_reference``), ``medium`` for a model of the corpus itself
(Ankner et al.: train-reference says ``corpus``), and ``medium`` with a warning when unknown.
Which is better for a given corpus is measured by ``datafilter evaluate``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import Field

from datafilter.aggregate import ScoreStats
from datafilter.selectors.base import Decision, Selector, SelectorOptions
from datafilter.selectors.order import at_or_above, at_or_below


class PerplexityBandOptions(SelectorOptions):
    criterion: Literal["low", "medium", "high"] = Field(
        "medium", description="which band of the ranking is kept: lowest, middle or highest"
    )
    keep: float = Field(0.5, ge=0.0, le=1.0, description="fraction of documents kept per group")
    metric: Literal["ppl", "bpb"] = Field("ppl", description="rank by perplexity or bits/byte")


DEFAULT_BY_REFERENCE = {"clean_reference": "low", "corpus": "medium"}


def reference_kind(scorer_entry: dict[str, Any]) -> str:
    """The reference kind recorded with a run's scorer (``run.json``): the KenLM recipe's or
    train-reference's ``reference_kind``; ``unknown`` when neither says."""
    described = scorer_entry.get("scorer", {})
    recipe = described.get("model_recipe") or {}
    return str(recipe.get("reference_kind") or described.get("reference_kind") or "unknown")


def default_criterion(scorer_entry: dict[str, Any]) -> tuple[str, str | None]:
    """The criterion to use when none is given, and a warning when the reference kind is
    unknown."""
    kind = reference_kind(scorer_entry)
    if kind in DEFAULT_BY_REFERENCE:
        return DEFAULT_BY_REFERENCE[kind], None
    return "medium", (
        f"perplexity_band: the scores' model records no reference kind ({kind}); criterion "
        "medium is assumed: check it against low and high with datafilter evaluate"
    )


def band_ranks(n: int, keep: float, criterion: str) -> tuple[int, int]:
    """The half-open rank range [start, stop) kept out of ``n`` ascending-ordered documents:
    ``floor(keep * n + 0.5)`` of them (round half up)."""
    k = min(n, math.floor(keep * n + 0.5))
    if criterion == "low":
        return 0, k
    if criterion == "high":
        return n - k, n
    start = (n - k) // 2
    return start, start + k


class PerplexityBand(Selector):
    name = "perplexity_band"
    Options = PerplexityBandOptions
    options: PerplexityBandOptions

    def plan(self, stats: ScoreStats) -> dict[str, Any]:
        """Per group: the kept rank range and the (value, id_hash) keys at its two ends."""
        opts = self.options
        counts = stats.counts()
        bands = {g: band_ranks(n, opts.keep, opts.criterion) for g, n in counts.items()}
        # A bound is needed only where the band stops short of that end of the ranking.
        bounds = {
            g: (start if 0 < start < stop else None, stop - 1 if start < stop < counts[g] else None)
            for g, (start, stop) in bands.items()
        }
        wanted = {g: [r for r in pair if r is not None] for g, pair in bounds.items()}
        keys = stats.keys_at_ranks(wanted, opts.metric)

        def key(group: str, rank: int | None) -> dict[str, Any] | None:
            if rank is None:
                return None
            value, id_hash, shard, row = keys[(group, rank)]
            return {"value": value, "id_hash": id_hash, "shard": shard, "row": row}

        groups = {
            g: {
                "n_docs": counts[g],
                "kept": stop - start,
                "rank_start": start,
                "rank_stop": stop,
                "lower": key(g, bounds[g][0]),
                "upper": key(g, bounds[g][1]),
            }
            for g, (start, stop) in bands.items()
        }
        return {"metric": opts.metric, "groups": groups}

    def decide(
        self, scores: dict[str, np.ndarray], groups: np.ndarray, plan: dict[str, Any], seed: int
    ) -> Decision:
        values = scores[plan["metric"]]
        keep = np.zeros(len(values), dtype=bool)
        for group, params in plan["groups"].items():
            rows = groups == group
            if params["kept"] == 0 or not rows.any():
                continue
            in_band = rows.copy()
            if params["lower"] is not None:
                in_band &= at_or_above(scores, plan["metric"], params["lower"])
            if params["upper"] is not None:
                in_band &= at_or_below(scores, plan["metric"], params["upper"])
            keep |= in_band
        keep &= ~np.isnan(values)
        return Decision(keep=keep, drop_reason=f"perplexity_band:{self.options.criterion}")
