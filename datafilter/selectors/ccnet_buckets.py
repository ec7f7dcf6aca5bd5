"""CCNet buckets: head / middle / tail by the group's 30th and 60th perplexity percentiles."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from datafilter.aggregate import ScoreStats
from datafilter.selectors.base import Decision, Selector, SelectorOptions

Bucket = Literal["head", "middle", "tail"]


class CcnetBucketsOptions(SelectorOptions):
    keep: list[Bucket] = Field(["head", "middle", "tail"], min_length=1)
    cuts: tuple[float, float] = (0.3, 0.6)
    metric: Literal["ppl", "bpb"] = "ppl"

    @model_validator(mode="after")
    def _cuts_ordered(self) -> CcnetBucketsOptions:
        low, high = self.cuts
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError("cuts must satisfy 0 <= low <= high <= 1")
        return self


class CcnetBuckets(Selector):
    """``head`` if ppl < p30, ``middle`` if ppl < p60, else ``tail`` (percentiles per group).

    Every document gets a ``datafilter_bucket`` column; those in ``keep`` are kept (all three
    by default, so the step only labels).
    """

    name = "ccnet_buckets"
    Options = CcnetBucketsOptions
    options: CcnetBucketsOptions

    def output_columns(self) -> dict[str, pa.DataType]:
        return {"bucket": pa.string()}

    def plan(self, stats: ScoreStats) -> dict[str, Any]:
        opts = self.options
        cuts = stats.quantiles(list(opts.cuts), opts.metric)
        groups = {g: {"head_below": v[0], "middle_below": v[1]} for g, v in cuts.items()}
        return {"metric": opts.metric, "cuts": list(opts.cuts), "groups": groups}

    def decide(
        self, scores: dict[str, np.ndarray], groups: np.ndarray, plan: dict[str, Any], seed: int
    ) -> Decision:
        values = scores[plan["metric"]]
        buckets = np.full(len(values), "tail", dtype=object)
        for group, cut in plan["groups"].items():
            rows = groups == group
            buckets[rows & (values < cut["middle_below"])] = "middle"
            buckets[rows & (values < cut["head_below"])] = "head"
        buckets[np.isnan(values)] = None
        keep = np.isin(buckets, self.options.keep) & ~np.isnan(values)
        reasons = np.array([f"ccnet_buckets:{b}" for b in buckets], dtype=object)
        return Decision(keep=keep, drop_reason=reasons, columns={"bucket": buckets})
