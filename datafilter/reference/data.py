"""The training split (sampled by content hash), the shared BPE tokenizer, packed token rows."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datafilter.errors import ConfigError, InputError
from datafilter.io.shards import discover_shards, open_parquet, require_column
from datafilter.reference.crossfit import sample_key, text_hash

log = logging.getLogger(__name__)

SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]
TOKENIZER_MAX_CHARS = 1_000_000_000  # the tokenizer trains on at most ~1 GB of the sample


@dataclass
class Doc:
    text_hash: int
    key: float  # uniform in [0, 1): the sample order (seeded, independent of the fold)
    id: str | None
    text: str


def read_candidates(
    inputs: Iterable[str | Path],
    text_column: str,
    id_column: str | None,
    folds: int,
    fraction: float,
    seed: int,
) -> tuple[list[list[Doc]], int]:
    """Per fold, the documents of that fold drawn into the sample (key < fraction), in key
    order; exact duplicates are kept once. Also returns how many documents were read."""
    per_fold: list[list[Doc]] = [[] for _ in range(folds)]
    seen: set[int] = set()
    n_read = 0
    for source in inputs:
        for shard in discover_shards(source):
            pf = open_parquet(shard.path)
            require_column(pf, text_column, shard.path)
            use_id = id_column if id_column and id_column in pf.schema_arrow.names else None
            columns = [text_column] + ([use_id] if use_id else [])
            for batch in pf.iter_batches(batch_size=4096, columns=columns):
                texts = batch.column(text_column).to_pylist()
                ids = batch.column(use_id).to_pylist() if use_id else [None] * len(texts)
                for text, doc_id in zip(texts, ids, strict=True):
                    n_read += 1
                    if not isinstance(text, str) or not text.strip():
                        continue
                    key = sample_key(text, seed)
                    if key >= fraction:
                        continue
                    h = text_hash(text)
                    if h in seen:
                        continue
                    seen.add(h)
                    per_fold[h % folds].append(
                        Doc(h, key, None if doc_id is None else str(doc_id), text)
                    )
    for docs in per_fold:
        docs.sort(key=lambda d: (d.key, d.text_hash))
    if n_read == 0:
        raise InputError("no documents in the input", path=str(list(inputs)))
    if not any(per_fold):
        raise ConfigError(f"--fraction {fraction} sampled no documents out of {n_read}")
    sampled = [len(d) for d in per_fold]
    log.info(f"train-reference: read {n_read} documents; sampled {sampled} per fold")
    return per_fold, n_read


def train_tokenizer(docs: list[Doc], vocab_size: int, context: int):
    """A byte-level BPE on the sample, as a PreTrainedTokenizerFast with BOS/EOS/PAD/UNK."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    def texts() -> Iterable[str]:
        used = 0
        for doc in sorted(docs, key=lambda d: (d.key, d.text_hash)):
            if used >= TOKENIZER_MAX_CHARS:
                return
            used += len(doc.text)
            yield doc.text

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
    )


def tokenize_capped(docs: list[Doc], tokenizer, budget: int | None) -> tuple[list[Doc], list[int]]:
    """Token ids of the sample in key order, stopping once ``budget`` tokens are reached (the
    document that crosses the budget is the last one kept)."""
    kept: list[Doc] = []
    ids: list[list[int]] = []
    total = 0
    chunk = 1024
    for start in range(0, len(docs), chunk):
        part = docs[start : start + chunk]
        encoded = tokenizer._tokenizer.encode_batch(
            [d.text for d in part], add_special_tokens=False
        )
        for doc, enc in zip(part, encoded, strict=True):
            if budget is not None and total >= budget:
                return kept, ids
            kept.append(doc)
            ids.append(enc.ids)
            total += len(enc.ids) + 2
    return kept, ids


def pack(ids: list[list[int]], bos: int, eos: int, context: int) -> np.ndarray:
    """Documents as ``<s> tokens </s>`` back to back, cut into rows of ``context`` tokens (the
    incomplete last row is dropped; with less than one row of text, the stream is repeated)."""
    stream = np.fromiter((t for doc in ids for t in (bos, *doc, eos)), dtype=np.int64, count=-1)
    if len(stream) == 0:
        raise ConfigError("the training sample is empty")
    if len(stream) < context:
        stream = np.tile(stream, context // len(stream) + 1)
    n_rows = len(stream) // context
    return stream[: n_rows * context].reshape(n_rows, context)
