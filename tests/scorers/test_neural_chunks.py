"""Chunked scoring of the neural scorers: preparing the next chunk while scoring this one."""

from __future__ import annotations

import numpy as np
import pytest

from datafilter.scorers.causal_lm import CHARS_PER_TOKEN, CHUNK_BATCHES, document_chunks

torch = pytest.importorskip("torch", reason="the neural scorers need the torch extra")
pytest.importorskip("transformers")

from datafilter.scorers import make_scorer  # noqa: E402

DOCS = [
    "Shares in London fell as investors sold banks and miners. " * (1 + i % 5)
    + f"Document {i}: café — naïve {i * 7}."
    for i in range(40)
]


def test_document_chunks_cover_every_document_once() -> None:
    texts = ["a" * n for n in (5, 1, 7, 30, 2, 2, 2)]
    chunks = document_chunks(texts, 8)
    assert chunks == [(0, 2), (2, 3), (3, 4), (4, 7)]
    assert document_chunks(["x"], 1) == [(0, 1)]
    flat = [i for lo, hi in document_chunks(texts, 3) for i in range(lo, hi)]
    assert flat == list(range(len(texts)))
    # A smaller first chunk, so the device starts early.
    assert document_chunks(texts, 50, first=6) == [(0, 2), (2, 7)]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    from tiny_lm import make_tiny_lm

    return make_tiny_lm(tmp_path_factory.mktemp("tiny-lm") / "model")


def test_chunked_scores_equal_one_document_at_a_time(tiny_lm) -> None:
    # 16 tokens per batch: chunks of ~0.5 kB of text, so the 40 documents span several chunks.
    scorer = make_scorer("torch", {"model": str(tiny_lm), "max_tokens_per_batch": 16})
    scorer.setup()
    budget = CHARS_PER_TOKEN * scorer.batch_budget()
    assert len(document_chunks(DOCS, CHUNK_BATCHES * budget, first=budget)) > 3
    sequential = scorer.score_batch(DOCS)  # on CPU chunks are prepared in turn
    scorer.overlap = lambda: True  # as on a GPU: the next chunk prepared in a thread
    batch = scorer.score_batch(DOCS)
    np.testing.assert_array_equal(batch.logprob_sum, sequential.logprob_sum)
    single = [scorer.score_batch([d]) for d in DOCS]
    np.testing.assert_array_equal(batch.n_tokens, [s.n_tokens[0] for s in single])
    np.testing.assert_allclose(batch.logprob_sum, [s.logprob_sum[0] for s in single], rtol=1e-6)
