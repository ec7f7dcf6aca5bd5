"""The documents of an evaluation: held-out targets, selections minus the targets, token rows.

Target documents are identified by :func:`~datafilter.reference.crossfit.text_hash` (blake2b of
the UTF-8 text); every document whose hash is a target's is removed from every training set, so
no proxy model trains on a text it is measured on (exact duplicates included).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa

from datafilter.errors import ConfigError
from datafilter.io.shards import discover_shards, open_shard, require_column
from datafilter.io.storage import AnyPath
from datafilter.reference.crossfit import sample_key, text_hash

TARGET_SCHEMA = pa.schema([("text", pa.string()), ("text_hash", pa.uint64())])


def iter_texts(source: str | AnyPath, text_column: str) -> Iterator[str]:
    """Every non-empty text of the shards (Parquet or JSONL) under ``source``, in shard and row
    order."""
    for shard in discover_shards(source):
        pf = open_shard(shard.path)
        require_column(pf, text_column, shard.path)
        for batch in pf.iter_batches(batch_size=4096, columns=[text_column]):
            for text in batch.column(0).to_pylist():
                if isinstance(text, str) and text.strip():
                    yield text


def heldout_sample(
    source: str | AnyPath, text_column: str, fraction: float, max_docs: int, seed: int
) -> pa.Table:
    """A seeded random sample of the pool (by text hash: the same texts for the same seed),
    at most ``max_docs`` documents, each text once."""
    picked: dict[int, tuple[float, str]] = {}
    for text in iter_texts(source, text_column):
        key = sample_key(text, seed)
        if key < fraction:
            picked.setdefault(text_hash(text), (key, text))
    chosen = sorted(picked.items(), key=lambda item: (item[1][0], item[0]))[:max_docs]
    if not chosen:
        raise ConfigError(
            f"the held-out sample (holdout {fraction}) is empty: raise holdout or give targets"
        )
    return pa.table(
        {
            "text": pa.array([t for _, (_, t) in chosen], pa.string()),
            "text_hash": pa.array([h for h, _ in chosen], pa.uint64()),
        },
        schema=TARGET_SCHEMA,
    )


def target_table(source: str | AnyPath, text_column: str, max_docs: int) -> pa.Table:
    """A user's target set: its first ``max_docs`` non-empty texts, each once."""
    seen: dict[int, str] = {}
    for text in iter_texts(source, text_column):
        if len(seen) >= max_docs:
            break
        seen.setdefault(text_hash(text), text)
    if not seen:
        raise ConfigError(f"target {source} holds no text in column {text_column!r}")
    return pa.table(
        {"text": pa.array(list(seen.values())), "text_hash": pa.array(list(seen), pa.uint64())},
        schema=TARGET_SCHEMA,
    )


def order_key(text: str, name: str, seed: int) -> bytes:
    """The seeded order in which a candidate's documents fill its token budget (salted by the
    candidate's name, so two candidates over the same documents draw different samples)."""
    salt = hashlib.blake2b(f"{name}\x00{seed}".encode(), digest_size=16).digest()
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), key=salt, digest_size=8).digest()


def training_texts(
    selection: str | AnyPath, text_column: str, excluded: set[int]
) -> tuple[list[str], list[int], int]:
    """The selection's texts minus the excluded hashes (targets), their hashes, and how many
    documents were excluded."""
    texts, hashes, dropped = [], [], 0
    for text in iter_texts(selection, text_column):
        h = text_hash(text)
        if h in excluded:
            dropped += 1
            continue
        texts.append(text)
        hashes.append(h)
    return texts, hashes, dropped


def encode(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text (no special tokens), in batches."""
    out: list[list[int]] = []
    for start in range(0, len(texts), 1024):
        batch = tokenizer._tokenizer.encode_batch(
            texts[start : start + 1024], add_special_tokens=False
        )
        out.extend(e.ids for e in batch)
    return out


def enough(tokenizer, texts: list[str], budget: int, chunk: int = 256) -> int:
    """How many of the first ``texts`` hold at least ``budget`` tokens (as trained: ``<s> ids
    </s>``), encoding chunk by chunk; all of them when they hold fewer."""
    total = 0
    for start in range(0, len(texts), chunk):
        for k, doc in enumerate(encode(tokenizer, texts[start : start + chunk])):
            total += len(doc) + 2
            if total >= budget:
                return start + k + 1
    return len(texts)


def count_tokens(ids: Iterable[list[int]]) -> int:
    """Tokens of the documents as trained: ``<s> ids </s>`` each."""
    return sum(len(x) + 2 for x in ids)


def budget_rows(
    ids: list[list[int]], order: Iterable[int], budget: int, bos: int, eos: int, context: int
) -> tuple[np.ndarray, list[int]]:
    """Exactly ``budget`` tokens of the documents taken in ``order`` (``<s> ids </s>`` back to
    back, the last document cut), as rows of ``context`` tokens (a partial last row is dropped),
    and the indices of the documents used."""
    stream = np.empty(budget, dtype=np.int64)
    filled, used = 0, []
    for i in order:
        if filled >= budget:
            break
        doc = np.fromiter((bos, *ids[i], eos), dtype=np.int64)
        take = min(len(doc), budget - filled)
        stream[filled : filled + take] = doc[:take]
        filled += take
        used.append(i)
    if filled < budget:
        raise ConfigError(f"only {filled} tokens for a budget of {budget}")
    n_rows = budget // context
    if n_rows == 0:
        raise ConfigError(f"a budget of {budget} tokens is less than one row of {context}")
    return stream[: n_rows * context].reshape(n_rows, context), used
