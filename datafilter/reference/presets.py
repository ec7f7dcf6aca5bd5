"""Model and optimiser presets: ``tiny`` (CPU tests) and ``125m`` (Ankner et al.'s size)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

TOKENS_PER_PARAM = 20  # default budget: ~20 training tokens per parameter (Chinchilla)


@dataclass(frozen=True)
class Preset:
    name: str
    hidden: int
    layers: int
    heads: int
    intermediate: int
    context: int
    vocab: int
    lr: float  # peak learning rate (AdamW), cosine decay to min_lr_ratio * lr
    batch_rows: int  # packed rows of `context` tokens per optimiser step (per micro-batch)
    grad_accum: int = 1
    warmup_fraction: float = 0.05
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    tie_embeddings: bool = True

    @property
    def tokens_per_step(self) -> int:
        return self.batch_rows * self.grad_accum * self.context

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, Preset] = {
    # 2 layers, 2 heads of 32, context 128: ~100k parameters, trains in seconds on a CPU.
    "tiny": Preset(
        name="tiny",
        hidden=64,
        layers=2,
        heads=2,
        intermediate=256,
        context=128,
        vocab=512,
        lr=3e-3,
        batch_rows=16,
    ),
    # GPT-3-small shape (Llama blocks): ~124M parameters with tied 32k embeddings;
    # 32 x 8 x 1024 = 262k tokens per step; lr 6e-4 as GPT-3 125M.
    "125m": Preset(
        name="125m",
        hidden=768,
        layers=12,
        heads=12,
        intermediate=2560,
        context=1024,
        vocab=32000,
        lr=6e-4,
        batch_rows=32,
        grad_accum=8,
    ),
}


def llama_config(preset: Preset, vocab_size: int, bos_id: int, eos_id: int, pad_id: int):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=preset.hidden,
        intermediate_size=preset.intermediate,
        num_hidden_layers=preset.layers,
        num_attention_heads=preset.heads,
        num_key_value_heads=preset.heads,
        max_position_embeddings=preset.context,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        tie_word_embeddings=preset.tie_embeddings,
        rope_theta=10000.0,
    )
