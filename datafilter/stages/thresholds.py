"""The thresholds stage: percentiles of the scores and, when a selector is named, its plan.

:func:`run_thresholds` reads every finished score shard of one scorer (through
:mod:`datafilter.aggregate`: exact order statistics in streaming passes of bounded memory,
:mod:`datafilter.order_stats`) and writes ``RUN/thresholds/<id>
[.by-<column>].parquet`` (group, metric, quantile, value: percentiles 0..100 of ppl and bpb and
any extra quantile) with a readable ``.json`` summary. With ``selector`` it also runs that
selector's ``plan`` on the same statistics and writes the plan file (:mod:`.plan`), which the
select stage applies.

Cross-fitted scores (score shards with a ``fold`` column) are calibrated per fold before they
are pooled (:mod:`datafilter.reference.calibration`): the percentiles and the plan are those of
the calibrated ppl and bpb, and the calibration (each fold's median, MAD, shift and scale) is
recorded in the summary and the plan file, from which select applies it.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from datafilter.aggregate import (
    PERCENTILES,
    ScoreFiles,
    ScoreStats,
    fold_statistics,
    has_fold_column,
    read_errors_named,
)
from datafilter.errors import ConfigError
from datafilter.io.atomic import write_json, write_table
from datafilter.io.guard import input_places, place, refuse_overlaps
from datafilter.io.layout import STATE_DIR, RunLayout
from datafilter.io.lock import run_lock
from datafilter.io.record import (
    RunRecord,
    finished_score_markers,
    require_record,
    resolve_scorer_id,
)
from datafilter.io.storage import AnyPath, ObjectPath
from datafilter.pause_points import pause_point
from datafilter.progress import heartbeat
from datafilter.reference.calibration import fold_calibration, fold_maps
from datafilter.scorers.columns import METRICS
from datafilter.selectors import Selector, make_selector, with_defaults
from datafilter.stages.plan import PlanRequest, plan_path, write_plan
from datafilter.validation import check_columns

log = logging.getLogger(__name__)

# Percentiles also listed in the JSON summary (all 101 are in the table).
SUMMARY_PERCENTILES = (0, 1, 5, 10, 25, 30, 50, 60, 75, 90, 95, 99, 100)


class ThresholdsSettings(BaseModel):
    """How the percentiles are computed (shared by the command and the run config's section)."""

    model_config = ConfigDict(extra="forbid")

    quantiles: list[float] = Field(
        [],
        description="extra quantile in [0, 1] beside the percentiles 0..100",
        json_schema_extra={"flag": "--quantile"},
    )
    approx: bool = Field(
        False,
        description="approximate quantiles from one pass over the scores (the summary states "
        "each group's rank error bound)",
    )
    memory_limit: str | None = Field(
        None, description="DuckDB memory limit, e.g. 4GB (past it DuckDB spills to disk)"
    )


class ThresholdsOptions(ThresholdsSettings):
    """``datafilter thresholds``: one percentile table and, with ``selector``, its plan."""

    scorer_id: str | None = Field(None, description="scores to use (default: the run's only one)")
    group_by: str | None = Field(
        None, description="group column of the input shards: percentiles (and plan) per group"
    )
    selector: str | None = Field(
        None, description="also make this selector's plan, which select applies"
    )
    options: dict[str, Any] = Field(
        {}, description="the selector's options, e.g. keep=0.5 (--set KEY=VALUE)"
    )
    table: bool = Field(
        True, description="write the percentile table (--no-table: only the selector's plan)"
    )


def run_thresholds(run_dir: str | AnyPath, opts: ThresholdsOptions) -> dict[str, Any]:
    """Percentiles 0..100 (plus ``quantiles``) of ppl and bpb, globally or per group column;
    with a selector, its plan (the summary's ``plan`` names the file)."""
    layout = RunLayout.at(run_dir)
    record = require_record(layout)
    sid = resolve_scorer_id(record, opts.scorer_id)
    for q in opts.quantiles:
        if not 0.0 <= q <= 1.0:
            raise ConfigError(f"quantile {q} is outside [0, 1]")
    selector = None
    if opts.selector:
        options, warning = with_defaults(opts.selector, opts.options, record.scorers[sid])
        if warning:
            log.warning(f"thresholds: warning: {warning}")
        selector = make_selector(opts.selector, options)
    if selector is None and not opts.table:
        raise ConfigError("--no-table makes only a plan: name a selector (--selector NAME)")
    extra_ids = selector.extra_scorers() if selector else []
    for x in extra_ids:
        resolve_scorer_id(record, x)
    check_columns(record.input, {"group_by": opts.group_by})  # one line before any scan
    qs = sorted(set(PERCENTILES) | {float(q) for q in opts.quantiles})
    # No score run replaces the scores meanwhile; off a terminal a line every few seconds.
    with run_lock(layout.lock_path, shared=True), heartbeat("thresholds", log.info):
        refuse_overlaps([place("run folder", layout.root)], input_places(record.input))
        checked = finished_score_markers(layout, record, sid)
        pairs = [(shard, path) for shard, path, _ in checked]
        stats: ScoreStats | None = None
        summary: dict[str, Any] = {}
        with read_errors_named():
            calibration = calibrate_folds(pairs, opts, layout, record.scorers[sid])
        if opts.table or not extra_ids:  # with other scorers the plan reads another view
            with read_errors_named():
                stats = score_stats(
                    pairs,
                    opts.group_by,
                    calibration=calibration,
                    memory_limit=opts.memory_limit,
                    temp_directory=duckdb_temp(layout),
                )
                if opts.table:
                    table, summary = threshold_table(stats, sid, qs, opts.approx)
                    if calibration is not None:
                        summary["calibration"] = calibration
            if opts.table:
                summary = _write_table(layout, sid, opts, table, summary)
        if selector is None:
            return summary
        if extra_ids:  # other scorers' rejections filter the rows too: another view
            stats = None
        plan_file = make_plan(layout, record, sid, selector, opts, checked, stats, calibration)
    return {**summary, "plan": str(plan_file)}


def calibrate_folds(
    pairs: list, opts: ThresholdsOptions, layout: RunLayout, entry: dict[str, Any]
) -> dict | None:
    """The per-fold calibration of cross-fitted scores (score shards with a ``fold`` column, of
    two folds or more), else None. ``entry``: the scorer's record in the run."""
    if not pairs or not has_fold_column(str(pairs[0][1])):
        if entry.get("scorer", {}).get("scorer") == "crossfit":
            log.warning(
                "thresholds: warning: these crossfit scores have no fold column (made before "
                "version 2): folds are pooled uncalibrated; score again with --overwrite"
            )
        return None
    stats = fold_statistics(
        [str(p) for _, p in pairs],
        memory_limit=opts.memory_limit,
        temp_directory=duckdb_temp(layout),
    )
    calibration = fold_calibration(stats)
    if calibration is not None:
        scales = ", ".join(
            f"fold {f}: median ln(ppl) {c['ppl']['median_log']:.4f}, MAD {c['ppl']['mad_log']:.4f}"
            for f, c in calibration["folds"].items()
        )
        log.info(f"thresholds: {len(stats)} folds calibrated to one scale ({scales})")
    return calibration


def _write_table(
    layout: RunLayout, sid: str, opts: ThresholdsOptions, table: pa.Table, summary: dict
) -> dict[str, Any]:
    """Write the percentile table and its JSON summary (returned)."""
    pause_point("thresholds")  # test-only (datafilter/pause_points.py)
    path = layout.thresholds_path(sid, opts.group_by)
    write_table(path, table)
    write_json(path.with_suffix(".json"), summary)
    log.info(
        f"thresholds: {summary['n_docs']} documents, {len(summary['groups'])} group(s) -> {path}"
    )
    return summary


def make_plan(
    layout: RunLayout,
    record: RunRecord,
    sid: str,
    selector: Selector,
    opts: ThresholdsOptions,
    checked: list,
    stats: ScoreStats | None,
    calibration: dict[str, Any] | None = None,
) -> AnyPath:
    """Run the selector's plan over the scores (``stats``, or a view joined with its extra
    scorers' scores) and write the plan file, with the folds' ``calibration``; its path."""
    request = PlanRequest(
        selector=selector.name,
        options=selector.options.model_dump(mode="json"),
        scorer_id=sid,
        group_by=opts.group_by,
        extra_scorers=selector.extra_scorers(),
    )
    shards = {sid: {shard.rel: marker["output"]["sha256"] for shard, _, marker in checked}}
    extra: dict[str, dict[str, AnyPath]] = {}
    for x in request.extra_scorers:
        found = finished_score_markers(layout, record, x)
        extra[x] = {shard.rel: path for shard, path, _ in found}
        shards[x] = {shard.rel: marker["output"]["sha256"] for shard, _, marker in found}
    if stats is None:
        pairs = [(shard, path) for shard, path, _ in checked]
        stats = score_stats(
            pairs,
            opts.group_by,
            extra,
            calibration=calibration,
            memory_limit=opts.memory_limit,
            temp_directory=f"{duckdb_temp(layout)}-plan-{os.getpid()}",
        )
    body = selector.plan(stats)
    for warning in body.get("warnings", []):
        log.warning(f"thresholds: warning: {warning}")
    for note in body.get("notes", []):
        log.info(f"thresholds: {note}")
    path = plan_path(layout, request)
    scorers = {x: record.scorers[x] for x in shards}
    write_plan(path, request, shards, scorers, body, calibration)
    log.info(f"thresholds: {request.selector} plan -> {path}")
    return path


def score_stats(
    pairs: list,
    group_by: str | None,
    extra: dict[str, dict[str, AnyPath]] | None = None,
    calibration: dict[str, Any] | None = None,
    **kw,
) -> ScoreStats:
    """DuckDB statistics over the score shards of ``pairs`` (input shard, score path), joined
    with other scorers' shards of the same inputs (``extra``: scorer id -> shard rel -> path),
    their ppl and bpb calibrated per fold by ``calibration``."""
    files = ScoreFiles(
        score_files=[str(p) for _, p in pairs],
        input_files=[str(s.path) for s, _ in pairs],
        extra={x: [str(paths[s.rel]) for s, _ in pairs] for x, paths in (extra or {}).items()},
        calibration=fold_maps(calibration),
    )
    return ScoreStats(files, group_by, **kw)


def duckdb_temp(layout: RunLayout) -> str:
    """Where DuckDB may spill: inside a local run folder, else a local temporary folder."""
    if isinstance(layout.root, ObjectPath):
        return str(Path(tempfile.gettempdir()) / "datafilter-duckdb")
    return str(layout.root / STATE_DIR / "duckdb")


def threshold_table(
    stats: ScoreStats, scorer_id: str, quantiles: Sequence[float], approx: bool
) -> tuple[pa.Table, dict[str, Any]]:
    """The long percentile table (group, metric, quantile, value) and a readable summary."""
    counts = stats.counts()
    columns: dict[str, list[Any]] = {k: [] for k in ("group", "metric", "quantile", "value")}
    summary: dict[str, Any] = {
        "scorer": scorer_id,
        "group_by": stats.group_by,
        "method": "approx" if approx else "exact",
        "n_docs": sum(counts.values()),
        "groups": {},
    }
    found = stats.quantiles_many(dict.fromkeys(METRICS, quantiles), approx)  # the same passes
    if approx:  # estimated from the first pass: how many ranks off each group's values may be
        summary["max_rank_error"] = {
            m: {g: e for (metric, g), e in sorted(stats.rank_error.items()) if metric == m}
            for m in METRICS
        }
    for metric in METRICS:
        for group, values in found[metric].items():
            for q, v in zip(quantiles, values, strict=True):
                columns["group"].append(group)
                columns["metric"].append(metric)
                columns["quantile"].append(float(q))
                columns["value"].append(v)
            entry = summary["groups"].setdefault(group, {"n_docs": counts[group]})
            entry[metric] = {
                f"p{round(q * 100, 4):g}": round(v, 6)
                for q, v in zip(quantiles, values, strict=True)
                if round(q * 100, 4) in SUMMARY_PERCENTILES or q not in PERCENTILES
            }
    table = pa.table(
        {
            "scorer": pa.array([scorer_id] * len(columns["group"]), pa.string()),
            "group_by": pa.array([stats.group_by] * len(columns["group"]), pa.string()),
            **{k: pa.array(v) for k, v in columns.items()},
            "n_docs": pa.array([counts[g] for g in columns["group"]], pa.int64()),
        }
    )
    return table, summary
