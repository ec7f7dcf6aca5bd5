"""Per domain over score shards: bits per byte per model (DuckDB), and tokens per domain with
the cutoffs that fill a token quota in a fixed document order (streaming passes).

Values are bound parameters; the only identifier pasted into SQL is a column name, quoted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from datafilter.aggregate import ALL, NULL_GROUP, Database
from datafilter.correlation.domains import (
    HOST_PATTERN,
    DomainSpec,
    hosts_of,
    registered_domain,
)
from datafilter.correlation.tables import BpbTable
from datafilter.errors import InputError
from datafilter.order_stats.quotas import fill_quotas
from datafilter.order_stats.scan import GroupCodes, ScoreShards

UNIT_COLUMNS = {"tokens": "n_tokens", "bytes": "n_bytes"}
LN2 = math.log(2.0)

_GROUPABLE = (pa.types.is_string, pa.types.is_large_string, pa.types.is_integer,
              pa.types.is_boolean, pa.types.is_null)  # fmt: skip


@dataclass(frozen=True)
class ShardPair:
    """An input shard and, row-aligned with it, one scorer's score shard."""

    input_file: str
    score_file: str


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _check_column(input_files: list[str], spec: DomainSpec) -> None:
    from datafilter.aggregate import JSONL_GROUPS
    from datafilter.io.jsonl import is_jsonl
    from datafilter.io.shards import open_parquet

    for path in input_files:
        if is_jsonl(path):
            raise InputError(f"{JSONL_GROUPS} ({spec.kind} column {spec.column!r})", path=path)
        schema = open_parquet(path).schema_arrow
        if spec.column not in schema.names:
            raise InputError(f"{spec.kind} column {spec.column!r} not found", path=path)
        kind = schema.field(spec.column).type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        allowed = _GROUPABLE if spec.kind == "column" else _GROUPABLE[:2] + _GROUPABLE[-1:]
        if not any(check(kind) for check in allowed):
            what = "a string, integer or boolean" if spec.kind == "column" else "a string"
            raise InputError(
                f"{spec.kind} column {spec.column!r} has type {kind}; expected {what} column",
                path=path,
            )


class _Session:
    """One DuckDB connection with ``shard_map`` and the ``domains(input_file, row, domain)`` CTE."""

    def __init__(self, shard_map: pa.Table, input_files: list[str], spec: DomainSpec):
        _check_column(input_files, spec)
        self.db = Database(hint="use fewer or smaller shards")
        self.db.register("shard_map", shard_map)
        self.params: dict[str, Any] = {"inputs": input_files}
        column = f"CAST(i.{_quote(spec.column)} AS VARCHAR)"
        source = "read_parquet($inputs, filename=true, file_row_number=true, union_by_name=true) i"
        if spec.kind == "column":
            self.domains = (
                f"SELECT i.filename AS input_file, i.file_row_number AS row, "
                f"coalesce({column}, '{NULL_GROUP}') AS domain FROM {source}"
            )
            return
        self.params["pattern"] = HOST_PATTERN
        host = f"regexp_extract({column}, $pattern, 1)"
        hosts = [h for (h,) in self.db.query(f"SELECT DISTINCT {host} FROM {source}",
                                             self.params)]  # fmt: skip
        mapping = pa.table(
            {
                "host": pa.array([h for h in hosts if h is not None], pa.string()),
                "domain": pa.array([registered_domain(h or None) for h in hosts if h is not None]),
            }
        )
        self.db.register("host_map", mapping)
        self.domains = (
            f"SELECT i.filename AS input_file, i.file_row_number AS row, "
            f"coalesce(h.domain, '{NULL_GROUP}') AS domain FROM {source} "
            f"LEFT JOIN host_map h ON h.host = {host}"
        )

    def query(self, sql: str, extra: dict[str, Any] | None = None) -> list[tuple]:
        return self.db.query(
            f"WITH domains AS ({self.domains}) " + sql, {**self.params, **(extra or {})}
        )


def bpb_per_domain(
    models: dict[str, list[ShardPair]],
    spec: DomainSpec,
    average: Literal["bytes", "documents"] = "bytes",
) -> tuple[BpbTable, dict[str, Any]]:
    """Bits per byte of every model on every domain, over the documents that every model scored.

    ``average="bytes"``: total bits over total bytes of the domain's documents (long documents
    weigh more); ``"documents"``: the mean of the documents' bits per byte."""
    if average not in ("bytes", "documents"):
        from datafilter.errors import ConfigError

        raise ConfigError(f"average must be 'bytes' or 'documents', got {average!r}")
    names = list(models)
    shard_map = pa.table(
        {
            "model": [m for m in names for _ in models[m]],
            "input_file": [p.input_file for m in names for p in models[m]],
            "score_file": [p.score_file for m in names for p in models[m]],
        }
    )
    inputs = sorted({p.input_file for m in names for p in models[m]})
    session = _Session(shard_map, inputs, spec)
    session.params["scores"] = shard_map.column("score_file").to_pylist()
    scores = (
        "s AS (SELECT m.model, m.input_file, s.row, s.logprob_sum, s.n_bytes, s.bpb, "
        "s.reject_reason FROM read_parquet($scores, filename=true) s "
        "JOIN shard_map m ON s.filename = m.score_file)"
    )
    rows = session.query(
        f", {scores}, ok AS (SELECT input_file, row FROM s WHERE reject_reason IS NULL "
        "GROUP BY input_file, row HAVING count(*) = $n_models) "
        "SELECT d.domain, s.model, count(*), sum(s.n_bytes), sum(s.logprob_sum), avg(s.bpb) "
        "FROM s JOIN ok ON s.input_file = ok.input_file AND s.row = ok.row "
        "JOIN domains d ON d.input_file = s.input_file AND d.row = s.row "
        "GROUP BY d.domain, s.model ORDER BY d.domain, s.model",
        {"n_models": len(names)},
    )
    (total,) = session.query(", " + scores + " SELECT count(DISTINCT (input_file, row)) FROM s")[0]
    if not rows:
        raise InputError("no document was scored by every model; nothing to aggregate")
    domains = sorted({r[0] for r in rows})
    col = {d: j for j, d in enumerate(domains)}
    X = np.full((len(names), len(domains)), np.nan)
    docs: dict[str, int] = {}
    n_bytes: dict[str, int] = {}
    for domain, model, n, nb, logprob, mean_bpb in rows:
        value = -logprob / (LN2 * nb) if average == "bytes" else mean_bpb
        X[names.index(model), col[domain]] = value
        docs[domain], n_bytes[domain] = int(n), int(nb)
    summary = {
        "models": names,
        "average": average,
        "domain": spec.describe(),
        "documents": sum(docs.values()),
        "documents_not_scored_by_every_model": int(total) - sum(docs.values()),
        "domains": {d: {"documents": docs[d], "bytes": n_bytes[d]} for d in domains},
    }
    return BpbTable(domains, names, X), summary


def amounts_per_domain(
    pairs: list[ShardPair],
    spec: DomainSpec,
    unit: Literal["tokens", "bytes"] = "tokens",
    quotas: dict[str, int] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per domain: valid documents and their tokens (or bytes); with ``quotas``, also the
    documents kept when each domain's documents are taken in (id_hash, score shard, row) order
    while the running total stays within its quota, and the sort key of the last one kept.
    Streaming passes over the shards in bounded memory (:mod:`datafilter.order_stats.quotas`)."""
    if unit not in UNIT_COLUMNS:
        from datafilter.errors import ConfigError

        raise ConfigError(f"unit must be 'tokens' or 'bytes', got {unit!r}")
    _check_column([p.input_file for p in pairs], spec)
    shards = ScoreShards([p.score_file for p in pairs], [p.input_file for p in pairs],
                         spec.column, ALL, NULL_GROUP)  # fmt: skip
    groups = GroupCodes(ALL, NULL_GROUP, None if spec.kind == "column" else _registered_domains)
    fills = fill_quotas(shards, UNIT_COLUMNS[unit], quotas, groups=groups)
    out = {}
    for domain, fill in fills.items():
        entry: dict[str, Any] = {"documents": fill.documents, "amount": fill.amount}
        if quotas is not None:
            entry.update(kept_documents=fill.kept_documents, kept_amount=fill.kept_amount,
                         last=fill.last)  # fmt: skip
        out[domain] = entry
    return out


def _registered_domains(urls: pa.Array) -> list[str | None]:
    """The registered domain of each URL (see :mod:`datafilter.correlation.domains`)."""
    return [registered_domain(h) for h in hosts_of(urls).to_pylist()]
