"""Reference causal LM scored with vLLM's offline engine: prompt log-probs of token-id prompts."""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field

from datafilter.scorers.causal_lm import CausalLMOptions, CausalLMScorer, Piece, require


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
    version = 1
    Options = VllmOptions
    options: VllmOptions

    def setup(self) -> None:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB, for the CPU build
        vllm = require("vllm")
        transformers = require("transformers")
        opts = self.options
        self.load_tokenizer()
        config = transformers.AutoConfig.from_pretrained(str(self.folder))
        self.max_length = self.window_length(config)
        on_gpu = _has_cuda() and opts.device != "cpu"
        dtype = opts.dtype
        if dtype == "auto":
            dtype = "bfloat16" if on_gpu else "float32"
        self.llm = vllm.LLM(
            model=str(self.folder),
            skip_tokenizer_init=True,
            dtype=dtype,
            # A window plus the one generated token: no KV cache reserved beyond what is used.
            max_model_len=self.max_length + 1,
            max_num_batched_tokens=max(opts.max_tokens_per_batch, self.max_length + 1),
            gpu_memory_utilization=opts.gpu_memory_utilization,
            enforce_eager=not on_gpu if opts.enforce_eager is None else opts.enforce_eager,
            seed=0,
        )
        self.params = vllm.SamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False)
        self.prompt_type = vllm.inputs.TokensPrompt

    def score_pieces(self, pieces: list[Piece]) -> list[float]:
        out: list[float] = []
        for group in _calls(pieces, self.options.max_tokens_per_batch):
            prompts = [self.prompt_type(prompt_token_ids=tokens) for tokens, _ in group]
            results = self.llm.generate(prompts, self.params, use_tqdm=False)
            for (tokens, context), result in zip(group, results, strict=True):
                logprobs = result.prompt_logprobs  # entry 0 is None: nothing predicts token 0
                out.append(
                    sum(logprob_value(logprobs[p][tokens[p]]) for p in range(context, len(tokens)))
                )
        return out


def _calls(pieces: list[Piece], budget: int) -> list[list[Piece]]:
    """Consecutive groups of windows holding at most ``budget`` tokens (one window at least)."""
    groups: list[list[Piece]] = [[]]
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
