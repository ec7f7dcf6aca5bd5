"""Keep documents whose perplexity (or bits per byte) lies in ``[min, max]``: absolute bounds,
as in Data-Juicer's ``perplexity_filter`` (``max_ppl``) or NeMo Curator's score filters.

The bounds are absolute values, so they mean something only for one model and one
normalisation: the same text has another perplexity under another model, tokenizer, text
normalisation or scoring mode (``per_line`` or ``ccnet_compat``), and ppl depends on the
tokenization where bpb does not. Look at the run's percentile tables (``datafilter
thresholds``) before picking bounds; the fraction-based selectors adapt to the model instead.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from datafilter.aggregate import ScoreStats
from datafilter.selectors.base import Decision, Selector, SelectorOptions


class Bounds(BaseModel):
    """An inclusive range; a missing end is open."""

    model_config = ConfigDict(extra="forbid")

    min: float | None = Field(None, ge=0.0, description="lowest value kept (inclusive)")
    max: float | None = Field(None, ge=0.0, description="highest value kept (inclusive)")

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class PerplexityRangeOptions(SelectorOptions, Bounds):
    metric: Literal["ppl", "bpb"] = Field(
        "ppl", description="the score the bounds apply to: perplexity or bits per byte"
    )
    groups: dict[str, Bounds] = Field(
        {}, description="bounds per group value (select by --group-by), over the global ones"
    )

    @model_validator(mode="before")
    @classmethod
    def _global_bounds_optional_with_groups(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("groups") and {"min", "max"}.isdisjoint(data):
            return {**data, "min": 0.0}  # only the listed groups are bounded
        return data


class PerplexityRange(Selector):
    name = "perplexity_range"
    Options = PerplexityRangeOptions
    options: PerplexityRangeOptions

    def plan(self, stats: ScoreStats) -> dict[str, Any]:
        """The bounds of every group found, and the documents of each."""
        opts = self.options
        counts = stats.counts()
        default = {"min": opts.min, "max": opts.max}
        groups = {
            g: {
                **(opts.groups[g].model_dump() if g in opts.groups else default),
                "n_docs": n,
            }
            for g, n in counts.items()
        }
        missing = sorted(set(opts.groups) - set(counts))
        plan: dict[str, Any] = {"metric": opts.metric, "default": default, "groups": groups}
        if missing:
            plan["warnings"] = [f"perplexity_range: no documents in group(s) {', '.join(missing)}"]
        return plan

    def decide(
        self, scores: dict[str, np.ndarray], groups: np.ndarray, plan: dict[str, Any], seed: int
    ) -> Decision:
        values = scores[plan["metric"]]
        low = np.full(len(values), -math.inf)
        high = np.full(len(values), math.inf)
        default = plan["default"]
        for group in np.unique(groups) if len(groups) else []:
            b = plan["groups"].get(group, default)
            rows = groups == group
            low[rows] = -math.inf if b["min"] is None else b["min"]
            high[rows] = math.inf if b["max"] is None else b["max"]
        with np.errstate(invalid="ignore"):
            below, above = values < low, values > high
        keep = ~below & ~above & ~np.isnan(values)
        reason = np.where(below, "perplexity_range:below_min", "perplexity_range:above_max")
        return Decision(keep=keep, drop_reason=reason.astype(object))
