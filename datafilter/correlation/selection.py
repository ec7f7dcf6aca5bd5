"""What the perplexity_correlation selector reads: the weights table and each row's domain."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datafilter.aggregate import NULL_GROUP
from datafilter.correlation.tables import read_table
from datafilter.errors import InputError


@dataclass(frozen=True)
class Weights:
    """A weights table: weight, quota and corpus amount per domain, and its summary."""

    path: str
    weight: dict[str, float]
    quota: dict[str, int]
    amount: dict[str, int]
    unit: str
    budget: int | None
    summary: dict[str, Any]
    estimated: frozenset[str] = frozenset()  # domains with an estimate (fastText labels)

    def quotas(self, budget: int, unit: str) -> dict[str, int]:
        """Per selected domain, how much of it to keep under ``budget`` (in ``unit``): the
        table's quotas when both match the table, else ``weight x budget``."""
        if budget == self.budget and unit == self.unit and self.quota:
            return {d: q for d, q in self.quota.items() if self.weight.get(d, 0) > 0}
        out = {}
        for d, w in self.weight.items():
            if w > 0:
                whole = self.amount.get(d) if unit == self.unit else None
                share = int(np.rint(w * budget))
                out[d] = whole if whole is not None and share >= whole else share
        return out

    def mismatches(self, found: dict[str, dict[str, Any]], unit: str) -> list[str]:
        """Warnings where the run's domains or amounts differ from those the weights assumed."""
        if not self.amount:
            return []
        notes = []
        if unit != self.unit:
            notes.append(f"the weights were made for {self.unit}, the selection counts {unit}")
        differ = [d for d, e in found.items() if self.amount.get(d, 0) != e["amount"]]
        if differ and unit == self.unit:
            notes.append(
                f"{len(differ)} domain(s) have another amount of {unit} in this run than in the "
                f"weights table ({', '.join(sorted(differ)[:5])}): were the weights made from "
                "another run or scorer? Quotas are applied as recorded"
            )
        missing = sorted(set(self.weight) - set(found))
        chosen_missing = [d for d in missing if self.weight[d] > 0]
        if chosen_missing:
            notes.append(
                f"{len(chosen_missing)} selected domain(s) have no documents in this run: "
                f"{', '.join(chosen_missing[:5])}"
            )
        return notes


def load_weights(path: str | Path) -> Weights:
    """Read a weights table (``domain`` and ``weight`` columns at least) and its JSON summary."""
    file = Path(path).expanduser()
    table = read_table(file)
    for column in ("domain", "weight"):
        if column not in table.column_names:
            raise InputError(
                f"not a weights table: no {column!r} column (make one with datafilter "
                "corr-weights)",
                path=str(file),
            )
    domains = [str(d) for d in table.column("domain").to_pylist()]
    weight = [float(w or 0.0) for w in table.column("weight").to_pylist()]
    if any(w < 0 or not np.isfinite(w) for w in weight):
        raise InputError("weights must be finite and non-negative", path=str(file))

    def column(name: str) -> dict[str, int]:
        if name not in table.column_names:
            return {}
        return {d: int(v) for d, v in zip(domains, table.column(name).to_pylist(), strict=True)
                if v is not None}  # fmt: skip

    if "status" in table.column_names:
        status = table.column("status").to_pylist()
        estimated = frozenset(d for d, s in zip(domains, status, strict=True) if s == "estimated")
    else:
        estimated = frozenset(domains)
    summary_path = file.with_suffix(".json")
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    return Weights(
        path=str(file),
        weight=dict(zip(domains, weight, strict=True)),
        quota=column("quota"),
        amount=column("amount"),
        unit=summary.get("unit", "tokens"),
        budget=summary.get("budget"),
        summary={
            k: summary[k]
            for k in ("estimator", "projection", "budget", "unit", "models", "benchmarks")
            if k in summary
        },  # fmt: skip
        estimated=estimated,
    )


def row_domains(groups: np.ndarray, domain_from: str) -> np.ndarray:
    """Each row's domain from its group key: the key itself, or the registered domain of a URL."""
    if domain_from == "column":
        return np.asarray(groups, dtype=object)
    import pyarrow as pa

    from datafilter.correlation.domains import hosts_of, registered_domain

    values = [None if g == NULL_GROUP else g for g in groups]
    hosts = hosts_of(pa.array(values, pa.string())).to_pylist()
    return np.array([registered_domain(h) for h in hosts], dtype=object)
