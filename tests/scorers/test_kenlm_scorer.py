"""KenLM scorer and trainer against a direct kenlm + SentencePiece computation."""

from __future__ import annotations

import json
import math

import kenlm
import numpy as np
import pyarrow.parquet as pq
import pytest
import sentencepiece as spm

from datafilter.errors import ConfigError, ModelError
from datafilter.kenlm.model import load_recipe
from datafilter.kenlm.normalize import normalize
from datafilter.kenlm.train import train_kenlm
from datafilter.scorers import make_scorer

DOCS = [
    "The Bank of England raised interest rates by 0.25% on Thursday.\n\nShares fell 3%.",
    "Le café est très bon à Paris — dit-il…",
    "x",
    "line with\ttab\nand a second line with 42 numbers",
]


def _direct(model_dir, text: str, one_line: bool, by_word: bool = True) -> tuple[float, int]:
    """The CCNet formula written out: log10 sums over lines, +1 token per line for </s>; each
    line SentencePiece-encoded word by word, as the scorer does."""
    model = kenlm.Model(str(model_dir / "model.bin"))
    sp = spm.SentencePieceProcessor(model_file=str(model_dir / "tokenizer.model"))
    units = [normalize(text)] if one_line else [normalize(line) for line in text.split("\n")]
    log10 = 0.0
    tokens = 0
    for unit in filter(None, units):
        words = unit.split(" ") if by_word else [unit]
        pieces = [p for word in words if word for p in sp.encode(word, out_type=str)]
        log10 += model.score(" ".join(pieces), bos=True, eos=True)
        tokens += len(pieces) + 1
    return log10 * math.log(10), tokens


@pytest.mark.parametrize("mode", ["per_line", "ccnet_compat"])
def test_scores_equal_direct_computation(kenlm_model_dir, mode: str) -> None:
    scorer = make_scorer("kenlm", {"model": str(kenlm_model_dir), "mode": mode})
    scorer.setup()
    got = scorer.score_batch(DOCS)
    for i, doc in enumerate(DOCS):
        logprob, tokens = _direct(kenlm_model_dir, doc, one_line=mode == "ccnet_compat")
        assert got.n_tokens[i] == tokens
        assert got.logprob_sum[i] == pytest.approx(logprob, rel=1e-12)


def test_line_segmentation_encodes_whole_lines(kenlm_model_dir, demo_corpus) -> None:
    texts = pq.read_table(demo_corpus.pool_dir, columns=["text"])["text"].to_pylist()[:300]
    scores = {}
    for segmentation in ("line", "word"):
        options = {"model": str(kenlm_model_dir), "segmentation": segmentation}
        scorer = make_scorer("kenlm", options)
        scorer.setup()
        scores[segmentation] = scorer.score_batch(texts)
    for i, text in enumerate(texts[:60]):
        logprob, tokens = _direct(kenlm_model_dir, text, one_line=False, by_word=False)
        assert scores["line"].n_tokens[i] == tokens
        assert scores["line"].logprob_sum[i] == logprob
    # Equal-score segmentation ties aside, both encodings give the same pieces.
    same = scores["line"].logprob_sum == scores["word"].logprob_sum
    assert same.mean() > 0.95
    assert scores["line"].logprob_sum == pytest.approx(scores["word"].logprob_sum, rel=1e-2)


def test_modes_differ_on_multi_line_documents(kenlm_model_dir) -> None:
    scores = {}
    for mode in ("per_line", "ccnet_compat"):
        scorer = make_scorer("kenlm", {"model": str(kenlm_model_dir), "mode": mode})
        scorer.setup()
        scores[mode] = scorer.score_batch([DOCS[0]])
    # ccnet_compat glues the lines together ("…3%.shares…"): one </s>, other pieces.
    assert scores["per_line"].logprob_sum[0] != scores["ccnet_compat"].logprob_sum[0]


def test_recipe_mismatch_is_refused(kenlm_model_dir) -> None:
    scorer = make_scorer(
        "kenlm", {"model": str(kenlm_model_dir), "normalization": {"lowercase": False}}
    )
    with pytest.raises(ModelError, match="lowercase: False != True"):
        scorer.validate()
    # A recipe may be named.
    make_scorer("kenlm", {"model": str(kenlm_model_dir), "normalization": "ccnet"}).validate()
    v1 = make_scorer("kenlm", {"model": str(kenlm_model_dir), "normalization": "datafilter-v1"})
    with pytest.raises(ModelError, match="non_printing: 'category_c' != 'c0_c1'"):
        v1.validate()


def test_missing_or_incomplete_model_folder(tmp_path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        make_scorer("kenlm", {"model": str(tmp_path / "nope")}).validate()
    (tmp_path / "half").mkdir()
    with pytest.raises(ModelError, match="no recipe.json"):
        make_scorer("kenlm", {"model": str(tmp_path / "half")}).validate()
    with pytest.raises(ConfigError, match="mode"):
        make_scorer("kenlm", {"model": "x", "mode": "sentence"})


def test_recipe_records_training(kenlm_model_dir) -> None:
    recipe = load_recipe(kenlm_model_dir)
    assert recipe.order == 3
    assert recipe.normalization.lowercase and recipe.normalization.digits_to_zero
    assert recipe.training["documents"] > 1000 and recipe.training["lines"] > 1000
    assert 0 < recipe.vocab_size <= 2000
    arpa_free = {p.name for p in kenlm_model_dir.iterdir()}
    assert arpa_free == {"model.bin", "tokenizer.model", "tokenizer.vocab", "recipe.json"}


def test_retraining_reuses_a_complete_folder(kenlm_model_dir, tmp_path) -> None:
    before = (kenlm_model_dir / "recipe.json").stat().st_mtime_ns
    messages: list[str] = []
    train_kenlm(["unused"], kenlm_model_dir, log=messages.append)
    assert (kenlm_model_dir / "recipe.json").stat().st_mtime_ns == before
    assert "reusing" in messages[0]
    (tmp_path / "partial").mkdir()
    with pytest.raises(ModelError, match="not a complete model folder"):
        train_kenlm(["unused"], tmp_path / "partial")


def test_model_prefers_held_out_news_to_degraded_text(kenlm_model_dir, demo_corpus) -> None:
    pool = pq.read_table(demo_corpus.pool_dir).to_pandas()
    scorer = make_scorer("kenlm", {"model": str(kenlm_model_dir)})
    scorer.setup()

    def median_ppl(frame) -> float:
        scores = scorer.score_batch(frame["text"].tolist()[:100])
        return float(np.median(np.exp(-scores.logprob_sum / scores.n_tokens)))

    news = median_ppl(pool[pool.source == "bbc"])
    for domain in ("shuffled", "noise", "tokens"):
        assert median_ppl(pool[pool.domain == domain]) > 2 * news, domain


def test_recipe_file_is_readable_json(kenlm_model_dir) -> None:
    data = json.loads((kenlm_model_dir / "recipe.json").read_text())
    assert data["format"] == "datafilter-kenlm"


def test_train_on_a_tiny_text_file(tmp_path) -> None:
    text = tmp_path / "tiny.txt"
    text.write_text("The cat sat on the mat.\nA dog ran in the park!\nÜnïcödé — 42…\n" * 7)
    recipe = train_kenlm([text], tmp_path / "tiny-model", log=lambda _m: None)
    assert recipe.training["lines"] == 21 and recipe.order == 5
    scorer = make_scorer("kenlm", {"model": str(tmp_path / "tiny-model")})
    scorer.setup()
    scores = scorer.score_batch(["the cat sat on the mat.", "zebra quantum xylophone"])
    ppl = np.exp(-scores.logprob_sum / scores.n_tokens)
    assert ppl[0] < ppl[1] / 5  # the training sentence is far more likely


def test_version_1_folders_keep_their_recipe(kenlm_model_dir, tmp_path) -> None:
    """Folders written before the ccnet recipe (format_version 1, five flags) were normalised
    with datafilter-v1, and are still scored with it."""
    import shutil

    from datafilter.kenlm.normalize import CCNET_RECIPE, DATAFILTER_V1_RECIPE

    folder = tmp_path / "v1"
    shutil.copytree(kenlm_model_dir, folder)
    data = json.loads((folder / "recipe.json").read_text())
    assert data["format_version"] == 2 and data["normalization"] == CCNET_RECIPE.model_dump()
    data["format_version"] = 1
    for key in ("punctuation_table", "non_printing"):
        del data["normalization"][key]
    del data["imported"]
    (folder / "recipe.json").write_text(json.dumps(data))
    assert load_recipe(folder).normalization == DATAFILTER_V1_RECIPE
    scorer = make_scorer("kenlm", {"model": str(folder)})
    scorer.setup()
    assert scorer.describe()["model_recipe"]["normalization"]["non_printing"] == "category_c"
    text = "zero\u200bwidth \u3002 joiner\u200d"
    assert scorer._units(text) == ["zerowidth .  joiner"]
    fresh = make_scorer("kenlm", {"model": str(kenlm_model_dir)})
    fresh.setup()
    assert fresh._units(text) == ["zero\u200bwidth . joiner\u200d"]
