"""Score one input shard into a row-aligned score shard, rejecting bad rows with a reason."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from datafilter.errors import InputError
from datafilter.io.atomic import parquet_writer
from datafilter.io.content import content_record, signature
from datafilter.io.markers import write_marker
from datafilter.io.shards import iter_batches, open_parquet, require_column
from datafilter.io.storage import AnyPath, ObjectPath
from datafilter.pause_points import pause_point
from datafilter.scorers.base import Scorer
from datafilter.scorers.columns import SCORE_SCHEMA, bits_per_byte, id_hash, perplexity

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

    text_column: str = "text"
    id_column: str | None = None
    batch_rows: int = Field(512, ge=1)
    max_doc_bytes: int = Field(8 * 1024 * 1024, ge=1)


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
