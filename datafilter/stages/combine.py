"""The combine stage: several score ids of one run summed into a derived score id.

Each term names a score id, a metric (``ppl``, taken as its natural log, or ``bpb``), a side and
a weight. Per group (or over all documents), each term's values are standardised robustly::

    z = (x - median) / (1.4826 * MAD)          MAD = median(|x - median|)

and the document's combined value is the sum of the terms' contributions, where higher is
worse: ``low`` (lower is better) adds ``weight * z``, ``high`` adds ``-weight * z`` and ``both``
(distance from the typical value is worse) adds ``weight * |z|``. A group whose MAD is 0 cannot
be standardised: the term adds 0 there (a warning, and the definition records it).

The combined value ``c`` is written as ordinary score shards in ``RUN/scores/<name>/``,
row-aligned with the input like a scorer's, so thresholds, plans, every selector and the report
read it unchanged: ``bpb = c``, ``ppl = exp(c)`` (same order; selectors rank by ``ppl``),
``n_tokens`` and ``n_bytes`` of the first term, ``logprob_sum = -c * n_tokens`` (so
``ppl = exp(-logprob_sum / n_tokens)`` holds as for a scorer). A document that any term did not
score is rejected as ``combine:<score id>:<that term's reason>``; a combined value too large for
``exp`` as ``combine:non_finite``.

The definition (terms, group column, the source score ids' recorded settings, and the medians
and MADs used) is the derived id's entry in ``run.json``; each shard's completion record also
names the source score shards' sha256: rescored sources make the shard again here, and until
then every later stage refuses the derived id (:func:`datafilter.io.record.changed_sources`).
Asking for another definition under an existing name is refused unless ``overwrite``.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from datafilter.aggregate import ALL, read_errors_named
from datafilter.errors import ConfigError
from datafilter.io.atomic import parquet_writer, remove_temp_files, write_json
from datafilter.io.content import content_record
from datafilter.io.guard import input_places, place, refuse_overlaps
from datafilter.io.layout import STATE_DIR, RunLayout
from datafilter.io.lock import run_lock
from datafilter.io.markers import write_marker
from datafilter.io.record import (
    RunRecord,
    finished_score_markers,
    require_record,
    resolve_scorer_id,
    save_record,
    score_check,
    score_marker_fields,
)
from datafilter.io.shards import Shard, open_parquet, open_shard, require_column
from datafilter.scorers.columns import SCORE_SCHEMA
from datafilter.stages.select import group_keys
from datafilter.stages.thresholds import duckdb_temp, score_stats

log = logging.getLogger(__name__)

SCORER_NAME = "combine"
VERSION = 1
MAD_TO_SIGMA = 1.4826  # 1 / Phi^-1(3/4): the MAD of a normal distribution times this is sigma
NON_FINITE = "combine:non_finite"
BATCH_ROWS = 65_536


class CombineTerm(BaseModel):
    """One term: a score id of the run, its metric, which side is good, and a weight."""

    model_config = ConfigDict(extra="forbid")

    scorer_id: str = Field(min_length=1, description="a score id of the run")
    metric: Literal["ppl", "bpb"] = Field("ppl", description="ppl (as its log) or bpb")
    side: Literal["low", "high", "both"] = Field(
        "low", description="low/high: that end is good; both: far from the median is bad"
    )
    weight: float = Field(1.0, gt=0, allow_inf_nan=False, description="the term's weight")

    @classmethod
    def parse(cls, text: str) -> dict[str, Any]:
        """``ID:METRIC:SIDE[:WEIGHT]`` (the score id may itself hold colons)."""
        parts = text.split(":")
        weight: float | None = None
        if len(parts) >= 4:
            try:
                weight = float(parts[-1])
                parts = parts[:-1]
            except ValueError:
                pass
        if len(parts) < 3:
            raise ValueError(f"term {text!r} is not ID:METRIC:SIDE[:WEIGHT], e.g. kenlm:ppl:low")
        values: dict[str, Any] = {
            "scorer_id": ":".join(parts[:-2]),
            "metric": parts[-2],
            "side": parts[-1],
        }
        if weight is not None:
            values["weight"] = weight
        return values

    @property
    def label(self) -> str:
        return f"{self.scorer_id}:{self.metric}:{self.side}:{self.weight:g}"


class CombineOptions(BaseModel):
    """``datafilter combine``, and the ``combine:`` section of a run config."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1, pattern=r"^[^/\\]+$", description="the derived score id to write"
    )
    terms: list[CombineTerm] = Field(
        min_length=1,
        description="ID:METRIC:SIDE[:WEIGHT], e.g. kenlm:ppl:low (repeat the flag)",
        json_schema_extra={"flag": "--term", "metavar": "ID:METRIC:SIDE[:WEIGHT]"},
    )
    group_by: str | None = Field(
        None, description="input column: medians and MADs per group of this column"
    )
    overwrite: bool = Field(
        False, description="replace scores defined otherwise under this name"
    )
    memory_limit: str | None = Field(
        None, description="DuckDB memory limit for the medians, e.g. 4GB"
    )

    @field_validator("terms", mode="before")
    @classmethod
    def _terms_from_text(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [CombineTerm.parse(v) if isinstance(v, str) else v for v in value]
        return value


def run_combine(run_dir: str, opts: CombineOptions) -> dict[str, Any]:
    """Write the combined scores of ``opts.terms`` as score id ``opts.name``; finished shards
    (same definition, same source score shards) are skipped. The stage's summary."""
    layout = RunLayout.at(run_dir)
    record = require_record(layout)
    refuse_overlaps([place("run folder", layout.root)], input_places(record.input))
    with run_lock(layout.lock_path):
        record = require_record(layout)
        _check_names(record, opts)
        sources = {t.scorer_id: finished_score_markers(layout, record, t.scorer_id)
                   for t in opts.terms}  # fmt: skip
        shards = [shard for shard, _, _ in sources[opts.terms[0].scorer_id]]
        definition = _definition(record, opts)
        old = record.scorers.get(opts.name)
        if old is not None and not opts.overwrite:
            if old["scorer"].get("scorer") != SCORER_NAME:
                raise ConfigError(
                    f"{layout.scores_dir(opts.name)} holds a scorer's scores; choose another "
                    "--name, or --overwrite to replace them"
                )
            if old["scorer"]["definition"] != definition:
                raise ConfigError(
                    f"{layout.scores_dir(opts.name)} holds scores combined otherwise "
                    f"({_describe(old['scorer']['definition'])}); choose another --name, or "
                    "--overwrite to replace them"
                )
        shas = {sid: {s.rel: m["output"]["sha256"] for s, _, m in found}
                for sid, found in sources.items()}  # fmt: skip
        if old is None or old["scorer"].get("definition") != definition or _todo(
            layout, record, opts.name, shards, shas
        ):
            entry = _entry(layout, opts, definition, sources)
            record.scorers[opts.name] = entry
            save_record(layout, record)
            todo = _todo(layout, record, opts.name, shards, shas)
        else:
            todo = []
        log.info(f"combine: {len(todo)} of {len(shards)} shards to write ({opts.name})")
        remove_temp_files(layout.scores_dir(opts.name))
        standardisation = record.scorers[opts.name]["scorer"]["standardisation"]
        for shard in todo:
            _write_shard(layout, record, opts, shard, sources, shas, standardisation)
        summary = _summary(layout, opts.name, shards)
        write_json(layout.root / STATE_DIR / "score" / opts.name / "summary.json", summary)
    entry = record.scorers[opts.name]["scorer"]
    definition = {**entry["options"], "standardisation": entry["standardisation"]}
    return {**summary, "definition": definition}


def _check_names(record: RunRecord, opts: CombineOptions) -> None:
    for term in opts.terms:
        if term.scorer_id == opts.name:
            raise ConfigError(f"the combined score {opts.name!r} cannot be one of its terms")
        resolve_scorer_id(record, term.scorer_id)
        if record.scorers[term.scorer_id].get("scorer", {}).get("scorer") == "crossfit":
            # thresholds calibrate the folds before pooling (reference.calibration); combine
            # does not yet, and the folds' scales would pass into the combined value
            raise ConfigError(
                f"term {term.label}: combine cannot use cross-fitted scores (their folds are "
                "calibrated by thresholds only); combine scores of single models"
            )


def _definition(record: RunRecord, opts: CombineOptions) -> dict[str, Any]:
    """What the combined scores depend on besides the source shards' bytes."""
    return {
        "terms": [t.model_dump(mode="json") for t in opts.terms],
        "group_by": opts.group_by,
        "sources": {t.scorer_id: record.scorers[t.scorer_id] for t in opts.terms},
    }


def _describe(definition: dict[str, Any]) -> str:
    terms = " + ".join(CombineTerm(**t).label for t in definition["terms"])
    by = definition.get("group_by")
    return f"{terms}{f' by {by}' if by else ''}, over the sources' settings recorded then"


def _entry(layout: RunLayout, opts: CombineOptions, definition: dict, sources: dict) -> dict:
    """The derived id's record entry: its definition and the medians/MADs measured now."""
    standardisation = []
    for term in opts.terms:
        pairs = [(shard, path) for shard, path, _ in sources[term.scorer_id]]
        with read_errors_named():
            stats = score_stats(
                pairs,
                opts.group_by,
                memory_limit=opts.memory_limit,
                temp_directory=duckdb_temp(layout),
            )
            found = stats.median_mad(term.metric, log=term.metric == "ppl")
        groups = {}
        for group, (n, median, mad) in found.items():
            groups[group] = {"n_docs": n, "median": median, "mad": mad}
            if mad == 0:
                log.warning(
                    f"combine: warning: term {term.label} has a MAD of 0 in group {group!r} "
                    f"({n} documents): it adds 0 there"
                )
        standardisation.append({"term": term.label, "groups": groups})
    first = opts.terms[0].scorer_id
    scorer = {
        "scorer": SCORER_NAME,
        "version": VERSION,
        "options": {"terms": [t.label for t in opts.terms], "group_by": opts.group_by},
        "definition": definition,
        "standardisation": standardisation,
    }
    return {"scorer": scorer, "settings": definition["sources"][first]["settings"]}


def _todo(layout, record: RunRecord, name: str, shards: list[Shard], shas: dict) -> list[Shard]:
    """The shards whose combined scores are missing, stale or made from other source shards."""
    if name not in record.scorers:
        return list(shards)
    out = []
    for shard in shards:
        check = score_check(layout, record, name, shard)
        wanted = {sid: found[shard.rel] for sid, found in shas.items()}
        if check.problem is not None or (check.marker or {}).get("sources") != wanted:
            out.append(shard)
    return out


def _write_shard(
    layout: RunLayout,
    record: RunRecord,
    opts: CombineOptions,
    shard: Shard,
    sources: dict,
    shas: dict,
    standardisation: list[dict],
) -> None:
    """The combined score shard of one input shard, then its completion record."""
    paths = {sid: dict((s.rel, p) for s, p, _ in found) for sid, found in sources.items()}
    first = opts.terms[0].scorer_id
    readers = {sid: open_parquet(paths[sid][shard.rel]) for sid in paths}
    columns = list(SCORE_SCHEMA.names)
    batches = {sid: r.iter_batches(BATCH_ROWS, columns=columns) for sid, r in readers.items()}
    groups_in = None
    if opts.group_by is not None:
        pf = open_shard(shard.path)
        require_column(pf, opts.group_by, shard.path)
        groups_in = pf.iter_batches(BATCH_ROWS, columns=[opts.group_by])
    rejected: Counter[str] = Counter()
    rows = 0
    written: dict[str, Any] = {}
    out_path = layout.score_path(opts.name, shard.rel)
    with parquet_writer(out_path, SCORE_SCHEMA, written) as writer:
        for base in batches[first]:
            tables = {first: base}
            for sid in batches:
                if sid != first:
                    tables[sid] = next(batches[sid])
            if groups_in is not None:
                groups = group_keys(next(groups_in), opts.group_by)
            else:
                groups = np.full(base.num_rows, ALL, dtype=object)
            table = _combine_batch(tables, groups, opts.terms, standardisation, rejected)
            writer.write_table(table)
            rows += base.num_rows
    stats = {
        "shard": shard.rel,
        "rows": rows,
        "scored": rows - sum(rejected.values()),
        "rejected": dict(sorted(rejected.items())),
    }
    source_marker = next(m for s, _, m in sources[first] if s.rel == shard.rel)
    marker = {
        **score_marker_fields(record, opts.name),
        "input": source_marker["input"],
        "output": content_record(out_path, written["sha256"]),
        "sources": {sid: found[shard.rel] for sid, found in shas.items()},
        "stats": stats,
    }
    write_marker(layout.marker_path("score", opts.name, shard.rel), marker)


def _combine_batch(
    tables: dict[str, pa.RecordBatch],
    groups: np.ndarray,
    terms: list[CombineTerm],
    standardisation: list[dict],
    rejected: Counter[str],
) -> pa.Table:
    """One batch of combined scores from the terms' row-aligned score batches."""
    base = tables[terms[0].scorer_id]
    n = base.num_rows
    reasons: list[str | None] = [None] * n
    total = np.zeros(n)
    for term, std in zip(terms, standardisation, strict=True):
        batch = tables[term.scorer_id]
        if batch.num_rows != n:
            raise ConfigError(f"score shards of {term.scorer_id!r} are not row-aligned")
        for i, reason in enumerate(batch.column("reject_reason").to_pylist()):
            if reason is not None and reasons[i] is None:
                reasons[i] = f"combine:{term.scorer_id}:{reason}"
        values = batch.column(term.metric).to_numpy(zero_copy_only=False).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.log(values) if term.metric == "ppl" else values
        z = np.zeros(n)
        for group, entry in std["groups"].items():
            rows = groups == group
            if entry["mad"] > 0 and rows.any():
                z[rows] = (x[rows] - entry["median"]) / (MAD_TO_SIGMA * entry["mad"])
        side = {"low": z, "high": -z, "both": np.abs(z)}[term.side]
        total += term.weight * side
    valid = np.array([r is None for r in reasons], dtype=bool)
    with np.errstate(over="ignore"):
        ppl = np.exp(total)
    for i in np.flatnonzero(valid & ~(np.isfinite(total) & np.isfinite(ppl))):
        reasons[i] = NON_FINITE
    valid = np.array([r is None for r in reasons], dtype=bool)
    rejected.update(r for r in reasons if r is not None)
    n_tokens = base.column("n_tokens").to_numpy(zero_copy_only=False)
    nan = np.full(n, math.nan)
    return pa.table(
        {
            "doc_id": base.column("doc_id"),
            "row": base.column("row"),
            "id_hash": base.column("id_hash"),
            "logprob_sum": np.where(valid, -total * n_tokens, nan),
            "n_tokens": n_tokens,
            "n_bytes": base.column("n_bytes"),
            "ppl": np.where(valid, ppl, nan),
            "bpb": np.where(valid, total, nan),
            "reject_reason": pa.array(reasons, pa.string()),
        },
        schema=SCORE_SCHEMA,
    )


def _summary(layout: RunLayout, name: str, shards: list[Shard]) -> dict[str, Any]:
    from datafilter.io.markers import read_marker

    rows = scored = 0
    rejected: Counter[str] = Counter()
    for shard in shards:
        marker = read_marker(layout.marker_path("score", name, shard.rel)) or {}
        stats = marker.get("stats", {})
        rows += stats.get("rows", 0)
        scored += stats.get("scored", 0)
        rejected.update(stats.get("rejected", {}))
    return {
        "scorer_id": name,
        "shards": len(shards),
        "rows": rows,
        "scored": scored,
        "rejected": dict(sorted(rejected.items())),
    }
