"""Write one filtered output shard per input shard, counting every row's fate."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datafilter.aggregate import ALL, NULL_GROUP
from datafilter.errors import InputError
from datafilter.io.atomic import parquet_writer
from datafilter.io.content import content_record
from datafilter.io.markers import write_marker
from datafilter.io.shards import iter_batches, open_parquet
from datafilter.io.storage import AnyPath
from datafilter.pause_points import pause_point
from datafilter.scorers.columns import SCORE_SCHEMA
from datafilter.selectors.base import Selector

SCORE_OUTPUT_PREFIX = "datafilter_"
SCORE_OUTPUT_COLUMNS = ("ppl", "bpb", "logprob_sum", "n_tokens", "n_bytes")


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


@dataclass(frozen=True)
class SelectSettings:
    group_by: str | None
    seed: int
    with_scores: bool
    report_by: str | None = None
    batch_rows: int = 8192

    @property
    def tally_by(self) -> str | None:
        """The column the manifest counts by: ``report_by``, else the selection groups."""
        return self.report_by or self.group_by


def select_shard(
    job: SelectJob, selector: Selector, plan: dict[str, Any], settings: SelectSettings
) -> dict[str, Any]:
    """Filter one shard; write the output shard, then its completion record (with counts)."""
    pf = open_parquet(job.input_path)
    n_rows = pf.metadata.num_rows
    scores = _aligned_scores(job.score_path, n_rows, job.input_path, job.planned_sha256)
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
    with parquet_writer(job.output_path, schema, written) as writer:
        for batch in iter_batches(pf, None, settings.batch_rows, job.input_path):
            part = scores.slice(offset, batch.num_rows)
            offset += batch.num_rows
            extra_part = {
                sid: t.slice(offset - batch.num_rows, batch.num_rows) for sid, t in extra.items()
            }
            kept = _decide_batch(
                batch, part, extra_part, job.score_path, selector, plan, settings, tally
            )
            if kept.num_rows:
                writer.write_table(kept.cast(schema))
            if offset == batch.num_rows:
                pause_point("select:shard")  # test-only (datafilter/pause_points.py)
    if offset != scores.num_rows:
        raise InputError(
            f"read {offset} rows, expected {scores.num_rows}", path=str(job.input_path)
        )
    stats = {"shard": job.shard_rel, **tally.as_dict()}
    output = content_record(job.output_path, written["sha256"])
    write_marker(job.marker_path, {**job.marker_fields, "output": output, "stats": stats})
    return stats


def _aligned_scores(
    path: AnyPath, n_rows: int, input_path: AnyPath, planned: dict[str, str]
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
            "score shard changed since this selection was planned (scored again meanwhile?); "
            "run select again",
            path=str(path),
        )
    try:
        table = pq.read_table(pa.BufferReader(data), columns=SCORE_SCHEMA.names)
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
) -> pa.Table:
    groups = group_keys(batch, settings.group_by)
    reasons = scores.column("reject_reason").to_pylist()
    arrays = {c: scores.column(c).to_numpy(zero_copy_only=False) for c in ("ppl", "bpb")}
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
    if settings.with_scores:
        for c in SCORE_OUTPUT_COLUMNS:
            table = table.append_column(SCORE_OUTPUT_PREFIX + c, scores.column(c))
    for name, kind in selector.output_columns().items():
        table = table.append_column(
            SCORE_OUTPUT_PREFIX + name, pa.array(decision.columns[name], type=kind)
        )
    return table.filter(pa.array(keep))


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
