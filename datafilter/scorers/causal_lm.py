"""What the neural scorers share: options, tokenisation, windows, model identity.

A document's tokens (with the tokenizer's BOS in front when it has one) are split into windows
of at most ``max_length`` tokens; every token after the first is predicted exactly once, and the
log-probabilities of the predicted tokens are summed. Backends only score windows.
"""

from __future__ import annotations

import hashlib
import json
from abc import abstractmethod
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from datafilter.errors import MissingDependencyError, ModelError
from datafilter.io.hash_cache import folder_sha256
from datafilter.scorers.base import BatchScores, Resources, Scorer, ScorerOptions
from datafilter.scorers.windows import token_windows

Piece = tuple[list[int], int]  # window tokens, and how many leading tokens are context only
# A chunk of documents is tokenised while the previous one is scored: about this many token
# batches per chunk (enough for length-sorting to pack well), sized before tokenising by an
# estimate of characters per token.
CHUNK_BATCHES = 16
CHARS_PER_TOKEN = 4


class CausalLMOptions(ScorerOptions):
    model: Path = Field(description="model folder (Hugging Face layout, or convert-gguf)")
    max_length: int | None = Field(None, ge=2, description="window; default: context size - 1")
    overlap: int = Field(0, ge=0, description="context tokens carried into each next window")
    add_bos: bool = Field(True, description="begin each window with the BOS token")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weights' type (auto: bfloat16 on a GPU, float32 on CPU)"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="where to run (auto: CUDA when present)"
    )
    num_gpus: float = Field(0.0, ge=0, description="GPUs per Ray actor (set 1 on GPU clusters)")
    max_tokens_per_batch: int = Field(8192, ge=16, description="tokens per forward/engine call")


def require(module: str, extra: str = "gpu"):
    """Import ``module`` or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(
            f"this scorer needs {module}: pip install 'datafilter[{extra}]'"
        ) from None


class CausalLMScorer(Scorer):
    """A Hugging Face causal LM folder scored window by window; subclasses run the windows."""

    Options = CausalLMOptions
    options: CausalLMOptions

    def resources(self) -> Resources:
        return Resources(num_cpus=1.0, num_gpus=self.options.num_gpus)

    @property
    def folder(self) -> Path:
        return Path(self.options.model).expanduser()

    def validate(self) -> None:
        if not (self.folder / "config.json").is_file():
            raise ModelError(
                f"{self.folder} is not a Hugging Face model folder (no config.json); "
                "for SmolLM2's GGUF run: datafilter convert-gguf --smollm2 --output DIR"
            )

    def describe(self) -> dict[str, Any]:
        self.validate()
        info = super().describe()
        # The files' contents identify the model (sha256, cached by file signature).
        digest = hashlib.sha256(json.dumps(folder_sha256(self.folder), sort_keys=True).encode())
        info["model_files"] = digest.hexdigest()[:16]
        return info

    def context_size(self, config: Any) -> int:
        """The model's own context size, from its config."""
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            if getattr(config, key, None):
                return int(getattr(config, key))
        raise ModelError(f"{self.folder}: no context size in config.json; set max_length")

    def window_length(self, config: Any) -> int:
        """Tokens per window: ``max_length``, else the context size minus one (vLLM needs room
        for the one token it generates; both backends use the same windows so they agree)."""
        context = self.context_size(config)
        length = self.options.max_length or context - 1
        if length > context - 1:
            raise ModelError(f"max_length {length} must be below the context size {context}")
        return length

    def load_tokenizer(self) -> None:
        transformers = require("transformers")
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(self.folder))

    def encode(self, texts: list[str]) -> list[list[int]]:
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        bos = self.tokenizer.bos_token_id
        if self.options.add_bos and bos is not None:
            return [[bos, *x] for x in ids]
        return [list(x) for x in ids]

    def score_batch(self, texts: list[str]) -> BatchScores:
        """Documents in chunks of about ``CHUNK_BATCHES`` token batches: a background thread
        tokenises the next chunk while the model scores the current one (the fast tokenizer
        and the model both release the GIL); each chunk's windows are length-sorted and packed
        by the backend."""
        logprob = np.zeros(len(texts))
        n_tokens = np.zeros(len(texts), dtype=np.int64)
        chunks = document_chunks(texts, CHARS_PER_TOKEN * CHUNK_BATCHES * self.batch_budget())
        if len(chunks) == 1:
            self._score_chunk(self.encode(texts), 0, logprob, n_tokens)
            return BatchScores(logprob_sum=logprob, n_tokens=n_tokens)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize") as pool:
            pending = pool.submit(self.encode, texts[chunks[0][0] : chunks[0][1]])
            for i, (start, _) in enumerate(chunks):
                encoded = pending.result()
                if i + 1 < len(chunks):
                    lo, hi = chunks[i + 1]
                    pending = pool.submit(self.encode, texts[lo:hi])
                self._score_chunk(encoded, start, logprob, n_tokens)
        return BatchScores(logprob_sum=logprob, n_tokens=n_tokens)

    def batch_budget(self) -> int:
        """Tokens per forward or engine call."""
        return self.options.max_tokens_per_batch

    def _score_chunk(
        self, encoded: list[list[int]], first: int, logprob: np.ndarray, n_tokens: np.ndarray
    ) -> None:
        """Score the windows of documents ``first, first + 1, ...`` into the arrays."""
        pieces: list[Piece] = []
        owners: list[int] = []
        for doc, tokens in enumerate(encoded, start=first):
            for w in token_windows(len(tokens), self.max_length, self.options.overlap):
                pieces.append((tokens[w.start : w.end], w.predict_from - w.start))
                owners.append(doc)
        sums = self.score_pieces(pieces)
        for doc, (tokens, context), value in zip(owners, pieces, sums, strict=True):
            logprob[doc] += value
            n_tokens[doc] += len(tokens) - context

    @abstractmethod
    def score_pieces(self, pieces: list[Piece]) -> list[float]:
        """For each window: the summed log-prob of its tokens after the context ones."""


def document_chunks(texts: list[str], chars: int) -> list[tuple[int, int]]:
    """Consecutive ``[start, end)`` ranges of documents holding about ``chars`` characters
    (one document at least)."""
    chunks: list[tuple[int, int]] = []
    start = size = 0
    for i, text in enumerate(texts):
        if size and size + len(text) > chars:
            chunks.append((start, i))
            start, size = i, 0
        size += len(text)
    chunks.append((start, len(texts)))
    return chunks


def batches_by_tokens(lengths: list[int], budget: int) -> list[list[int]]:
    """Indices grouped longest first so that (rows x longest row) stays within ``budget``."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and (len(groups[-1]) + 1) * lengths[groups[-1][0]] <= budget:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups
