"""The native line scorer (``_kenlm_lines``) against kenlm's Python module, and word-by-word
SentencePiece encoding against whole-line encoding, on the demo corpus."""

from __future__ import annotations

import kenlm
import numpy as np
import pyarrow.parquet as pq
import pytest
import sentencepiece as spm

from datafilter.kenlm.native import load_native, native_path
from datafilter.kenlm.normalize import normalize_lines
from datafilter.scorers import make_scorer

TRICKY = [
    "  double  spaces   inside \t tabs\tand\u3000ideographic space  ",
    "\x01 \x02",  # a line of characters SentencePiece drops: no pieces, only </s>
    "😀 emoji and ✓ marks, 漢字テキスト without spaces",
    "ΟΔΟΣ ΟΔΟΣ Σ 'Σ a \u0301b",
    "",
    "x",
]


@pytest.fixture(scope="module")
def texts(demo_corpus) -> list[str]:
    pool = pq.read_table(demo_corpus.pool_dir, columns=["text"])["text"].to_pylist()
    return [*TRICKY, *pool[:600]]


def _scorer(model_dir, native: bool):
    scorer = make_scorer("kenlm", {"model": str(model_dir)})
    scorer.setup()
    if not native:
        scorer._native = None
    return scorer


def test_native_module_is_built() -> None:
    assert load_native() is not None, f"{native_path()} missing: run datafilter setup-kenlm"


def test_native_and_python_paths_are_bit_identical(kenlm_model_dir, texts) -> None:
    native, python = _scorer(kenlm_model_dir, True), _scorer(kenlm_model_dir, False)
    assert native.native and not python.native
    for start in range(0, len(texts), 97):  # several batches: the caches fill up across them
        a = native.score_batch(texts[start : start + 97])
        b = python.score_batch(texts[start : start + 97])
        assert np.array_equal(a.logprob_sum, b.logprob_sum)
        assert np.array_equal(a.n_tokens, b.n_tokens)


def test_a_full_cache_is_emptied_and_scores_do_not_change(kenlm_model_dir, texts) -> None:
    big = _scorer(kenlm_model_dir, True)
    small = _scorer(kenlm_model_dir, True)
    small._native = load_native().LineScorer(str(kenlm_model_dir / "model.bin"), 50)
    for start in range(0, 300, 30):
        a = big.score_batch(texts[start : start + 30])
        b = small.score_batch(texts[start : start + 30])
        assert np.array_equal(a.logprob_sum, b.logprob_sum)
    assert small._native.stats()["clears"] >= 5
    assert big._native.stats()["clears"] == 0


def test_a_document_without_lines_scores_zero(kenlm_model_dir) -> None:
    scores = _scorer(kenlm_model_dir, True).score_batch(["", " \n\t\n", "word"])
    assert scores.n_tokens.tolist()[:2] == [0, 0]
    assert scores.logprob_sum.tolist()[:2] == [0.0, 0.0]
    assert scores.n_tokens[2] >= 2 and scores.logprob_sum[2] < 0


def test_word_encoding_equals_line_encoding_but_for_ties(kenlm_model_dir, texts) -> None:
    """SentencePiece's pieces never span a space, so encoding word by word gives the line's
    segmentation; where it does not, both segmentations have exactly the same score."""
    sp = spm.SentencePieceProcessor(model_file=str(kenlm_model_dir / "tokenizer.model"))
    lines = [line for text in texts for line in normalize_lines(text)]
    by_line = sp.encode(lines, out_type=int)
    differ = 0
    for line, ids in zip(lines, by_line, strict=True):
        words = [w for w in line.split(" ") if w]
        by_word = [i for w in words for i in sp.encode(w, out_type=int)]
        if by_word != ids:
            differ += 1
            assert "".join(map(sp.id_to_piece, by_word)) == "".join(map(sp.id_to_piece, ids))
            assert sum(map(sp.get_score, by_word)) == pytest.approx(
                sum(map(sp.get_score, ids)), abs=1e-4
            )
    assert differ <= 0.01 * len(lines), f"{differ} of {len(lines)} lines"


def test_scores_equal_kenlm_on_word_pieces(kenlm_model_dir, texts) -> None:
    """Each document: the sum over its lines of kenlm's Model.score of the word pieces."""
    model = kenlm.Model(str(kenlm_model_dir / "model.bin"))
    sp = spm.SentencePieceProcessor(model_file=str(kenlm_model_dir / "tokenizer.model"))
    got = _scorer(kenlm_model_dir, True).score_batch(texts[:80])
    for i, text in enumerate(texts[:80]):
        log10, tokens = 0.0, 0
        for line in normalize_lines(text):
            pieces = [p for w in line.split(" ") if w for p in sp.encode(w, out_type=str)]
            log10 += model.score(" ".join(pieces), bos=True, eos=True)
            tokens += len(pieces) + 1
        assert got.n_tokens[i] == tokens
        assert got.logprob_sum[i] == pytest.approx(log10 * np.log(10), rel=1e-12)


def test_misuse_is_reported(kenlm_model_dir, tmp_path) -> None:
    native = load_native()
    with pytest.raises(OSError, match="cannot load KenLM model"):
        native.LineScorer(str(tmp_path / "missing.bin"))
    scorer = native.LineScorer(str(kenlm_model_dir / "model.bin"))
    scorer.prepare(["a b"])
    with pytest.raises(KeyError, match="not cached"):
        scorer.score([1])  # "a" and "b" were never added
    assert scorer.prepare(["a b"]) == ["a", "b"]
    with pytest.raises(ValueError, match="do not match"):
        scorer.score([2])
    with pytest.raises(TypeError):
        scorer.prepare(["a", 3])
    bare = native.LineScorer.__new__(native.LineScorer)  # __init__ never ran
    with pytest.raises(RuntimeError, match="not initialised"):
        bare.prepare(["a"])
