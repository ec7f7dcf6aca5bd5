"""Tables from outside: bits per byte (one row per domain, one column per model) and benchmark
results (one row per model, one column per benchmark), checked with errors that name the file,
the model and the domain."""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa

from datafilter.errors import ConfigError, InputError

MIN_MODELS = 10


@dataclass(frozen=True)
class BpbTable:
    """``X[k, j]``: bits per byte of model ``models[k]`` on domain ``domains[j]``."""

    domains: list[str]
    models: list[str]
    X: np.ndarray
    source: str = ""

    def to_arrow(self, domain_column: str = "domain") -> pa.Table:
        columns: dict[str, pa.Array] = {domain_column: pa.array(self.domains, pa.string())}
        for k, model in enumerate(self.models):
            columns[model] = pa.array(self.X[k], pa.float64())
        return pa.table(columns)


@dataclass(frozen=True)
class Benchmarks:
    """Each model's benchmark error ``y`` (1 - accuracy, averaged as asked) and the inputs."""

    models: list[str]
    y: np.ndarray
    columns: list[str]
    metric: str
    average: str
    per_benchmark: dict[str, list[float]] = field(default_factory=dict)
    source: str = ""


def read_table(path: str | Path) -> pa.Table:
    """A CSV (``.csv``, ``.tsv``) or Parquet file as an Arrow table."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise InputError("file not found", path=str(file))
    suffix = file.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            from pyarrow import csv

            delimiter = "\t" if suffix == ".tsv" else ","
            return csv.read_csv(file, parse_options=csv.ParseOptions(delimiter=delimiter))
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return pq.read_table(file)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"cannot read the table ({exc})", path=str(file)) from exc
    raise InputError("unknown table format; use .csv, .tsv or .parquet", path=str(file))


def _key_column(table: pa.Table, name: str, path: str, what: str) -> list[str]:
    if name not in table.column_names:
        raise InputError(
            f"no {name!r} column ({what}); columns are {', '.join(table.column_names)}", path=path
        )
    values = table.column(name).cast(pa.string()).to_pylist()
    nulls = [i for i, v in enumerate(values) if v is None or not v.strip()]
    if nulls:
        raise InputError(f"empty {name!r} value in row(s) {_few(nulls)}", path=path)
    values = [v.strip() for v in values]
    repeated = sorted(v for v, n in Counter(values).items() if n > 1)
    if repeated:
        raise InputError(f"repeated {name!r} value(s): {_few(repeated)}", path=path)
    return values


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)


def _numeric(table: pa.Table, column: str, path: str) -> np.ndarray:
    kind = table.schema.field(column).type
    if not _is_number(kind):
        raise InputError(f"column {column!r} has type {kind}; expected numbers", path=path)
    return table.column(column).cast(pa.float64()).to_numpy(zero_copy_only=False)


def load_bpb_table(path: str | Path, domain_column: str = "domain") -> BpbTable:
    """One row per domain (``domain_column``), every other column a model's bits per byte."""
    table = read_table(path)
    where = str(path)
    domains = _key_column(table, domain_column, where, "one row per domain")
    models = [c for c in table.column_names if c != domain_column]
    if not models:
        raise InputError("no model columns besides the domain column", path=where)
    rows = []
    for model in models:
        values = _numeric(table, model, where)
        missing = [domains[i] for i in np.flatnonzero(~np.isfinite(values))]
        if missing:
            raise InputError(
                f"model {model!r} has no value (empty, NaN or infinite) for "
                f"{len(missing)} domain(s): {_few(missing)}",
                path=where,
            )
        negative = [domains[i] for i in np.flatnonzero(values < 0)]
        if negative:
            raise InputError(
                f"model {model!r} has negative bits per byte for domain(s) {_few(negative)}",
                path=where,
            )
        rows.append(values)
    return BpbTable(domains, models, np.vstack(rows), source=where)


def load_benchmarks(
    path: str | Path,
    *,
    columns: list[str] | None = None,
    metric: Literal["accuracy", "error"] = "accuracy",
    average: Literal["mean", "median"] = "mean",
    model_column: str = "model",
) -> Benchmarks:
    """One row per model: ``model_column`` and one column per benchmark (accuracy or error in
    [0, 1]); ``columns`` chooses the benchmarks (default: every other numeric column),
    ``average`` how the chosen errors are combined into one error per model."""
    if metric not in ("accuracy", "error"):
        raise ConfigError(f"benchmark metric must be 'accuracy' or 'error', got {metric!r}")
    if average not in ("mean", "median"):
        raise ConfigError(f"benchmark average must be 'mean' or 'median', got {average!r}")
    table = read_table(path)
    where = str(path)
    models = _key_column(table, model_column, where, "one row per model")
    available = [c for c in table.column_names if c != model_column]
    numeric = [c for c in available if _is_number(table.schema.field(c).type)]
    chosen = list(columns) if columns else numeric
    unknown = [c for c in chosen if c not in available]
    if unknown:
        raise InputError(
            f"benchmark column(s) {_few(unknown)} not found; the table has {_few(available, 20)}",
            path=where,
        )
    if not chosen:
        raise InputError("no numeric benchmark columns besides the model column", path=where)
    values = {}
    for column in chosen:
        v = _numeric(table, column, where)
        missing = [models[i] for i in np.flatnonzero(~np.isfinite(v))]
        if missing:
            raise InputError(
                f"benchmark {column!r} has no value (empty or NaN) for model(s) {_few(missing)}",
                path=where,
            )
        outside = [models[i] for i in np.flatnonzero((v < 0) | (v > 1))]
        if outside:
            raise InputError(
                f"benchmark {column!r} has values outside [0, 1] for model(s) {_few(outside)}; "
                "give accuracies or errors as fractions (percentages divided by 100)",
                path=where,
            )
        values[column] = v if metric == "error" else 1.0 - v
    stacked = np.vstack([values[c] for c in chosen])
    y = np.mean(stacked, axis=0) if average == "mean" else np.median(stacked, axis=0)
    return Benchmarks(
        models=models,
        y=y,
        columns=chosen,
        metric=metric,
        average=average,
        per_benchmark={c: values[c].tolist() for c in chosen},
        source=where,
    )


def align(
    bpb: BpbTable,
    benchmarks: Benchmarks,
    models: list[str] | None = None,
    min_models: int = MIN_MODELS,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The models used (``models``, or every model of the bpb table), their bpb rows and errors.

    Every model must be in both tables; fewer than ``min_models`` models is an error (the
    estimates rank domains by agreement over pairs of models and are noise with few models)."""
    chosen = list(models) if models else list(bpb.models)
    repeated = sorted(m for m, n in Counter(chosen).items() if n > 1)
    if repeated:
        raise ConfigError(f"model(s) named more than once: {_few(repeated)}")
    problems = []
    for names, other, label in (
        (bpb.models, "bpb table", bpb.source),
        (benchmarks.models, "benchmark table", benchmarks.source),
    ):
        missing = [m for m in chosen if m not in names]
        if missing:
            problems.append(f"not in the {other} {label}: {_suggest(missing, names)}")
    if problems:
        raise InputError("model names do not match: " + "; ".join(problems))
    if len(chosen) < min_models:
        raise InputError(
            f"only {len(chosen)} model(s); at least {min_models} are required: the estimators "
            "compare pairs of models and are noise with few of them (the paper used 90). "
            "Lower min_models (--min-models) to run anyway"
        )
    rows = [bpb.models.index(m) for m in chosen]
    y = np.array([benchmarks.y[benchmarks.models.index(m)] for m in chosen])
    if np.all(y == y[0]):
        raise InputError(
            f"every model has the same benchmark error ({y[0]:.6g}): nothing to correlate with"
        )
    return chosen, bpb.X[rows], y


def _suggest(missing: list[str], names: list[str]) -> str:
    parts = []
    folded = {n.strip().casefold(): n for n in names}
    for name in missing[:10]:
        same = folded.get(name.strip().casefold())
        close = [same] if same else difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
    return ", ".join(parts) + more


def _few(items, n: int = 5) -> str:
    items = [str(i) for i in items]
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")
