"""Perplexity-correlation selection (Thrush et al. 2024): keep the documents of the domains a
weights table (``datafilter corr-weights``) chose, up to each domain's token quota.

Run it with ``--group-by`` the domain column (or the URL column, with ``domain_from: url``).
Within a domain, documents are taken in (id_hash, score shard, row) order, a fixed pseudo-random
order, while the running token count stays within the quota ``weight x budget``; a domain whose
weight reaches its cap is kept whole. With ``distill`` (a ``datafilter corr-distill`` folder)
documents are instead taken across all domains by the fastText classifier's probability of
"include", highest first, until the budget is met.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from datafilter.aggregate import ScoreStats
from datafilter.errors import ConfigError
from datafilter.selectors.base import Decision, Selector, SelectorOptions
from datafilter.selectors.order import at_or_before

NOT_SELECTED = "perplexity_correlation:domain_not_selected"
OVER_QUOTA = "perplexity_correlation:over_quota"
BELOW_CUTOFF = "perplexity_correlation:classifier_below_cutoff"


class PerplexityCorrelationOptions(SelectorOptions):
    weights: str = Field(description="domain weights table written by corr-weights")
    domain_from: Literal["column", "url"] = Field(
        "column", description="the --group-by column holds the domain, or a URL"
    )
    unit: Literal["tokens", "bytes"] | None = Field(
        None, description="what the budget counts (default: the weights table's unit)"
    )
    budget: int | None = Field(None, ge=1, description="default: the weights table's budget")
    distill: str | None = Field(None, description="corr-distill folder: take by probability")


class PerplexityCorrelation(Selector):
    name = "perplexity_correlation"
    Options = PerplexityCorrelationOptions
    options: PerplexityCorrelationOptions

    def output_columns(self) -> dict[str, pa.DataType]:
        columns = {"corr_domain": pa.string(), "corr_weight": pa.float64()}
        if self.options.distill:
            columns["corr_p_include"] = pa.float64()
        return columns

    def plan(self, stats: ScoreStats) -> dict[str, Any]:
        from datafilter.correlation.domains import DomainSpec
        from datafilter.correlation.per_domain import ShardPair, amounts_per_domain
        from datafilter.correlation.selection import load_weights

        if stats.group_by is None:
            raise ConfigError(
                "perplexity_correlation needs --group-by: the domain column (or the URL column "
                "with domain_from=url)"
            )
        opts = self.options
        weights = load_weights(opts.weights)
        unit = opts.unit or weights.unit
        budget = opts.budget or (weights.budget if unit == weights.unit else None)
        if budget is None:
            raise ConfigError(
                f"{opts.weights} records no budget in {unit}; set budget=<amount in {unit}>"
            )
        spec = DomainSpec(stats.group_by, opts.domain_from)
        pairs = [ShardPair(i, s) for i, s in stats.score_file_of.items()]
        quotas = weights.quotas(budget, unit)
        found = amounts_per_domain(pairs, spec, unit, None if opts.distill else quotas)
        plan: dict[str, Any] = {
            "weights_file": str(Path(opts.weights).expanduser().resolve()),
            "weights_summary": weights.summary,
            "unit": unit,
            "budget": budget,
            "domain_from": opts.domain_from,
            "group_by": stats.group_by,
            "weights": {d: w for d, w in weights.weight.items() if w > 0},
            "warnings": weights.mismatches(found, unit),
        }
        if opts.distill:
            from datafilter.correlation.distill import probability_plan

            plan["distill"] = probability_plan(opts.distill, stats, unit, budget)
            plan["domains"] = {d: {"documents": e["documents"], "amount": e["amount"]}
                               for d, e in found.items()}  # fmt: skip
            return plan
        domains = {}
        for d, e in found.items():
            entry = {**e, "quota": quotas.get(d, 0), "weight": weights.weight.get(d, 0.0)}
            last = entry.pop("last")
            entry["mode"] = (
                "all" if entry["kept_documents"] == entry["documents"]
                else "none" if entry["kept_documents"] == 0 else "cut"
            )  # fmt: skip
            if entry["mode"] == "cut":
                entry["last"] = {"id_hash": last["id_hash"], "shard": last["shard"],
                                 "row": last["row"]}  # fmt: skip
            domains[d] = entry
        plan["domains"] = domains
        plan["kept_amount"] = sum(e["kept_amount"] for e in domains.values())
        return plan

    def decide(
        self, scores: dict[str, np.ndarray], groups: np.ndarray, plan: dict[str, Any], seed: int
    ) -> Decision:
        from datafilter.correlation.selection import row_domains

        n = len(groups)
        domain = row_domains(groups, plan["domain_from"])
        weight = np.array([plan["weights"].get(d, 0.0) for d in domain], dtype=np.float64)
        columns: dict[str, np.ndarray] = {"corr_domain": domain, "corr_weight": weight}
        if "distill" in plan:
            from datafilter.correlation.distill import keep_by_probability

            keep, p = keep_by_probability(scores, plan["distill"])
            columns["corr_p_include"] = p
            return Decision(keep=keep, drop_reason=BELOW_CUTOFF, columns=columns)
        names, inverse = np.unique(domain, return_inverse=True) if n else ([], np.zeros(0, int))
        entries = [plan["domains"].get(name) or {"mode": "none"} for name in names]
        mode = np.array([e["mode"] for e in entries], dtype=object)[inverse]
        cutoffs = [e.get("last") or _NO_CUTOFF for e in entries]
        last = {
            "id_hash": np.array([c["id_hash"] for c in cutoffs], dtype=np.uint64)[inverse],
            "shard": np.array([c["shard"] for c in cutoffs], dtype=object)[inverse],
            "row": np.array([c["row"] for c in cutoffs], dtype=np.int64)[inverse],
        }
        cut = mode == "cut"
        within = cut & at_or_before(scores, last)
        keep = (mode == "all") | within
        reason = np.where(cut & ~within, OVER_QUOTA, NOT_SELECTED).astype(object)
        return Decision(keep=keep, drop_reason=reason, columns=columns)


_NO_CUTOFF = {"id_hash": 0, "shard": "", "row": 0}
