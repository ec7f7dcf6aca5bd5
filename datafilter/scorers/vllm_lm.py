"""Reference causal LM scored with vLLM's offline engine: prompt log-probs of token-id prompts.

vLLM implements each model family itself, so only the families whose prompt log-probs the tests
compare with transformers' own forward pass (``tests/test_neural_families.py``) are accepted;
any other family is refused, naming it, rather than scored by an unchecked re-implementation.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field

from datafilter.errors import ModelError
from datafilter.scorers.causal_lm import CausalLMOptions, CausalLMScorer, require
from datafilter.scorers.packing import Piece

# Architectures whose vLLM prompt log-probs match transformers' to 1e-5 (relative, float32) in
# tests/test_neural_families.py.
VERIFIED_ARCHITECTURES = frozenset(
    {
        "LlamaForCausalLM",
        "Qwen2ForCausalLM",
        "GraniteForCausalLM",
        "CohereForCausalLM",
        "Gemma2ForCausalLM",
        "GPT2LMHeadModel",
    }
)
# Prompt tokens per engine call when max_tokens_per_batch is not set (vLLM plans its own
# memory; this bounds its full-vocabulary prompt-logprob tensors).
DEFAULT_CALL_TOKENS = 8192


class VllmOptions(CausalLMOptions):
    gpu_memory_utilization: float = Field(
        0.85, gt=0, le=1, description="share of GPU memory vLLM may take"
    )
    enforce_eager: bool | None = Field(None, description="default: eager on CPU, graphs on GPU")


def logprob_value(entry: Any) -> float:
    """A prompt log-prob entry: a float in some vLLM versions, a ``Logprob`` object in others."""
    return float(getattr(entry, "logprob", entry))


class VllmScorer(CausalLMScorer):
    """One engine per Ray actor; windows are sent as token ids, grouped so that each engine call
    holds at most ``max_tokens_per_batch`` prompt tokens (vLLM builds full-vocabulary
    prompt-logprob tensors for every prompt token)."""

    name = "vllm"
    version = 2
    Options = VllmOptions
    options: VllmOptions

    def setup(self) -> None:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB, for the CPU build
        vllm = require("vllm")
        transformers = require("transformers")
        opts = self.options
        self.load_tokenizer()
        config = transformers.AutoConfig.from_pretrained(str(self.folder))
        check_family(config, str(self.folder))
        self.max_length = self.window_length(config)
        on_gpu = self.on_gpu = _has_cuda() and opts.device != "cpu"
        dtype = opts.dtype
        if dtype == "auto":
            dtype = "bfloat16" if on_gpu else "float32"
        self.llm = vllm.LLM(
            model=str(self.folder),
            skip_tokenizer_init=True,
            dtype=dtype,
            # A window plus the one generated token: no KV cache reserved beyond what is used.
            max_model_len=self.max_length + 1,
            max_num_batched_tokens=max(self.batch_budget(), self.max_length + 1),
            gpu_memory_utilization=opts.gpu_memory_utilization,
            enforce_eager=not on_gpu if opts.enforce_eager is None else opts.enforce_eager,
            seed=0,
        )
        self.params = vllm.SamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False)
        self.prompt_type = vllm.inputs.TokensPrompt

    def overlap(self) -> bool:
        return self.on_gpu

    def batch_budget(self) -> int:
        return self.options.max_tokens_per_batch or DEFAULT_CALL_TOKENS

    def prepare(self, pieces: list[Piece]) -> list[list[tuple[list[int], int]]]:
        return _calls([(p.tokens.tolist(), p.context) for p in pieces], self.batch_budget())

    def run(self, prepared: list[list[tuple[list[int], int]]]) -> list[float]:
        out: list[float] = []
        for group in prepared:
            prompts = [self.prompt_type(prompt_token_ids=tokens) for tokens, _ in group]
            results = self.llm.generate(prompts, self.params, use_tqdm=False)
            for (tokens, context), result in zip(group, results, strict=True):
                logprobs = result.prompt_logprobs  # entry 0 is None: nothing predicts token 0
                out.append(
                    sum(logprob_value(logprobs[p][tokens[p]]) for p in range(context, len(tokens)))
                )
        return out


def check_family(config: Any, folder: str) -> None:
    """Refuse a model whose architecture vLLM is not verified to score exactly."""
    archs = getattr(config, "architectures", None) or []
    unverified = [a for a in archs if a not in VERIFIED_ARCHITECTURES]
    if not archs or unverified:
        kind = getattr(config, "model_type", "unknown")
        family = f"{kind} ({', '.join(archs) or 'no architecture'})"
        raise ModelError(
            f"{folder}: the vllm scorer is not verified to score the {family} family exactly "
            f"(verified: {', '.join(sorted(VERIFIED_ARCHITECTURES))}); use the torch scorer"
        )


def _calls(pieces: list[tuple[list[int], int]], budget: int) -> list[list[tuple[list[int], int]]]:
    """Consecutive groups of windows holding at most ``budget`` tokens (one window at least)."""
    groups: list[list[tuple[list[int], int]]] = [[]]
    used = 0
    for piece in pieces:
        if groups[-1] and used + len(piece[0]) > budget:
            groups.append([])
            used = 0
        groups[-1].append(piece)
        used += len(piece[0])
    return [g for g in groups if g]


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()
