"""Perplexity sampling (BERTIN): keep each document with a probability shaped by its perplexity.

The probability comes from the corpus quartiles ``b0 < b1 < b2`` (per group when grouped):

- ``gaussian``: ``factor * exp(-((ppl - b1) / b1) ** 2 / width)``, favouring the middle;
- ``stepwise``: ``factor / range(ppl)`` with range ``b0`` (ppl <= b0), ``b1 - b0`` (<= b1),
  ``b2 - b1`` (<= b2) and ``10 * b2`` above, so the quartiles are sampled evenly and the tail
  little. The published code (BERTIN's ``_should_keep_doc_step``) tests ``b0 < ppl < b1``,
  ``b1 < ppl < b2`` and ``ppl >= b2``: it gives ppl == b2 the tail's range ``10 * b2`` (here
  ``b2 - b1``) and no range at all to ppl == b1 (its function then fails; here ``b1 - b0``).
  Everywhere else the two agree.

The draw is a pure function of (seed, document id). With ``target_keep`` the factor is solved so
that the expected kept fraction hits the target.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from datafilter.aggregate import ScoreStats
from datafilter.errors import ConfigError
from datafilter.selectors.base import Decision, Selector, SelectorOptions
from datafilter.selectors.random_keys import uniform

BERTIN_GAUSSIAN_FACTOR = 0.78
DEFAULT_STEPWISE_TARGET = 0.5


class PerplexitySamplingOptions(SelectorOptions):
    method: Literal["gaussian", "stepwise"] = Field(
        "gaussian", description="shape of the keep probability over perplexity"
    )
    factor: float | None = Field(
        None, gt=0, description="scale of the keep probability (default: 0.78, or solved)"
    )
    target_keep: float | None = Field(
        None, gt=0, le=1, description="expected kept fraction: the factor is solved for it"
    )
    width: float = Field(4.5, gt=0, description="gaussian: width of the favoured middle")
    action: Literal["drop", "flag"] = Field(
        "drop", description="drop unsampled documents, or keep them with a flag column"
    )
    sample_size: int = Field(
        200_000, ge=100,
        description="documents per group to solve on (fewer if all groups' do not fit memory)",
    )


def keep_probability(
    ppl: np.ndarray, quartiles: tuple[float, float, float], method: str, factor: float, width: float
) -> np.ndarray:
    """The clipped keep probability of each perplexity; 0 for NaN."""
    b0, b1, b2 = quartiles
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if method == "gaussian":
            p = factor * np.exp(-(((ppl - b1) / b1) ** 2) / width)
        else:
            span = np.select([ppl <= b0, ppl <= b1, ppl <= b2], [b0, b1 - b0, b2 - b1], 10 * b2)
            p = np.where(span > 0, factor / span, 1.0)
    return np.where(np.isnan(ppl), 0.0, np.nan_to_num(np.clip(p, 0.0, 1.0), nan=0.0))


def solve_factor(
    ppl: np.ndarray, quartiles: tuple[float, float, float], method: str, target: float, width: float
) -> float:
    """The factor whose expected kept fraction over ``ppl`` is ``target`` (bisection)."""

    def kept(factor: float) -> float:
        return float(keep_probability(ppl, quartiles, method, factor, width).mean())

    high = 1.0
    while kept(high) < target:
        high *= 2
        if high > 1e300:
            raise ConfigError(f"target_keep {target} cannot be reached with {method} sampling")
    low = 0.0
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if kept(mid) < target else (low, mid)
    return high


class PerplexitySampling(Selector):
    name = "perplexity_sampling"
    Options = PerplexitySamplingOptions
    options: PerplexitySamplingOptions

    def output_columns(self) -> dict[str, pa.DataType]:
        columns = {"keep_prob": pa.float64()}
        if self.options.action == "flag":
            columns["keep"] = pa.bool_()
        return columns

    def _target(self) -> float | None:
        opts = self.options
        if opts.target_keep is not None or opts.factor is not None:
            return opts.target_keep
        return None if opts.method == "gaussian" else DEFAULT_STEPWISE_TARGET

    def plan(self, stats: ScoreStats) -> dict[str, Any]:
        opts = self.options
        target = self._target()
        quartiles = stats.quantiles([0.25, 0.5, 0.75], "ppl")
        samples = stats.sample("ppl", opts.sample_size)
        taken = stats.sample_size(opts.sample_size)
        groups = {}
        for g, qs in quartiles.items():
            q = (qs[0], qs[1], qs[2])
            if target is not None:
                factor = solve_factor(samples[g], q, opts.method, target, opts.width)
            else:
                factor = opts.factor or BERTIN_GAUSSIAN_FACTOR
            expected = keep_probability(samples[g], q, opts.method, factor, opts.width).mean()
            groups[g] = {"quartiles": list(q), "factor": factor, "expected_keep": float(expected)}
        plan = {"method": opts.method, "width": opts.width, "target_keep": target,
                "groups": groups}
        if taken < opts.sample_size:
            plan["sample_size"] = taken
            plan["notes"] = [
                f"perplexity_sampling solved on {taken:,} documents per group, not "
                f"{opts.sample_size:,}: {len(groups):,} groups of that many do not fit the "
                "order statistics' memory budget"
            ]
        return plan

    def decide(
        self, scores: dict[str, np.ndarray], groups: np.ndarray, plan: dict[str, Any], seed: int
    ) -> Decision:
        ppl = scores["ppl"]
        prob = np.zeros(len(ppl))
        for group, params in plan["groups"].items():
            rows = groups == group
            prob[rows] = keep_probability(
                ppl[rows],
                tuple(params["quartiles"]),
                plan["method"],
                params["factor"],
                plan["width"],
            )
        drawn = uniform(scores["id_hash"], seed) < prob
        columns: dict[str, np.ndarray] = {"keep_prob": prob}
        keep = drawn
        if self.options.action == "flag":
            columns["keep"] = drawn
            keep = ~np.isnan(ppl)
        return Decision(
            keep=keep, drop_reason=f"perplexity_sampling:{plan['method']}", columns=columns
        )
