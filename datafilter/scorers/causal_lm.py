"""What the neural scorers share: options, tokenisation, windows, model identity.

A document's tokens (with the tokenizer's BOS in front when it has one) are split into windows
of at most ``max_length`` tokens; every token after the first is predicted exactly once, and the
log-probabilities of the predicted tokens are summed. Backends only score windows.
"""

from __future__ import annotations

import hashlib
import json
from abc import abstractmethod
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from datafilter.errors import MissingDependencyError, ModelError
from datafilter.io.markers import file_fingerprint
from datafilter.scorers.base import BatchScores, Resources, Scorer, ScorerOptions
from datafilter.scorers.windows import token_windows

Piece = tuple[list[int], int]  # window tokens, and how many leading tokens are context only


class CausalLMOptions(ScorerOptions):
    model: Path
    max_length: int | None = Field(None, ge=2, description="window; default: context size - 1")
    overlap: int = Field(0, ge=0, description="context tokens carried into each next window")
    add_bos: bool = True
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
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
        files = sorted(p for p in self.folder.iterdir() if p.is_file())
        digest = hashlib.sha256()
        for path in files:
            digest.update(json.dumps([path.name, file_fingerprint(path)]).encode())
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
        pieces: list[Piece] = []
        owners: list[int] = []
        for doc, tokens in enumerate(self.encode(texts)):
            for w in token_windows(len(tokens), self.max_length, self.options.overlap):
                pieces.append((tokens[w.start : w.end], w.predict_from - w.start))
                owners.append(doc)
        sums = self.score_pieces(pieces)
        logprob = np.zeros(len(texts))
        n_tokens = np.zeros(len(texts), dtype=np.int64)
        for doc, (tokens, context), value in zip(owners, pieces, sums, strict=True):
            logprob[doc] += value
            n_tokens[doc] += len(tokens) - context
        return BatchScores(logprob_sum=logprob, n_tokens=n_tokens)

    @abstractmethod
    def score_pieces(self, pieces: list[Piece]) -> list[float]:
        """For each window: the summed log-prob of its tokens after the context ones."""


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
