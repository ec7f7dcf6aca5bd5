"""What the neural scorers share: options, tokenisation, windows, model identity, the pipeline.

Every document starts with one start token: the tokenizer's BOS, or its EOS where it has no BOS
(GPT-2 and Qwen2 style tokenizers; an EOS is what precedes a document in their training
streams). So every token of the text is predicted and counted in ``n_tokens``, and the score
stage's ``n_bytes`` (the document's UTF-8 bytes) are exactly the bytes of the predicted tokens.
The tokens are split into windows of at most ``max_length`` tokens; every token after the start
token is predicted exactly once, and the log-probabilities of the predicted tokens are summed.

``score_batch`` works in chunks of documents: on an accelerator a background thread tokenises,
windows and prepares the next chunk (the torch backend packs it into batches) while the model
scores the current one. Backends only prepare and run windows.
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

from datafilter.errors import ConfigError, MissingDependencyError, ModelError
from datafilter.io.hash_cache import folder_sha256
from datafilter.scorers.base import BatchScores, Resources, Scorer, ScorerOptions
from datafilter.scorers.packing import Piece
from datafilter.scorers.windows import token_windows

# The first chunk of a batch holds about one token batch of documents, so the device starts at
# once; later chunks about this many, enough for packing to fill rows well. Chunks are sized
# before tokenising by an estimate of characters per token.
CHUNK_BATCHES = 8
CHARS_PER_TOKEN = 4


class CausalLMOptions(ScorerOptions):
    model: Path = Field(description="model folder (Hugging Face layout, or convert-gguf)")
    max_length: int | None = Field(None, ge=2, description="window; default: context size - 1")
    overlap: int = Field(0, ge=0, description="context tokens carried into each next window")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weights' type (auto: bfloat16 on a GPU, float32 on CPU)"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="where to run (auto: CUDA when present)"
    )
    num_gpus: float = Field(0.0, ge=0, description="GPUs per Ray actor (set 1 on GPU clusters)")
    max_tokens_per_batch: int | None = Field(
        None, ge=16, description="tokens per forward/engine call; default: from device memory"
    )


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

    def window_length(self, config: Any) -> int:
        """Tokens per window: ``max_length``, else the context size minus one (vLLM needs room
        for the one token it generates; both backends use the same windows so they agree)."""
        context = _declared_context(config)
        length = self.options.max_length
        if context is None and length is None:  # e.g. ALiBi models have no fixed context size
            raise ModelError(f"{self.folder}: no context size in config.json; set max_length")
        if context is not None:
            length = length or context - 1
            if length > context - 1:
                raise ModelError(f"max_length {length} must be below the context size {context}")
        if self.options.overlap >= length - 1:
            raise ConfigError(f"overlap {self.options.overlap} must be below max_length - 1")
        return length

    def load_tokenizer(self) -> None:
        transformers = require("transformers")
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(self.folder))
        self.start_id = start_token(self.tokenizer, self.folder)

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        """Token ids of each text after the start token (BOS, else EOS)."""
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [np.array([self.start_id, *x], dtype=np.int64) for x in ids]

    def windows(self, encoded: list[np.ndarray]) -> tuple[list[Piece], np.ndarray]:
        """The windows of the documents, and the document (index in ``encoded``) of each."""
        pieces: list[Piece] = []
        owners: list[int] = []
        for doc, tokens in enumerate(encoded):
            for w in token_windows(len(tokens), self.max_length, self.options.overlap):
                pieces.append(Piece(tokens[w.start : w.end], w.predict_from - w.start))
                owners.append(doc)
        return pieces, np.array(owners, dtype=np.int64)

    def score_batch(self, texts: list[str]) -> BatchScores:
        """Documents in chunks; on an accelerator a background thread tokenises and prepares
        the next chunk while the model scores this one (the fast tokenizer, NumPy and the
        model release the GIL); the sums come back from the device once, at the end."""
        logprob = np.zeros(len(texts))
        n_tokens = np.zeros(len(texts), dtype=np.int64)
        budget = CHARS_PER_TOKEN * self.batch_budget()
        chunks = document_chunks(texts, CHUNK_BATCHES * budget, first=budget)

        def prepare(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, Any]:
            pieces, owners = self.windows(self.encode(texts[lo:hi]))
            counts = np.array([len(p.tokens) - p.context for p in pieces], dtype=np.int64)
            return owners + lo, counts, self.prepare(pieces)

        done = []
        if len(chunks) == 1 or not self.overlap():
            for chunk in chunks:
                owners, counts, prepared = prepare(*chunk)
                done.append((owners, counts, self.run(prepared)))
        else:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare") as pool:
                pending = pool.submit(prepare, *chunks[0])
                for i in range(len(chunks)):
                    owners, counts, prepared = pending.result()
                    if i + 1 < len(chunks):
                        pending = pool.submit(prepare, *chunks[i + 1])
                    done.append((owners, counts, self.run(prepared)))
        for owners, counts, handle in done:
            np.add.at(logprob, owners, self.collect(handle))
            np.add.at(n_tokens, owners, counts)
        return BatchScores(logprob_sum=logprob, n_tokens=n_tokens)

    def overlap(self) -> bool:
        """Whether to prepare the next chunk in a background thread: worth it when the model
        runs on an accelerator; on CPU the thread would take cores from the model's own
        threads (a descheduled OpenMP thread stalls the others)."""
        return False

    @abstractmethod
    def batch_budget(self) -> int:
        """Tokens per forward or engine call."""

    def prepare(self, pieces: list[Piece]) -> Any:
        """CPU-side work for a chunk's windows (runs in the background thread)."""
        return pieces

    @abstractmethod
    def run(self, prepared: Any) -> Any:
        """Score a prepared chunk; may return a handle to results still on the device."""

    def collect(self, handle: Any) -> np.ndarray:
        """Per window, in the order given to ``prepare``: the summed log-prob of its tokens
        after the context ones."""
        return np.asarray(handle, dtype=np.float64)


def _declared_context(config: Any) -> int | None:
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        if getattr(config, key, None):
            return int(getattr(config, key))
    return None


def start_token(tokenizer: Any, folder: Path) -> int:
    """The token put before every document: BOS, else EOS (the no-BOS rule)."""
    for token in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token is not None:
            return int(token)
    raise ModelError(
        f"{folder}: the tokenizer has neither a BOS nor an EOS token, so nothing can stand "
        "before a document's first token and it could not be predicted"
    )


def document_chunks(
    texts: list[str], chars: int, first: int | None = None
) -> list[tuple[int, int]]:
    """Consecutive ``[start, end)`` ranges of documents holding about ``chars`` characters
    (``first`` for the first range; one document at least)."""
    chunks: list[tuple[int, int]] = []
    start = size = 0
    limit = chars if first is None else first
    for i, text in enumerate(texts):
        if size and size + len(text) > limit:
            chunks.append((start, i))
            start, size, limit = i, 0, chars
        size += len(text)
    chunks.append((start, len(texts)))
    return chunks
