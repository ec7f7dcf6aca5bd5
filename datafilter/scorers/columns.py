"""The per-document score columns every scorer writes, and the values derived from them."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pyarrow as pa

LN2 = math.log(2.0)

SCORE_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("row", pa.int64()),
        ("id_hash", pa.uint64()),
        ("logprob_sum", pa.float64()),
        ("n_tokens", pa.int64()),
        ("n_bytes", pa.int64()),
        ("ppl", pa.float64()),
        ("bpb", pa.float64()),
        ("reject_reason", pa.string()),
    ]
)

METRICS = ("ppl", "bpb")


def id_hash(doc_id: str) -> int:
    """A stable 64-bit hash of a document id: the deterministic tie-breaker and sampling key."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "big")


def perplexity(logprob_sum: np.ndarray, n_tokens: np.ndarray) -> np.ndarray:
    """``exp(-logprob_sum / n_tokens)``; NaN where there are no tokens."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.where(n_tokens > 0, np.exp(-logprob_sum / np.maximum(n_tokens, 1)), np.nan)


def bits_per_byte(logprob_sum: np.ndarray, n_bytes: np.ndarray) -> np.ndarray:
    """``-logprob_sum / (ln 2 * n_bytes)``; NaN for empty documents."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n_bytes > 0, -logprob_sum / (LN2 * np.maximum(n_bytes, 1)), np.nan)
