"""The perplexity-correlation steps behind ``datafilter corr-*``: sample, bpb, weights (and
the options of each command, distillation's too)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from datafilter.correlation.domains import DomainSpec
from datafilter.correlation.per_domain import (
    ShardPair,
    amounts_per_domain,
    bpb_per_domain,
)
from datafilter.correlation.sample import sample_per_domain
from datafilter.correlation.tables import load_benchmarks, load_bpb_table, read_table
from datafilter.correlation.weights import domain_weights
from datafilter.errors import ConfigError, InputError
from datafilter.io.atomic import atomic_path, write_json, write_table
from datafilter.io.layout import RunLayout
from datafilter.io.lock import run_lock
from datafilter.io.record import finished_score_shards, require_record, resolve_scorer_id

log = logging.getLogger(__name__)

Estimator = Literal["sign_cdf", "spearmanr", "sign_sign", "sign", "product"]


class DomainOptions(BaseModel):
    """Where a document's domain comes from: a column, or the registered domain of a URL."""

    model_config = ConfigDict(extra="forbid")

    domain_column: str | None = Field(None, description="input column holding each domain")
    url_column: str | None = Field(
        None, description="input URL column: the domain is its registered domain"
    )

    def domain(self) -> DomainSpec:
        """The domain column or URL column (exactly one must be given)."""
        return DomainSpec.from_args(self.domain_column, self.url_column)


class CorrSampleOptions(DomainOptions):
    """``datafilter corr-sample``."""

    per_domain: int = Field(100, description="documents per domain")
    seed: int = Field(0, description="which documents (with the ids)")
    id_column: str | None = Field(None, description="document id column (default: shard + row)")


class CorrBpbOptions(DomainOptions):
    """``datafilter corr-bpb``."""

    models: list[str] | None = Field(
        None,
        description="scorer id to include (default: all)",
        json_schema_extra={"flag": "--model"},
    )
    average: Literal["bytes", "documents"] = Field(
        "bytes", description="total bits / total bytes of a domain, or the mean of its documents"
    )


class CorrWeightsOptions(DomainOptions):
    """``datafilter corr-weights``."""

    benchmark_columns: list[str] | None = Field(
        None,
        description="benchmark column (default: every numeric one)",
        json_schema_extra={"flag": "--benchmark"},
    )
    benchmark_metric: Literal["accuracy", "error"] = Field(
        "accuracy", description="what the benchmark table holds"
    )
    benchmark_average: Literal["mean", "median"] = Field(
        "mean", description="how benchmarks combine into one error per model"
    )
    models: list[str] | None = Field(
        None,
        description="model to use (default: all in --bpb)",
        json_schema_extra={"flag": "--model"},
    )
    min_models: int = Field(10, description="refuse fewer models")
    tokens_run: str | None = Field(None, description="scored run of the corpus: tokens per domain")
    tokens_scorer_id: str | None = Field(
        None, description="scorer id in --tokens-run whose tokens count"
    )
    tokens_table: str | None = Field(
        None, description="table with domain and tokens (or bytes) columns"
    )
    unit: Literal["tokens", "bytes"] = Field("tokens", description="what the budget counts")
    budget: int | None = Field(None, description="tokens (or bytes) to select")
    keep_ratio: float | None = Field(None, description="share of the corpus' tokens to select")
    estimator: Estimator = Field("sign_cdf", description="correlation estimator")
    projection: Literal["linear", "l2"] = Field("linear", description="projection onto weights")


class CorrDistillOptions(DomainOptions):
    """``datafilter corr-distill``."""

    scorer_id: str | None = Field(None, description="scores of the run (default: its only one)")
    max_per_label: int = Field(20000, description="training documents per label at most")
    holdout: float = Field(0.1, description="share held out for accuracy")
    epoch: int = Field(5, description="fastText epochs")
    dim: int = Field(32, description="fastText dimensions")
    seed: int = Field(0, description="seed of the training sample")


def write_any_table(path: str | Path, table: pa.Table) -> Path:
    """Write ``table`` as Parquet, or CSV when the name ends in ``.csv``; atomically."""
    out = Path(path).expanduser().resolve()
    suffix = out.suffix.lower()
    if suffix == ".csv":
        from pyarrow import csv

        with atomic_path(out) as tmp:
            csv.write_csv(table, tmp)
    elif suffix in (".parquet", ".pq"):
        write_table(out, table)
    else:
        raise ConfigError(f"{out}: name the table .parquet or .csv")
    return out


def sample(
    input: str | Path,
    output: str | Path,
    domain: DomainSpec,
    *,
    per_domain: int = 100,
    seed: int = 0,
    id_column: str | None = None,
) -> dict[str, Any]:
    return sample_per_domain(
        input, output, domain, per_domain=per_domain, seed=seed, id_column=id_column
    )


def run_pairs(run_dir: str | Path, scorer_id: str | None) -> tuple[str, list[ShardPair]]:
    """A scorer's finished score shards in a run folder, each with its input shard."""
    layout = RunLayout.at(run_dir)
    record = require_record(layout)
    sid = resolve_scorer_id(record, scorer_id)
    pairs = finished_score_shards(layout, record, sid)
    return sid, [ShardPair(str(shard.path), str(path)) for shard, path in pairs]


def bpb(
    run_dir: str | Path,
    output: str | Path,
    domain: DomainSpec,
    *,
    models: list[str] | None = None,
    average: Literal["bytes", "documents"] = "bytes",
) -> dict[str, Any]:
    """Bits per byte per (model, domain) from every (or the named) scorer id of a run."""
    layout = RunLayout.at(run_dir)
    record = require_record(layout)
    names = list(models) if models else sorted(record.scorers)
    if not names:
        raise ConfigError(f"run {layout.root} has no scores yet: run datafilter score")
    with run_lock(layout.lock_path):
        shards = {m: run_pairs(layout.root, m)[1] for m in names}
        table, summary = bpb_per_domain(shards, domain, average)
    out = write_any_table(output, table.to_arrow())
    summary.update(run=str(layout.root), output=str(out))
    write_json(out.with_suffix(".json"), summary)
    log.info(
        f"corr-bpb: {len(names)} models x {len(table.domains)} domains over "
        f"{summary['documents']} documents -> {out}"
    )
    return summary


def weights(
    bpb_table: str | Path,
    benchmarks: str | Path,
    output: str | Path,
    *,
    benchmark_columns: list[str] | None = None,
    benchmark_metric: Literal["accuracy", "error"] = "accuracy",
    benchmark_average: Literal["mean", "median"] = "mean",
    models: list[str] | None = None,
    min_models: int = 10,
    tokens_run: str | Path | None = None,
    tokens_scorer_id: str | None = None,
    tokens_table: str | Path | None = None,
    domain: DomainSpec | None = None,
    unit: Literal["tokens", "bytes"] = "tokens",
    budget: int | None = None,
    keep_ratio: float | None = None,
    estimator: str = "sign_cdf",
    projection: str = "linear",
) -> dict[str, Any]:
    """Estimate per domain from a bpb table and a benchmark table, project onto weights under
    the caps set by the corpus' tokens per domain, and write the weights table."""
    X = load_bpb_table(bpb_table)
    bench = load_benchmarks(
        benchmarks, columns=benchmark_columns, metric=benchmark_metric, average=benchmark_average
    )
    amounts, source = _amounts(tokens_run, tokens_scorer_id, tokens_table, domain, unit)
    table, summary = domain_weights(
        X,
        bench,
        amounts,
        budget=budget,
        keep_ratio=keep_ratio,
        estimator=estimator,
        projection=projection,
        models=models,
        min_models=min_models,
    )
    out = write_any_table(output, table)
    summary.update(
        unit=unit,
        amounts_from=source,
        bpb_table=str(Path(bpb_table).expanduser().resolve()),
        benchmarks={
            "table": str(Path(benchmarks).expanduser().resolve()),
            "columns": bench.columns,
            "metric": bench.metric,
            "average": bench.average,
        },
        output=str(out),
    )
    write_json(out.with_suffix(".json"), summary)
    log.info(
        f"corr-weights: {summary['selected']} of {summary['domains']} domains selected "
        f"({estimator}, {projection}; budget {summary['budget']} {unit}) -> {out}"
    )
    return summary


def _amounts(
    run: str | Path | None,
    scorer_id: str | None,
    table: str | Path | None,
    domain: DomainSpec | None,
    unit: str,
) -> tuple[dict[str, int], dict[str, Any]]:
    """Tokens (or bytes) per domain of the corpus: from a scored run, or a table."""
    if (run is None) == (table is None):
        raise ConfigError(
            "give the corpus' size per domain: a scored run of the corpus (--tokens-run) or a "
            "table with domain and tokens columns (--tokens-table)"
        )
    if table is not None:
        data = read_table(table)
        column = "tokens" if unit == "tokens" else "bytes"
        for name in ("domain", column):
            if name not in data.column_names:
                raise InputError(
                    f"no {name!r} column; columns are {', '.join(data.column_names)}",
                    path=str(table),
                )
        values = data.column(column).to_pylist()
        bad = [d for d, v in zip(data.column("domain").to_pylist(), values, strict=True)
               if v is None or v < 0]  # fmt: skip
        if bad:
            raise InputError(
                f"missing or negative {column} for domain(s) {bad[:5]}", path=str(table)
            )
        domains = [str(d) for d in data.column("domain").to_pylist()]
        return dict(zip(domains, (int(v) for v in values), strict=True)), {"table": str(table)}
    if domain is None:
        raise ConfigError("counting tokens per domain in a run needs a domain or URL column")
    sid, pairs = run_pairs(run, scorer_id)
    found = amounts_per_domain(pairs, domain, unit)  # type: ignore[arg-type]
    source = {"run": str(RunLayout.at(run).root), "scorer_id": sid, "domain": domain.describe()}
    return {d: e["amount"] for d, e in found.items()}, source
