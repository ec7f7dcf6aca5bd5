"""The select stage: apply the thresholds stage's plan, one filtered output shard per input shard.

:func:`run_select` owns the stage: its options (:class:`SelectOptions`), finding and checking
the plan (made by ``datafilter thresholds --selector``: select never makes one), the locks on
the run and output folders, which shards still need writing, running them on the executor and
the manifest, which accounts for every row as kept, dropped (by reason) or rejected.
:func:`select_shard` is the per-shard worker: the selector's pure ``decide`` on one shard.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from datafilter.aggregate import ALL, NULL_GROUP, calibrated_scores
from datafilter.errors import ConfigError, InputError
from datafilter.io.atomic import dumps_json, parquet_writer, remove_temp_files, write_json
from datafilter.io.content import content_record, identity
from datafilter.io.guard import input_places, place, refuse_overlaps, require_own_folder
from datafilter.io.jsonl import is_jsonl, jsonl_writer
from datafilter.io.layout import STATE_DIR, RunLayout
from datafilter.io.lock import run_lock
from datafilter.io.manifest import build_manifest
from datafilter.io.markers import is_complete, read_marker, write_marker
from datafilter.io.owned import MANIFEST, claim, is_select_output
from datafilter.io.record import finished_score_markers, require_record, resolve_scorer_id
from datafilter.io.shards import iter_batches, open_shard
from datafilter.io.storage import AnyPath, location, remove_tree
from datafilter.io.timing import StageClock
from datafilter.pause_points import pause_point
from datafilter.reference.calibration import fold_maps
from datafilter.runtime import RuntimeOptions
from datafilter.scorers.columns import FOLD, SCORE_SCHEMA
from datafilter.selectors import make_selector, with_defaults
from datafilter.selectors.base import Selector
from datafilter.stages.jobs import drive, raise_failures
from datafilter.stages.plan import (
    PlanRequest,
    body_digest,
    plan_path,
    read_plan,
    thresholds_command,
)
from datafilter.validation import check_columns

log = logging.getLogger(__name__)

SCORE_OUTPUT_PREFIX = "datafilter_"
SCORE_OUTPUT_COLUMNS = ("ppl", "bpb", "logprob_sum", "n_tokens", "n_bytes")
REASON_COLUMN = SCORE_OUTPUT_PREFIX + "reason"  # --write-dropped: why a row is not kept


@dataclass(frozen=True)
class SelectJob:
    """One shard to filter: its input, its score shard, its output and completion record."""

    shard_rel: str
    input_path: AnyPath
    score_path: AnyPath
    output_path: AnyPath
    marker_path: AnyPath
    marker_fields: dict[str, Any]
    extra_score_paths: dict[str, AnyPath] = field(default_factory=dict)
    # sha256 of each score shard when the selection was planned (by path): checked when read.
    planned_sha256: dict[str, str] = field(default_factory=dict)
    # --write-dropped: where this shard's dropped and rejected rows go (with the reason).
    dropped_path: AnyPath | None = None


@dataclass(frozen=True)
class SelectSettings:
    group_by: str | None
    seed: int
    with_scores: bool
    report_by: str | None = None
    batch_rows: int = 8192
    # The plan's per-fold calibration (cross-fitted scores): fold -> ppl/bpb shift and scale.
    fold_maps: dict[int, tuple[float, float, float, float]] = field(default_factory=dict)

    @property
    def tally_by(self) -> str | None:
        """The column the manifest counts by: ``report_by``, else the selection groups."""
        return self.report_by or self.group_by


def select_shard(
    job: SelectJob, selector: Selector, plan: dict[str, Any], settings: SelectSettings
) -> dict[str, Any]:
    """Filter one shard; write the output shard, then its completion record (with counts)."""
    pf = open_shard(job.input_path)
    n_rows = pf.metadata.num_rows
    columns = [*SCORE_SCHEMA.names, FOLD] if settings.fold_maps else SCORE_SCHEMA.names
    scores = _aligned_scores(job.score_path, n_rows, job.input_path, job.planned_sha256, columns)
    extra = {
        sid: _aligned_scores(path, n_rows, job.input_path, job.planned_sha256)
        for sid, path in job.extra_score_paths.items()
    }
    for column in {settings.group_by, settings.report_by} - {None}:
        if column not in pf.schema_arrow.names:
            raise InputError(f"group column {column!r} not found", path=str(job.input_path))
    tally = _Tally()
    schema = _output_schema(pf.schema_arrow, selector, settings)
    offset = 0
    written: dict[str, Any] = {}
    dropped_written: dict[str, Any] = {}
    dropped_schema = _dropped_schema(pf.schema_arrow)
    with contextlib.ExitStack() as stack:
        writer = stack.enter_context(_shard_writer(job.output_path, schema, written))
        dropped_writer = (
            stack.enter_context(_shard_writer(job.dropped_path, dropped_schema, dropped_written))
            if job.dropped_path is not None
            else None
        )
        for batch in iter_batches(pf, None, settings.batch_rows, job.input_path):
            part = scores.slice(offset, batch.num_rows)
            offset += batch.num_rows
            extra_part = {
                sid: t.slice(offset - batch.num_rows, batch.num_rows) for sid, t in extra.items()
            }
            kept, not_kept = _decide_batch(
                batch, part, extra_part, job.score_path, selector, plan, settings, tally,
                dropped_writer is not None,
            )  # fmt: skip
            if kept.num_rows:
                writer.write_table(kept.cast(schema))
            if not_kept is not None and not_kept.num_rows:
                dropped_writer.write_table(not_kept.cast(dropped_schema))
            if offset == batch.num_rows:
                pause_point("select:shard")  # test-only (datafilter/pause_points.py)
    if offset != scores.num_rows:
        raise InputError(
            f"read {offset} rows, expected {scores.num_rows}", path=str(job.input_path)
        )
    stats = {"shard": job.shard_rel, **tally.as_dict()}
    output = content_record(job.output_path, written["sha256"])
    fields = {**job.marker_fields, "output": output, "stats": stats}
    if job.dropped_path is not None:
        fields["dropped_output"] = content_record(job.dropped_path, dropped_written["sha256"])
    write_marker(job.marker_path, fields)
    return stats


def _shard_writer(path: AnyPath, schema: pa.Schema, written: dict[str, Any]):
    """A writer of the shard's format: JSONL for a JSONL name (the output keeps the input's
    format), Parquet otherwise."""
    if is_jsonl(path.name):
        return jsonl_writer(path, written)
    return parquet_writer(path, schema, written)


def _dropped_schema(input_schema: pa.Schema) -> pa.Schema:
    """The input's columns and the reason a row was not kept."""
    if REASON_COLUMN in input_schema.names:
        raise InputError(f"input already has a column {REASON_COLUMN}")
    fields = [*input_schema, pa.field(REASON_COLUMN, pa.string())]
    return pa.schema(fields, metadata=input_schema.metadata)


def _aligned_scores(
    path: AnyPath,
    n_rows: int,
    input_path: AnyPath,
    planned: dict[str, str],
    columns: list[str] = SCORE_SCHEMA.names,
) -> pa.Table:
    """A score shard, read whole, checked to hold the bytes it held when the selection was
    planned (``planned``: path -> sha256) and to have one row per input row."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"score shard unreadable ({exc}); score again", path=str(path)) from exc
    expected = planned.get(str(path))
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise InputError(
            "score shard changed since the plan was made (scored again meanwhile?); make the "
            "plan again (datafilter thresholds --selector ...), then select",
            path=str(path),
        )
    try:
        table = pq.read_table(pa.BufferReader(data), columns=columns)
    except (pa.ArrowException, OSError, KeyError) as exc:
        raise InputError(f"score shard unreadable ({exc}); score again", path=str(path)) from exc
    if table.num_rows != n_rows:
        raise InputError(
            f"score shard {path} has {table.num_rows} rows but the input has {n_rows}: "
            "the input changed since scoring; score it again",
            path=str(input_path),
        )
    return table


def group_keys(batch: pa.RecordBatch, group_by: str | None) -> np.ndarray:
    """Each row's group key as used by the thresholds (nulls get their own group)."""
    if group_by is None:
        return np.full(batch.num_rows, ALL, dtype=object)
    values = batch.column(group_by).cast(pa.string()).to_pylist()
    return np.array([NULL_GROUP if v is None else v for v in values], dtype=object)


def _output_schema(input_schema: pa.Schema, selector: Selector, settings: SelectSettings):
    """The input schema, then score columns (if asked for), then the selector's columns."""
    extra = []
    if settings.with_scores:
        extra += [(c, SCORE_SCHEMA.field(c).type) for c in SCORE_OUTPUT_COLUMNS]
    extra += list(selector.output_columns().items())
    fields = [pa.field(SCORE_OUTPUT_PREFIX + name, kind) for name, kind in extra]
    clash = {f.name for f in fields} & set(input_schema.names)
    if clash:
        raise InputError(f"input already has column(s) {', '.join(sorted(clash))}")
    return pa.schema(list(input_schema) + fields, metadata=input_schema.metadata)


def _decide_batch(
    batch: pa.RecordBatch,
    scores: pa.Table,
    extra: dict[str, pa.Table],
    score_file: AnyPath,
    selector: Selector,
    plan: dict[str, Any],
    settings: SelectSettings,
    tally: _Tally,
    want_dropped: bool = False,
) -> tuple[pa.Table, pa.Table | None]:
    """The kept rows (with the asked-for score and selector columns), and with
    ``want_dropped`` the other rows with the reason (the drop reason, or the reject reason)."""
    groups = group_keys(batch, settings.group_by)
    reasons = scores.column("reject_reason").to_pylist()
    arrays = {c: scores.column(c).to_numpy(zero_copy_only=False) for c in ("ppl", "bpb")}
    if settings.fold_maps:  # cross-fitted: the plan's cuts are on the calibrated scores
        arrays["ppl"], arrays["bpb"] = calibrated_scores(scores, settings.fold_maps)
    arrays["id_hash"] = scores.column("id_hash").to_numpy()
    arrays["row"] = scores.column("row").to_numpy()
    arrays["score_file"] = np.full(scores.num_rows, str(score_file), dtype=object)
    for sid, table in extra.items():
        for c in ("ppl", "bpb"):
            arrays[f"{sid}:{c}"] = table.column(c).to_numpy(zero_copy_only=False)
        other = table.column("reject_reason").to_pylist()
        reasons = [r or (o and f"{sid}:{o}") for r, o in zip(reasons, other, strict=True)]
    valid = np.array([r is None for r in reasons], dtype=bool)
    decision = selector.decide(arrays, groups, plan, settings.seed)
    keep = decision.keep & valid
    tally_groups = (
        groups if settings.tally_by == settings.group_by else group_keys(batch, settings.tally_by)
    )
    tally.add(tally_groups, valid, keep, reasons, decision.drop_reason, scores)
    table = pa.Table.from_batches([batch])
    not_kept = None
    if want_dropped:
        why = np.broadcast_to(np.asarray(decision.drop_reason, dtype=object), keep.shape)
        reason = [r if r is not None else str(w) for r, w in zip(reasons, why, strict=True)]
        not_kept = table.append_column(REASON_COLUMN, pa.array(reason, pa.string()))
        not_kept = not_kept.filter(pa.array(~keep))
    if settings.with_scores:
        for c in SCORE_OUTPUT_COLUMNS:
            table = table.append_column(SCORE_OUTPUT_PREFIX + c, scores.column(c))
    for name, kind in selector.output_columns().items():
        table = table.append_column(
            SCORE_OUTPUT_PREFIX + name, pa.array(decision.columns[name], type=kind)
        )
    return table.filter(pa.array(keep)), not_kept


class _Tally:
    """Counts of read / kept / dropped / rejected rows, overall and per group."""

    def __init__(self) -> None:
        self.read = 0
        self.kept = 0
        self.dropped: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.groups: dict[str, Counter[str]] = defaultdict(Counter)

    def add(self, groups, valid, keep, reasons, drop_reason, scores: pa.Table) -> None:
        n_tokens = scores.column("n_tokens").to_numpy()
        n_bytes = scores.column("n_bytes").to_numpy()
        self.read += len(keep)
        self.kept += int(keep.sum())
        dropped = valid & ~keep
        if isinstance(drop_reason, str):
            if dropped.any():
                self.dropped[drop_reason] += int(dropped.sum())
        else:
            self.dropped.update(str(r) for r in np.asarray(drop_reason)[dropped])
        self.rejected.update(r for r in reasons if r is not None)
        for g in np.unique(groups) if len(groups) else []:
            rows = groups == g
            counter = self.groups[str(g)]
            counter["read"] += int(rows.sum())
            counter["read_bytes"] += int(n_bytes[rows].sum())
            counter["read_tokens"] += int(n_tokens[rows & valid].sum())
            counter["kept"] += int((rows & keep).sum())
            counter["kept_bytes"] += int(n_bytes[rows & keep].sum())
            counter["kept_tokens"] += int(n_tokens[rows & keep].sum())
            counter["rejected"] += int((rows & ~valid).sum())

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "kept": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
            "rejected": dict(sorted(self.rejected.items())),
            "groups": {g: dict(sorted(c.items())) for g, c in sorted(self.groups.items())},
        }


# --------------------------------------------------------------------------- the stage


class SelectOptions(BaseModel):
    """``datafilter select``, and the ``select:`` section of a run config."""

    model_config = ConfigDict(extra="forbid")

    output: str = Field(description="output folder: one filtered shard per input shard")
    selector: str = Field("perplexity_band", description="registered selector (datafilter list)")
    options: dict[str, Any] = Field(
        {}, description="the selector's options, e.g. criterion=medium (--set KEY=VALUE)"
    )
    scorer_id: str | None = Field(None, description="scores to use (default: the run's only one)")
    group_by: str | None = Field(
        None, description="select within each value of this input column (as its plan was made)"
    )
    report_by: str | None = Field(
        None, description="count the manifest by this column (default: group-by)"
    )
    seed: int = Field(0, description="seed of the selectors' random draws")
    with_scores: bool = Field(False, description="add datafilter_* score columns")
    plan: str | None = Field(
        None,
        description="plan file to apply (default: the run's plan of this selector and options, "
        "made by datafilter thresholds --selector)",
    )
    overwrite: bool = Field(
        False,
        description="use an output folder holding foreign files (they are never replaced or "
        "deleted)",
    )
    write_dropped: str | None = Field(
        None,
        description="folder for the rows not kept (dropped or rejected), with the reason in "
        "datafilter_reason: one shard per input shard",
        json_schema_extra={"metavar": "DIR"},
    )


def run_select(
    run_dir: str | Path, opts: SelectOptions, runtime: RuntimeOptions | None
) -> dict[str, Any]:
    """Apply the plan to every shard: one filtered shard per input shard in ``opts.output`` and
    a manifest of every row.

    The plan is the thresholds stage's file for this request (selector, options, scorer id,
    group column), or ``opts.plan``; a missing plan, or one made from other scores or for other
    options, is refused with the command that makes the right one. ``overwrite`` lets an
    output folder holding foreign files be used (they are never replaced or deleted)."""
    clock = StageClock()
    layout = RunLayout.at(run_dir)
    out = location(opts.output)
    dropped_dir = location(opts.write_dropped) if opts.write_dropped else None
    if opts.plan is None:
        make_selector(opts.selector, opts.options)  # a typo in its options: one line, now
    record = require_record(layout)
    check_columns(record.input, {"group_by": opts.group_by, "report_by": opts.report_by})
    writes = [place("output folder", out)]
    if dropped_dir is not None:
        writes.append(place("dropped folder", dropped_dir))
    # An evaluation's selections live inside the run folder (RUN/evaluate/<name>/selection).
    evaluation = place("output folder", out).relation(place("", layout.root / "evaluate"))
    refuse_overlaps(
        writes,
        [place("run folder", layout.root), *input_places(record.input)],
        allowed={("output folder", "run folder")} if evaluation == "is inside" else set(),
    )
    owned = is_select_output(out)
    require_own_folder(out, "output folder", owned, {STATE_DIR}, opts.overwrite, "--overwrite")
    if dropped_dir is not None:  # the output folder's rules: datafilter's, empty or new
        mine = is_select_output(dropped_dir)
        require_own_folder(
            dropped_dir, "dropped folder", mine, {STATE_DIR}, opts.overwrite, "--overwrite"
        )
    request, path, data = _find_plan(layout, record, opts)
    the_selector = make_selector(request.selector, request.options)
    if request.group_by != opts.group_by:  # the plan's own group column
        check_columns(record.input, {"group_by (the plan's)": request.group_by})
    sid = request.scorer_id
    # Shared: other selections and thresholds may read the scores too, but no score run can
    # replace them until this selection is written.
    with run_lock(layout.lock_path, shared=True), run_lock(out / STATE_DIR / "lock"):
        remove_temp_files(out)
        checked = finished_score_markers(layout, record, sid)
        pairs = [(shard, score_path) for shard, score_path, _ in checked]
        extra: dict[str, dict[str, AnyPath]] = {}
        found = {sid: {shard.rel: m["output"]["sha256"] for shard, _, m in checked}}
        for x in request.extra_scorers:
            resolve_scorer_id(record, x)
            markers = finished_score_markers(layout, record, x)
            extra[x] = {shard.rel: score_path for shard, score_path, _ in markers}
            found[x] = {shard.rel: m["output"]["sha256"] for shard, _, m in markers}
        planned = data["scores"].get("shards")
        if found != planned:
            raise ConfigError(
                f"the plan {path} was made from other scores (scored again since?); make it "
                f"again: {thresholds_command(layout.root, request)}"
            )
        plan = data["plan"]
        for warning in plan.get("warnings", []):
            log.warning(f"select: warning: {warning}")
        for note in plan.get("notes", []):
            log.info(f"select: {note}")
        context = {
            "input": record.input,
            "run": str(layout.root),
            "scorer_id": sid,
            "scorer": record.scorers[sid],
            "extra_scorers": {x: record.scorers[x] for x in extra},
            "selector": {
                "name": request.selector,
                "options": the_selector.options.model_dump(mode="json"),
            },
            "group_by": request.group_by,
            "report_by": opts.report_by,
            "seed": opts.seed,
            "with_scores": opts.with_scores,
            "thresholds": plan,
        }
        calibration = data.get("calibration")
        if calibration is not None:
            context["calibration"] = calibration
        if dropped_dir is not None:
            context["write_dropped"] = str(dropped_dir)
        key = hashlib.sha256(dumps_json(context).encode()).hexdigest()[:16]
        claim(out, {shard.rel for shard, _ in pairs} | {MANIFEST})
        if dropped_dir is not None:
            claim(dropped_dir, {shard.rel for shard, _ in pairs})
        _forget_other_selections(out, key)
        jobs, all_jobs = [], []
        for (shard, score_path), (_, _, marker) in zip(pairs, checked, strict=True):
            paths = {sid: score_path, **{x: p[shard.rel] for x, p in extra.items()}}
            job = SelectJob(
                shard_rel=shard.rel,
                input_path=shard.path,
                score_path=score_path,
                output_path=out / shard.rel,
                marker_path=out / STATE_DIR / "select" / key / f"{shard.rel}.done.json",
                marker_fields={
                    "stage": "select",
                    "context": key,
                    "input": identity(marker["input"]),
                    "scores": planned[sid][shard.rel],
                    "extra_scores": {x: planned[x][shard.rel] for x in extra},
                },
                extra_score_paths={x: p[shard.rel] for x, p in extra.items()},
                planned_sha256={str(p): planned[x][shard.rel] for x, p in paths.items()},
                dropped_path=dropped_dir / shard.rel if dropped_dir is not None else None,
            )
            all_jobs.append(job)
            if not is_complete(job.marker_path, job.output_path, job.marker_fields) or (
                job.dropped_path is not None and not job.dropped_path.exists()
            ):
                jobs.append(job)
        log.info(
            f"select: {len(jobs)} of {len(pairs)} shards to write ({len(pairs) - len(jobs)} done)"
        )
        settings = SelectSettings(
            group_by=request.group_by,
            seed=opts.seed,
            with_scores=opts.with_scores,
            report_by=opts.report_by,
            fold_maps=fold_maps(calibration),
        )
        factory = partial(_select_worker, request.selector, request.options, plan, settings)
        failures = drive(jobs, factory, runtime, "select")
        remove_temp_files(out)  # left by workers that died mid-shard
        raise_failures(failures, len(pairs), "select")
        markers = [read_marker(j.marker_path) for j in all_jobs]
        shard_stats = [m["stats"] for m in markers]
        manifest = build_manifest(shard_stats, context)
        if dropped_dir is not None:
            totals = manifest["totals"]
            manifest["dropped_output"] = {
                "folder": str(dropped_dir),
                "shards": len(markers),
                "rows": totals["dropped"] + totals["rejected"],
                "files": {m["stats"]["shard"]: m["dropped_output"] for m in markers},
            }
        manifest["plan"] = {"path": str(path), "request": request.key, "sha256": body_digest(data)}
        write_json(out / MANIFEST, manifest)
        if evaluation != "is inside":  # the report's selections: not an evaluation's
            record_path = layout.selection_record_path(out)
            previous = None if jobs else read_marker(record_path)
            timing = (previous or {}).get("timing") or clock.record()  # the last run that wrote
            write_json(
                record_path, {"output": str(out), "selector": request.selector, "timing": timing}
            )
    t = manifest["totals"]
    log.info(
        f"select: read {t['read']}, kept {t['kept']}, dropped {t['dropped']}, "
        f"rejected {t['rejected']} -> {out}"
    )
    return manifest


def _find_plan(layout: RunLayout, record, opts: SelectOptions) -> tuple[PlanRequest, AnyPath, dict]:
    """The plan to apply, its path and its file's content: ``opts.plan``, or the run's plan of
    the request the options make. A ConfigError saying how to make it when there is none."""
    if opts.plan is not None:
        path = location(opts.plan)
        data = read_plan(path)
        request = PlanRequest.from_dict(data["request"])
        # What is given besides --plan must agree with the plan's request.
        given = opts.model_fields_set
        asked = {
            "selector": opts.selector,
            "scorer_id": opts.scorer_id,
            "group_by": opts.group_by,
        }
        if "options" in given:
            name = opts.selector if "selector" in given else request.selector
            sid = resolve_scorer_id(record, opts.scorer_id or request.scorer_id)
            options, _ = with_defaults(name, opts.options, record.scorers[sid])
            asked["options"] = make_selector(name, options).options.model_dump(mode="json")
        wanted = {k: v for k, v in asked.items() if k in given}
        for name, value in wanted.items():
            if value != getattr(request, name):
                other = dataclasses.replace(request, **wanted)
                if "options" not in wanted and "selector" in wanted:
                    other = dataclasses.replace(other, options={})
                raise ConfigError(
                    f"the plan {path} was made for {name} {getattr(request, name)!r}, not "
                    f"{value!r}: leave {name} out, or make a plan for it: "
                    f"{thresholds_command(layout.root, other)}"
                )
        return request, path, data
    request = _request(record, opts)
    path = plan_path(layout, request)
    if not path.exists():
        raise ConfigError(
            f"no plan of selector {request.selector!r} with these options for the scores "
            f"{request.scorer_id!r}" + (f" by {request.group_by!r}" if request.group_by else "")
            + f" in {layout.root}; make it first: "
            f"{thresholds_command(layout.root, request)}"
        )  # fmt: skip
    data = read_plan(path)
    if PlanRequest.from_dict(data["request"]) != request:
        raise ConfigError(
            f"the plan {path} was made for another request; make it again: "
            f"{thresholds_command(layout.root, request)}"
        )
    return request, path, data


def _request(record, opts: SelectOptions) -> PlanRequest:
    """The plan request that the select options make."""
    sid = resolve_scorer_id(record, opts.scorer_id)
    options, _ = with_defaults(opts.selector, opts.options, record.scorers[sid])
    selector = make_selector(opts.selector, options)
    extra = selector.extra_scorers()
    for x in extra:
        resolve_scorer_id(record, x)
    return PlanRequest(
        selector=opts.selector,
        options=selector.options.model_dump(mode="json"),
        scorer_id=sid,
        group_by=opts.group_by,
        extra_scorers=extra,
    )


def _forget_other_selections(out: AnyPath, key: str) -> None:
    """This selection rewrites ``out``: drop the completion records of other selections (their
    shards are about to be replaced; :func:`claim` removed those whose input is gone)."""
    state = out / STATE_DIR / "select"
    for folder in state.glob("*") if state.exists() else []:
        if folder.name != key:
            remove_tree(folder)


def _select_worker(name: str, options: dict[str, Any], plan: dict[str, Any], settings):
    return partial(
        select_shard, selector=make_selector(name, options), plan=plan, settings=settings
    )
