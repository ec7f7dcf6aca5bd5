"""The score stage: every input shard into a row-aligned score shard in ``RUN/scores/<id>/``.

:func:`run_score` owns the stage: its options (:class:`ScoreOptions`), the checks before any
work (paths, run folder, model), the run folder's lock and record, which shards still need
scores, running them on the executor and the summary. :func:`score_shard` is the per-shard
worker: it rejects bad rows with a reason, writes the score shard, then its completion record.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from datafilter.errors import ConfigError, DatafilterError, InputError, ModelError
from datafilter.io.atomic import parquet_writer, remove_temp_files, write_json
from datafilter.io.content import content_record, signature
from datafilter.io.guard import (
    input_places,
    place,
    refuse_foreign_files,
    refuse_overlaps,
    require_own_folder,
)
from datafilter.io.layout import STATE_DIR, RunLayout
from datafilter.io.lock import run_lock
from datafilter.io.markers import read_marker, write_marker
from datafilter.io.record import (
    RunRecord,
    load_record,
    save_record,
    score_check,
    score_marker_fields,
)
from datafilter.io.shards import iter_batches, open_parquet, require_column, scan_input
from datafilter.io.storage import AnyPath, ObjectPath, is_remote, location
from datafilter.pause_points import pause_point
from datafilter.runtime import RuntimeOptions
from datafilter.scorers import make_scorer
from datafilter.scorers.base import Scorer
from datafilter.scorers.columns import SCORE_SCHEMA, bits_per_byte, id_hash, perplexity
from datafilter.stages.jobs import drive, raise_failures

log = logging.getLogger(__name__)

# Rows per row group of a score shard: large groups make the thresholds' column scans fast
# (the score batches are much smaller); the buffered scores are ~100 bytes per row.
ROW_GROUP_ROWS = 65_536

# Reasons a row is rejected rather than scored (documented in the README).
NULL_TEXT = "null_text"
EMPTY_TEXT = "empty_text"
INVALID_UTF8 = "invalid_utf8"
TOO_LONG = "too_long"
NO_TOKENS = "no_tokens"
NULL_ID = "null_id"
NON_FINITE = "non_finite"  # the model gave a log-probability that is not a finite number


class ScoreSettings(BaseModel):
    """How input rows are read: columns, batch size and the largest document accepted."""

    model_config = ConfigDict(extra="forbid")

    text_column: str = Field("text", description="input column holding the documents")
    id_column: str | None = Field(
        None, description="document id column (default: shard path + row)"
    )
    batch_rows: int = Field(512, ge=1, description="rows per scoring batch")
    max_doc_bytes: int = Field(
        8 * 1024 * 1024, ge=1, description="longer documents are rejected as too_long"
    )


class ScoreOptions(ScoreSettings):
    """``datafilter score``, and the ``score:`` section of a run config."""

    scorer: str = Field("kenlm", description="registered scorer (datafilter list)")
    options: dict[str, Any] = Field(
        {}, description="the scorer's options, e.g. model=DIR (--set KEY=VALUE)"
    )
    scorer_id: str | None = Field(
        None, description="name of the scores folder (default: the scorer name)"
    )
    overwrite: bool = Field(
        False,
        description="replace scores made otherwise under this scorer id; use a run folder "
        "holding foreign files (they are kept)",
    )
    verify_inputs: bool = Field(
        False,
        description="hash every input shard to decide what is scored already (default: by "
        "file signature)",
    )

    @property
    def settings(self) -> ScoreSettings:
        """How input rows are read (recorded in the run folder)."""
        return ScoreSettings(**{k: getattr(self, k) for k in ScoreSettings.model_fields})


@dataclass(frozen=True)
class ShardJob:
    """One shard to score: where to read, where to write, and the record that marks it done."""

    shard_rel: str
    input_path: AnyPath
    output_path: AnyPath
    marker_path: AnyPath
    marker_fields: dict[str, Any]
    # Hash the input's bytes into the completion record (local inputs, or --verify-inputs).
    hash_input: bool = True


def score_shard(job: ShardJob, scorer: Scorer, settings: ScoreSettings) -> dict[str, Any]:
    """Score every row of one shard; write the score shard, then its completion record."""
    start = time.monotonic()
    source = _input_record(job)
    pf = open_parquet(job.input_path)
    text_type = require_column(pf, settings.text_column, job.input_path)
    if not _is_textual(text_type):
        raise InputError(
            f"text column {settings.text_column!r} has type {text_type}; expected string or binary",
            path=str(job.input_path),
        )
    columns = [settings.text_column]
    if settings.id_column:
        require_column(pf, settings.id_column, job.input_path)
        columns.append(settings.id_column)
    rejected: Counter[str] = Counter()
    rows = n_bytes_total = 0
    pending: list[pa.Table] = []
    written: dict[str, Any] = {}
    with parquet_writer(job.output_path, SCORE_SCHEMA, written) as writer:
        for batch in iter_batches(pf, columns, settings.batch_rows, job.input_path):
            table = _score_batch(batch, rows, job, scorer, settings, rejected)
            if not rows:
                pause_point("score:shard")  # test-only (datafilter/pause_points.py)
            pending.append(table)
            rows += batch.num_rows
            n_bytes_total += int(table["n_bytes"].to_numpy().sum())
            if sum(t.num_rows for t in pending) >= ROW_GROUP_ROWS:
                writer.write_table(pa.concat_tables(pending))
                pending = []
        if pending:
            writer.write_table(pa.concat_tables(pending))
    if rows != pf.metadata.num_rows:
        raise InputError(
            f"read {rows} rows but the footer says {pf.metadata.num_rows}", path=str(job.input_path)
        )
    stats = {
        "shard": job.shard_rel,
        "rows": rows,
        "scored": rows - sum(rejected.values()),
        "rejected": dict(sorted(rejected.items())),
        "n_bytes": n_bytes_total,
        "seconds": round(time.monotonic() - start, 3),
    }
    output = content_record(job.output_path, written["sha256"])
    write_marker(
        job.marker_path, {**job.marker_fields, "input": source, "output": output, "stats": stats}
    )
    return stats


def _input_record(job: ShardJob) -> dict[str, Any]:
    """The input shard's signature, and its sha256 when asked (taken before it is read: a change
    while it is read changes its signature, so the next run checks its bytes again)."""
    try:
        if job.hash_input:
            return content_record(job.input_path)
        return signature(job.input_path)
    except OSError as exc:
        remote = isinstance(job.input_path, ObjectPath)
        problem = "cannot open on object storage" if remote else "cannot read the input shard"
        raise InputError(f"{problem} ({exc})", path=str(job.input_path)) from exc


def _is_textual(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        return _is_textual(kind.value_type)
    return any(
        check(kind)
        for check in (
            pa.types.is_string,
            pa.types.is_large_string,
            pa.types.is_binary,
            pa.types.is_large_binary,
            pa.types.is_string_view,
            pa.types.is_binary_view,
        )
    )


def _plain_text_column(column: pa.Array) -> pa.Array:
    """The text column without dictionary or view encoding (Arrow-level, nothing decoded)."""
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if pa.types.is_string_view(column.type):
        column = column.cast(pa.large_string())
    elif pa.types.is_binary_view(column.type):
        column = column.cast(pa.large_binary())
    return column


def _without_long_values(
    column: pa.Array, max_bytes: int
) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """The column with values over ``max_bytes`` replaced by nulls, each value's length in
    bytes, and which were too long: read from Arrow's offsets, so an oversize document is
    never turned into a Python string."""
    lengths = pc.binary_length(column).fill_null(0).to_numpy(zero_copy_only=False)
    lengths = lengths.astype(np.int64)
    too_long = lengths > max_bytes
    if too_long.any():
        column = pc.if_else(pa.array(too_long), pa.nulls(len(column), column.type), column)
    return column, lengths, too_long


def _decode_texts(column: pa.Array) -> list[str | bytes | None]:
    """Python values of the text column: str where valid UTF-8, bytes where not, None for null."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        try:
            column.validate(full=True)
            return column.to_pylist()
        except pa.ArrowInvalid:
            column = column.cast(pa.large_binary())
    values = column.cast(pa.large_binary()).to_pylist()
    out: list[str | bytes | None] = []
    for value in values:
        if value is None:
            out.append(None)
            continue
        try:
            out.append(value.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(value)
    return out


def _reject_reason(text: str | bytes | None, too_long: bool) -> str | None:
    if too_long:
        return TOO_LONG
    if text is None:
        return NULL_TEXT
    if isinstance(text, bytes):
        return INVALID_UTF8
    if not text.strip():
        return EMPTY_TEXT
    return None


def _score_batch(
    batch: pa.RecordBatch,
    first_row: int,
    job: ShardJob,
    scorer: Scorer,
    settings: ScoreSettings,
    rejected: Counter[str],
) -> pa.Table:
    n = batch.num_rows
    column, n_bytes, too_long = _without_long_values(
        _plain_text_column(batch.column(settings.text_column)), settings.max_doc_bytes
    )
    texts = _decode_texts(column)
    rows = np.arange(first_row, first_row + n, dtype=np.int64)
    if settings.id_column:
        ids = [None if v is None else str(v) for v in batch.column(settings.id_column).to_pylist()]
    else:
        ids = [f"{job.shard_rel}:{r}" for r in rows.tolist()]
    reasons = [_reject_reason(t, long) for t, long in zip(texts, too_long.tolist(), strict=True)]
    reasons = [r or (NULL_ID if i is None else None) for r, i in zip(reasons, ids, strict=True)]
    logprob = np.full(n, np.nan)
    n_tokens = np.zeros(n, dtype=np.int64)
    ok = [i for i, r in enumerate(reasons) if r is None]
    if ok:
        scores = scorer.score_batch([texts[i] for i in ok])
        logprob[ok] = scores.logprob_sum
        n_tokens[ok] = scores.n_tokens
        for i in ok:
            if n_tokens[i] == 0:
                reasons[i] = NO_TOKENS
    ppl = perplexity(logprob, n_tokens)
    bpb = bits_per_byte(logprob, n_bytes)
    finite = np.isfinite(logprob) & np.isfinite(ppl) & np.isfinite(bpb)
    for i in ok:
        if reasons[i] is None and not finite[i]:  # e.g. a damaged model: never an inf score
            reasons[i] = NON_FINITE
            logprob[i] = ppl[i] = bpb[i] = np.nan
    rejected.update(r for r in reasons if r is not None)
    return pa.table(
        {
            "doc_id": pa.array(ids, pa.string()),
            "row": rows,
            "id_hash": pa.array([0 if i is None else id_hash(i) for i in ids], pa.uint64()),
            "logprob_sum": logprob,
            "n_tokens": n_tokens,
            "n_bytes": n_bytes,
            "ppl": ppl,
            "bpb": bpb,
            "reject_reason": pa.array(reasons, pa.string()),
        },
        schema=SCORE_SCHEMA,
    )


# --------------------------------------------------------------------------- the stage


def run_score(
    input: str | Path, run_dir: str | Path, opts: ScoreOptions, runtime: RuntimeOptions | None
) -> dict[str, Any]:
    """Score every input shard into ``RUN/scores/<scorer_id>/``; finished shards are skipped.

    ``overwrite`` replaces scores made with other settings under the same scorer id, and lets a
    run folder holding foreign files be used (they are left alone). ``verify_inputs`` hashes
    every input shard to decide whether its scores are still valid, instead of trusting an
    unchanged file signature (size, mtime, ctime, inode)."""
    layout = RunLayout.at(run_dir)
    the_scorer = make_scorer(opts.scorer, opts.options)
    scan = scan_input(input)
    shards = scan.shards
    model = getattr(the_scorer.options, "model", None)
    refuse_overlaps(
        [place("run folder", layout.root)],
        [*input_places(input, scan), *([place("model folder", model)] if model else [])],
    )
    require_run_folder(layout, opts.overwrite)
    the_scorer.validate()  # the model's recorded checksums are verified here
    sid = opts.scorer_id or opts.scorer
    settings = opts.settings
    entry = {"scorer": the_scorer.describe(), "settings": settings.model_dump(mode="json")}
    with run_lock(layout.lock_path):
        record = _updated_record(layout, str(location(input)), settings)
        if record.scorers.get(sid, entry) != entry and not opts.overwrite:
            raise ConfigError(
                f"{layout.scores_dir(sid)} holds scores made with other settings; use another "
                "--scorer-id to keep both, or --overwrite to replace them"
            )
        record.scorers[sid] = entry
        save_record(layout, record)
        remove_temp_files(layout.root)
        jobs = []
        for shard in shards:
            job = ShardJob(
                shard_rel=shard.rel,
                input_path=shard.path,
                output_path=layout.score_path(sid, shard.rel),
                marker_path=layout.marker_path("score", sid, shard.rel),
                marker_fields=score_marker_fields(record, sid),
                hash_input=opts.verify_inputs or not is_remote(shard.path),
            )
            check = score_check(layout, record, sid, shard, verify_inputs=opts.verify_inputs)
            if check.problem is not None:
                jobs.append(job)
            elif check.fresh is not None:  # same bytes, new signatures: check cheaply next time
                write_marker(job.marker_path, check.fresh)
        log.info(
            f"score: {len(jobs)} of {len(shards)} shards to score ({len(shards) - len(jobs)} done)"
        )
        resources = the_scorer.resources()
        factory = partial(
            _score_worker, opts.scorer, the_scorer.options.model_dump(mode="json"), settings
        )
        cpus, gpus = resources.num_cpus, resources.num_gpus
        failures = drive(jobs, factory, runtime, "score", num_cpus=cpus, num_gpus=gpus)
        remove_temp_files(layout.scores_dir(sid))  # left by workers that died mid-shard
        summary = _record_summary(layout, sid, shards, failures)
    raise_failures(failures, len(shards), "score")
    return summary


def require_run_folder(layout: RunLayout, overwrite: bool) -> None:
    """A run folder is new, empty or datafilter's (it has run.json); with ``overwrite`` a folder
    of foreign files is used too, if none of them is in the way of the run's own names."""
    ours = layout.record_path.exists()
    require_own_folder(layout.root, "run folder", ours, {STATE_DIR}, overwrite, "--overwrite")
    if not ours:
        refuse_foreign_files(layout.root, "run folder", ["scores", "thresholds", "report.html"])


def _updated_record(layout: RunLayout, input_path: str, settings: ScoreSettings) -> RunRecord:
    record = load_record(layout)
    if record is None:
        return RunRecord(
            input=input_path, text_column=settings.text_column, id_column=settings.id_column
        )
    if record.input != input_path:
        raise ConfigError(
            f"run folder {layout.root} belongs to input {record.input}; use another run folder"
        )
    if (record.text_column, record.id_column) != (settings.text_column, settings.id_column):
        raise ConfigError(
            f"run folder {layout.root} was scored with text column {record.text_column!r} and id "
            f"column {record.id_column!r}; use the same columns or another run folder"
        )
    return record


def _score_worker(name: str, options: dict[str, Any], settings: ScoreSettings):
    """Runs once per worker: load the model, return the per-shard function."""
    scorer = make_scorer(name, options)
    try:
        scorer.setup()
    except DatafilterError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken model file must become one clear error
        raise ModelError(f"loading the {name} model failed: {type(exc).__name__}: {exc}") from exc
    return partial(score_shard, scorer=scorer, settings=settings)


def _record_summary(layout: RunLayout, sid: str, shards, failures: dict[str, str]):
    """Count the finished shards and write ``summary.json``. When shards failed (e.g. the
    store became unreachable), a failure here is logged so it does not hide their errors."""
    try:
        summary = _summary(layout, sid, shards, failures)
        write_json(layout.root / STATE_DIR / "score" / sid / "summary.json", summary)
    except OSError as exc:
        if not failures:
            raise
        log.warning(f"score: warning: could not count or record the finished shards: {exc}")
        summary = {"scorer_id": sid, "shards": len(shards), "failed_shards": sorted(failures)}
    return summary


def _summary(layout: RunLayout, sid: str, shards, failures: dict[str, str]) -> dict[str, Any]:
    rows = scored = 0
    rejected: Counter[str] = Counter()
    for shard in shards:
        marker = read_marker(layout.marker_path("score", sid, shard.rel))
        if marker and shard.rel not in failures:
            rows += marker["stats"]["rows"]
            scored += marker["stats"]["scored"]
            rejected.update(marker["stats"]["rejected"])
    return {
        "scorer_id": sid,
        "shards": len(shards),
        "failed_shards": sorted(failures),
        "rows": rows,
        "scored": scored,
        "rejected": dict(sorted(rejected.items())),
    }
