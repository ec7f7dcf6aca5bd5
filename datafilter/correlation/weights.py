"""The domain weights table: estimates, caps and the sampling distribution over domains."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from datafilter.correlation.estimators import estimate
from datafilter.correlation.projections import project, tau_for_budget
from datafilter.correlation.tables import Benchmarks, BpbTable, align
from datafilter.errors import ConfigError, InputError

# A domain whose weight reaches its cap (within float32 rounding) is kept whole.
FULL_DOMAIN_TOLERANCE = 1e-6

WEIGHTS_SCHEMA = pa.schema(
    [
        ("domain", pa.string()),
        ("status", pa.string()),  # estimated | no_estimate (not in the bpb table) | no_data
        ("estimate", pa.float64()),
        ("rank", pa.int64()),  # 1 = the highest estimate
        ("amount", pa.int64()),  # tokens (or bytes) of the domain in the corpus
        ("tau", pa.float64()),
        ("weight", pa.float64()),
        ("quota", pa.int64()),  # weight x budget, in the same unit; the whole domain when full
        ("selected", pa.bool_()),
    ]
)


def domain_weights(
    bpb: BpbTable,
    benchmarks: Benchmarks,
    amounts: dict[str, int],
    *,
    budget: int | None = None,
    keep_ratio: float | None = None,
    estimator: str = "sign_cdf",
    projection: str = "linear",
    models: list[str] | None = None,
    min_models: int = 10,
    atol: float = 1e-12,
) -> tuple[pa.Table, dict[str, Any]]:
    """The weights table (one row per domain of the bpb table or of ``amounts``, best first) and
    a JSON-able summary. ``amounts``: each domain's tokens (or bytes) in the corpus to select
    from; the budget is ``budget`` or ``keep_ratio`` times their total."""
    chosen, X, y = align(bpb, benchmarks, models, min_models)
    total = int(sum(amounts.values()))
    if (budget is None) == (keep_ratio is None):
        raise ConfigError("give exactly one of a budget and a keep ratio")
    if keep_ratio is not None:
        if not 0 < keep_ratio <= 1:
            raise ConfigError(f"keep ratio must be in (0, 1], got {keep_ratio}")
        budget = int(round(keep_ratio * total))
    assert budget is not None
    if budget < 1:
        raise ConfigError(f"the budget must be at least 1, got {budget}")
    theta = estimate(X, y, estimator)
    amount = np.array([amounts.get(d, 0) for d in bpb.domains], dtype=np.int64)
    usable = amount > 0
    if not usable.any():
        raise InputError(
            "none of the bpb table's domains has data in the corpus: check that the domain "
            "names match (same column or URL column)"
        )
    tau = tau_for_budget(amount, budget)
    usable_amount = int(amount[usable].sum())
    if usable_amount < budget:
        raise InputError(
            f"the budget ({budget}) exceeds the {usable_amount} tokens of the "
            f"{int(usable.sum())} domains with estimates and data (of {total} in the corpus); "
            "lower the budget or keep ratio"
        )
    weight = np.zeros(len(bpb.domains))
    weight[usable] = project(theta[usable], tau[usable], projection, atol)
    full = weight >= tau * (1 - FULL_DOMAIN_TOLERANCE)
    quota = np.where(full, amount, np.rint(weight * budget)).astype(np.int64)
    order = np.argsort(-1 * theta)  # ties in the order the linear projection fills them
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    rows = [
        {
            "domain": d,
            "status": "estimated" if usable[j] else "no_data",
            "estimate": float(theta[j]),
            "rank": int(rank[j]),
            "amount": int(amount[j]),
            "tau": float(tau[j]),
            "weight": float(weight[j]),
            "quota": int(quota[j]),
            "selected": bool(weight[j] > 0),
        }
        for j, d in enumerate(bpb.domains)
    ]
    rows.sort(key=lambda r: r["rank"])
    known = set(bpb.domains)
    rows += [
        {"domain": d, "status": "no_estimate", "estimate": None, "rank": None, "amount": int(a),
         "tau": float(a) / budget, "weight": 0.0, "quota": 0, "selected": False}
        for d, a in sorted(amounts.items()) if d not in known
    ]  # fmt: skip
    table = pa.Table.from_pylist(rows, schema=WEIGHTS_SCHEMA)
    selected = [r for r in rows if r["selected"]]
    summary = {
        "estimator": estimator,
        "projection": projection,
        "sign_convention": "y is benchmark error; a high estimate means a lower loss on the "
        "domain goes with a lower error (the domain is preferred)",
        "models": chosen,
        "benchmark_error": {m: float(v) for m, v in zip(chosen, y, strict=True)},
        "budget": budget,
        "keep_ratio": budget / total if total else None,
        "corpus_amount": total,
        "domains": len(rows),
        "domains_estimated": int(usable.sum()),
        "domains_without_estimate": len(rows) - len(bpb.domains),
        "domains_without_data": int((~usable).sum()),
        "selected": len(selected),
        "selected_amount": int(sum(r["quota"] for r in selected)),
        "top": [{k: r[k] for k in ("domain", "estimate", "tau", "weight")} for r in rows[:10]],
    }
    return table, summary
