"""Reference causal LM scored with plain PyTorch + transformers (GPU in bf16, CPU in fp32).

Windows are packed side by side into rows (``packing.py``): each window's position ids restart
at 0 and transformers keeps attention inside each window (a block-diagonal causal mask with
SDPA or eager attention, variable-length attention with flash-attention). The model body runs
once per batch; then, for the predicted positions only, a chunk at a time, the model's own
``forward`` turns hidden states into logits with the body replaced by a replay of those hidden
states. So whatever a family does after its body (Gemma-2's final soft-capping, Granite's
``logits_scaling``, Cohere's ``logit_scale``, any future one) is applied by the family's own
code, and the full logits of a batch never exist. ``setup`` checks on a few probe windows that
this reproduces ``model(ids).logits.log_softmax(-1)`` packed; where it does not (ALiBi families,
whose positions cannot restart inside a row) it checks one window per row, right-padded, binned
by length; a family neither reproduces is refused, naming the family.
"""

from __future__ import annotations

import importlib.util
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field

from datafilter.errors import ModelError
from datafilter.scorers.causal_lm import CausalLMOptions, CausalLMScorer, require
from datafilter.scorers.packing import Piece, pack, row_ladder

# Logits computed at once: at most this many elements (fp32: 256 MiB on CPU, 1 GiB on a GPU),
# so a batch's full logits never exist together; with SmolLM2's 49,152-token vocabulary that
# is 1,365 positions per chunk on CPU and 5,461 on a GPU.
HEAD_LOGITS_ELEMENTS = {"cpu": 1 << 26, "cuda": 1 << 28}
# Tokens per forward pass on CPU (activations stay within the caches), and the range of the
# budget measured from free GPU memory; FREE_MEMORY_SHARE of the free memory is planned for.
CPU_BATCH_TOKENS = 8192
GPU_BATCH_TOKENS = (8192, 1 << 18)
FREE_MEMORY_SHARE = 0.6
# setup's exactness check: largest relative difference of a probe window's log-prob sum from
# the model's own full forward pass, by dtype (half precision rounds differently when packed).
PROBE_TOLERANCE = {"float32": 1e-4, "bfloat16": 5e-2, "float16": 5e-2}
PROBE_LENGTHS = (13, 9, 6)


class TorchLMOptions(CausalLMOptions):
    attention: Literal["auto", "sdpa", "eager", "flash_attention_2", "flex_attention"] = Field(
        "auto",
        description="attention kernel; auto: flash_attention_2 on CUDA when flash-attn is "
        "installed, eager for models with attention soft-capping (SDPA drops it), else SDPA",
    )


@dataclass
class _Batch:
    """A packed batch as (pinned, on CUDA) CPU tensors; ``owners`` index the chunk's windows."""

    input_ids: Any
    position_ids: Any
    predict_at: Any
    targets: Any
    owners: Any


class _Replay:
    """Stands in for the model body's ``forward``: returns the hidden states it was given (any
    other output a family's forward reads, such as cross-attentions, is None)."""

    def __init__(self) -> None:
        from transformers.modeling_outputs import BaseModelOutputWithPast

        class Replayed(BaseModelOutputWithPast):
            def __getattr__(self, name: str) -> Any:
                if name.startswith("__"):
                    raise AttributeError(name)
                return None

        self.output_type = Replayed
        self.hidden = None
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.output_type(last_hidden_state=self.hidden)


class TorchLMScorer(CausalLMScorer):
    """Packed batches; only the predicted positions' log-probs, by a chunked logsumexp of the
    model's own logits (never a full fp32 log-softmax of the whole batch)."""

    name = "torch"
    version = 2
    Options = TorchLMOptions
    options: TorchLMOptions

    def setup(self) -> None:
        torch = require("torch")
        transformers = require("transformers")
        opts = self.options
        self.device = (
            ("cuda" if torch.cuda.is_available() else "cpu")
            if opts.device == "auto"
            else opts.device
        )
        dtype = opts.dtype
        if dtype == "auto":
            dtype = "bfloat16" if self.device == "cuda" else "float32"
        self.dtype = dtype
        config = transformers.AutoConfig.from_pretrained(str(self.folder))
        self.family = family_name(config)
        kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype)}
        attention = self.attention_implementation(config)
        if attention:
            kwargs["attn_implementation"] = attention
        load = transformers.AutoModelForCausalLM.from_pretrained
        try:
            model = load(str(self.folder), **kwargs)
        except (ValueError, ImportError) as exc:
            if opts.attention != "auto" or "attn_implementation" not in kwargs:
                raise ModelError(f"{self.folder} ({self.family}): cannot load it: {exc}") from exc
            del kwargs["attn_implementation"]  # e.g. a family without flash-attention support
            model = load(str(self.folder), **kwargs)
        self.model = model.to(self.device).eval()
        self.body = self.model.base_model
        if self.body is self.model:
            raise ModelError(f"{self.family}: no base model under the LM head; cannot score it")
        self.attention = str(self.model.config._attn_implementation)
        self.load_tokenizer()
        self.max_length = self.window_length(self.model.config)
        pad = self.tokenizer.pad_token_id
        self.pad_id = self.start_id if pad is None else int(pad)
        head = self.model.get_output_embeddings()
        self.vocab = int(head.weight.shape[0] if head is not None else self.model.config.vocab_size)
        self.head_rows = max(1, HEAD_LOGITS_ELEMENTS[self.device] // self.vocab)
        self.dummy_ids = torch.zeros((1, self.head_rows), dtype=torch.long, device=self.device)
        self.replay = _Replay()
        self.choose_layout()
        self.budget = opts.max_tokens_per_batch or self.default_budget()

    def attention_implementation(self, config: Any) -> str | None:
        """The attention kernel to load the model with; None: transformers' default."""
        choice = self.options.attention
        if choice != "auto":
            return choice
        if self.device == "cuda" and importlib.util.find_spec("flash_attn") is not None:
            return "flash_attention_2"
        if getattr(config, "attn_logit_softcapping", None):
            return "eager"  # SDPA would skip the attention soft-capping
        return None

    def batch_budget(self) -> int:
        return self.budget

    def overlap(self) -> bool:
        return self.device == "cuda"

    def set_layout(self, packed: bool) -> None:
        """Packed rows (several windows, positions restarting) or one window per row."""
        self.packed = packed
        # flash-attention's variable-length path needs the packed rows as one row.
        self.flatten = packed and self.attention.startswith("flash")
        self.ladder = [self.max_length] if self.flatten else row_ladder(self.max_length, packed)
        self.budget = self.ladder[-1]

    def choose_layout(self) -> None:
        """Packed if the probe windows score exactly so, else one window per row if that is
        exact (ALiBi families, whose positions cannot restart inside a row); else refuse."""
        self.set_layout(True)
        try:
            packed_error = self.probe_error()
        except (TypeError, ValueError, RuntimeError):  # e.g. a body without position ids
            packed_error = float("inf")
        if packed_error <= PROBE_TOLERANCE[self.dtype]:
            return
        self.set_layout(False)
        error = self.probe_error()
        if error > PROBE_TOLERANCE[self.dtype]:
            raise ModelError(
                f"{self.family}: scoring with {self.attention} attention differs from the "
                f"model's own forward pass by {min(error, packed_error):.1e} (relative), with "
                "windows packed or one per row; the torch scorer cannot score this family "
                "exactly"
            )

    # ------------------------------------------------------------------ pipeline

    def prepare(self, pieces: list[Piece]) -> tuple[list[_Batch], int]:
        torch = require("torch")
        batches = []
        for order, packed in pack(pieces, self.budget, self.ladder, self.pad_id, self.packed):
            arrays = (packed.input_ids, packed.position_ids, packed.predict_at, packed.targets,
                      np.asarray(order, dtype=np.int64)[packed.owners])  # fmt: skip
            tensors = [torch.from_numpy(a) for a in arrays]
            if self.device == "cuda":
                tensors = [t.pin_memory() for t in tensors]
            batches.append(_Batch(*tensors))
        return batches, len(pieces)

    def run(self, prepared: tuple[list[_Batch], int]) -> Any:
        """Per-window sums, left on the device (no synchronisation until ``collect``)."""
        torch = require("torch")
        batches, n = prepared
        sums = torch.zeros(n, dtype=torch.float64, device=self.device)
        with torch.inference_mode():
            for batch in batches:
                owners = batch.owners.to(self.device, non_blocking=True)
                sums.index_add_(0, owners, self.token_logprobs(batch).double())
        return sums

    def collect(self, handle: Any) -> np.ndarray:
        return handle.cpu().numpy()

    def token_logprobs(self, batch: _Batch) -> Any:
        """The log-prob of each predicted token of a packed batch (float32)."""
        torch = require("torch")
        dev = self.device
        ids = batch.input_ids.to(dev, non_blocking=True)
        kwargs = {}
        if self.packed:
            kwargs["position_ids"] = batch.position_ids.to(dev, non_blocking=True)
            if self.flatten:
                ids, kwargs["position_ids"] = ids.view(1, -1), kwargs["position_ids"].view(1, -1)
        hidden = self.body(input_ids=ids, attention_mask=None, use_cache=False, **kwargs)
        hidden = hidden.last_hidden_state
        hidden = hidden.reshape(-1, hidden.shape[-1])
        at = batch.predict_at.to(dev, non_blocking=True)
        targets = batch.targets.to(dev, non_blocking=True)
        out = torch.empty(len(at), dtype=torch.float32, device=dev)
        with self.replayed_body():
            for start in range(0, len(at), self.head_rows):
                end = start + self.head_rows
                logits = self.head_logits(hidden.index_select(0, at[start:end])).float()
                chosen = logits.gather(1, targets[start:end, None])[:, 0]
                out[start:end] = chosen - torch.logsumexp(logits, dim=-1)
        return out

    @contextmanager
    def replayed_body(self):
        """While inside, the body's ``forward`` replays ``self.replay.hidden``."""
        self.body.forward = self.replay
        try:
            yield
        finally:
            del self.body.forward
            self.replay.hidden = None

    def head_logits(self, hidden: Any) -> Any:
        """The model's own logits (its forward, after the body) for hidden states ``[k, H]``."""
        k = hidden.shape[0]
        self.replay.hidden = hidden[None]
        calls = self.replay.calls
        logits = self.model(input_ids=self.dummy_ids[:, :k]).logits
        if self.replay.calls != calls + 1 or tuple(logits.shape[:2]) != (1, k):
            raise ModelError(
                f"{self.family}: its forward does not compute logits from its base model's "
                "output position by position; the torch scorer cannot score it exactly"
            )
        return logits[0]

    # ------------------------------------------------------------------ set-up checks

    def probe_pieces(self) -> list[Piece]:
        """A few windows of seeded random tokens, each after the start token."""
        rng = np.random.default_rng(0)
        lengths = [min(n, self.max_length) for n in PROBE_LENGTHS]
        return [
            Piece(np.array([self.start_id, *rng.integers(0, self.vocab, n - 1)], dtype=np.int64), 1)
            for n in lengths
        ]

    def probe_error(self) -> float:
        """Score the probe windows in the current layout and compare with a plain forward pass
        of each: the largest relative difference of a window's log-prob sum."""
        torch = require("torch")
        pieces = self.probe_pieces()
        got = self.collect(self.run(self.prepare(pieces)))
        want = []
        with torch.inference_mode():
            for piece in pieces:
                ids = torch.from_numpy(piece.tokens)[None].to(self.device)
                logits = self.model(input_ids=ids, use_cache=False).logits[0].float()
                logprobs = logits.log_softmax(-1)[:-1].gather(1, ids[0, 1:, None])
                want.append(float(logprobs.double().sum()))
        rel = np.abs(got / np.array(want) - 1)
        return float(np.nanmax(rel)) if np.all(np.isfinite(rel)) else float("inf")

    def default_budget(self) -> int:
        """Tokens per batch: fixed on CPU; on a GPU, from the memory one batch of the longest
        rows was measured to take and the memory free after loading the model."""
        if self.device != "cuda":
            return max(CPU_BATCH_TOKENS, self.ladder[-1])
        torch = require("torch")
        longest = self.ladder[-1]
        rows = max(1, GPU_BATCH_TOKENS[0] // longest)  # measured on this many tokens
        half = max(2, longest // 2)
        rng = np.random.default_rng(0)
        pieces = [
            Piece(rng.integers(0, self.vocab, half).astype(np.int64), 1)
            for _ in range(2 * rows)
        ]
        self.budget = rows * longest
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        self.collect(self.run(self.prepare(pieces)))
        per_token = max(1.0, (torch.cuda.max_memory_allocated() - before) / (rows * longest))
        free, _ = torch.cuda.mem_get_info()
        fits = int(FREE_MEMORY_SHARE * free / per_token) // longest * longest
        return max(longest, min(fits, GPU_BATCH_TOKENS[1]))


def family_name(config: Any) -> str:
    """How errors name a model family: its model type and architecture."""
    archs = getattr(config, "architectures", None) or []
    kind = getattr(config, "model_type", "unknown")
    return f"{kind} ({archs[0]})" if archs else str(kind)
