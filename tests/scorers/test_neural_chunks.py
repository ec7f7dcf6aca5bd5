"""Chunked scoring of the neural scorers: tokenising the next chunk while scoring this one."""

from __future__ import annotations

import numpy as np
import pytest

from datafilter.scorers.causal_lm import document_chunks

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


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    from tiny_lm import make_tiny_lm

    return make_tiny_lm(tmp_path_factory.mktemp("tiny-lm") / "model")


def test_chunked_scores_equal_one_document_at_a_time(tiny_lm) -> None:
    # 16 tokens per batch: chunks of ~1 kB of text, so the 40 documents span several chunks.
    scorer = make_scorer("torch", {"model": str(tiny_lm), "max_tokens_per_batch": 16})
    scorer.setup()
    assert len(document_chunks(DOCS, 4 * 16 * 16)) > 3
    batch = scorer.score_batch(DOCS)
    single = [scorer.score_batch([d]) for d in DOCS]
    np.testing.assert_array_equal(batch.n_tokens, [s.n_tokens[0] for s in single])
    np.testing.assert_allclose(batch.logprob_sum, [s.logprob_sum[0] for s in single], rtol=1e-6)
