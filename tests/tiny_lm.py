"""Tiny causal LMs of several families with a BPE tokenizer trained here, made offline for the
scorer tests, and the reference the scorers are compared with."""

from __future__ import annotations

from pathlib import Path

TEXT = [
    "The Bank of England raised interest rates on Thursday.",
    "Shares in London fell as investors sold banks and miners.",
    "The film won three awards at the ceremony in Los Angeles.",
    "A new phone with a larger screen goes on sale next month.",
]

# Per family: its config class and settings (2 layers, 64 wide, 2 heads of 32: vLLM's CPU build
# needs heads of 32 at least). Weights are drawn with a large initializer range so that the
# logits are large enough for soft-capping and scaling to change every log-probability a lot.
LLAMA_SHAPE = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
               "num_key_value_heads": 2, "intermediate_size": 128}  # fmt: skip
FAMILIES: dict[str, tuple[str, dict]] = {
    "llama": ("LlamaConfig", {**LLAMA_SHAPE, "tie_word_embeddings": False}),
    # Soft-capping of the final logits and of the attention scores; sliding-window layers
    # (window 16) alternate with full ones, so packing meets both masks.
    "gemma2": (
        "Gemma2Config",
        {**LLAMA_SHAPE, "head_dim": 32, "query_pre_attn_scalar": 32,
         "final_logit_softcapping": 2.0, "attn_logit_softcapping": 5.0, "sliding_window": 16},
    ),  # fmt: skip
    "granite": (
        "GraniteConfig",
        {**LLAMA_SHAPE, "logits_scaling": 0.25, "embedding_multiplier": 2.0,
         "residual_multiplier": 0.5, "attention_multiplier": 0.1},
    ),  # fmt: skip
    "cohere": ("CohereConfig", {**LLAMA_SHAPE, "logit_scale": 4.0}),
    "qwen2": ("Qwen2Config", {**LLAMA_SHAPE, "tie_word_embeddings": False}),
    "gpt2": ("GPT2Config", {"n_embd": 64, "n_layer": 2, "n_head": 2, "n_inner": 128}),
}
# Families only the refusal and fallback tests use: BLOOM has ALiBi positions (no position ids,
# so windows cannot be packed), OPT's head does not read its base model's output.
OTHER_FAMILIES: dict[str, tuple[str, dict]] = {
    "bloom": ("BloomConfig", {"hidden_size": 64, "n_layer": 2, "n_head": 2}),
    "opt": ("OPTConfig", {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                          "ffn_dim": 128, "word_embed_proj_dim": 64}),  # fmt: skip
}
# Families whose tokenizer has no BOS token: Qwen2's has none, GPT-2's BOS is its EOS.
NO_BOS = {"qwen2"}
BOS_IS_EOS = {"gpt2"}


def train_test_tokenizer(*, bos: bool = True, bos_is_eos: bool = False, vocab_size: int = 300):
    """The project's own BPE (``reference.data.train_tokenizer``) on a few sentences;
    ``bos=False`` drops the BOS token, ``bos_is_eos`` makes EOS the BOS (GPT-2 style)."""
    from transformers import PreTrainedTokenizerFast

    from datafilter.reference.data import Doc, train_tokenizer

    docs = [Doc(text_hash=i, key=i / 80, id=None, text=t) for i, t in enumerate(TEXT * 20)]
    trained = train_tokenizer(docs, vocab_size, 64)
    if bos and not bos_is_eos:
        return trained
    specials = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    if bos_is_eos:
        specials["bos_token"] = "</s>"
    return PreTrainedTokenizerFast(tokenizer_object=trained.backend_tokenizer, **specials)


def make_tiny_family(
    folder: Path, family: str, *, seed: int = 0, context: int = 64, scale: float = 0.2
) -> Path:
    """A random ``family`` model (2 layers, 64 wide, 2 heads of 32) and its tokenizer; BLOOM's
    ALiBi has no context size (score it with ``max_length``)."""
    import torch
    import transformers

    tokenizer = train_test_tokenizer(bos=family not in NO_BOS, bos_is_eos=family in BOS_IS_EOS)
    config_name, settings = {**FAMILIES, **OTHER_FAMILIES}[family]
    context_key = {"gpt2": "n_positions", "bloom": None}.get(family, "max_position_embeddings")
    scale_key = "init_std" if family == "opt" else "initializer_range"
    config = getattr(transformers, config_name)(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **({context_key: context} if context_key else {}),
        **{scale_key: scale},
        **settings,
    )
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def make_tiny_lm(folder: Path, *, seed: int = 0, context: int = 64) -> Path:
    """The Llama-style tiny model most scorer tests use."""
    return make_tiny_family(folder, "llama", seed=seed, context=context, scale=0.02)


def load_reference(folder: Path):
    """The model as its family defines it (eager attention applies every soft-capping), fp32."""
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(folder), dtype=torch.float32, attn_implementation="eager"
    )
    return model.eval(), transformers.AutoTokenizer.from_pretrained(str(folder))


def start_id(tokenizer) -> int:
    """The no-BOS rule: BOS, else EOS."""
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def direct_logprob_sum(model, tokenizer, text: str, max_length: int) -> tuple[float, int]:
    """The reference the scorers are tested against: a plain forward pass of each window,
    ``model(ids).logits`` and a float64 log-softmax over the vocabulary (start token first)."""
    import torch

    from datafilter.scorers.windows import token_windows

    ids = [start_id(tokenizer), *tokenizer(text, add_special_tokens=False)["input_ids"]]
    total, count = 0.0, 0
    for w in token_windows(len(ids), max_length):
        with torch.inference_mode():
            logits = model(torch.tensor([ids[w.start : w.end]])).logits[0].double()
        logprobs = logits.log_softmax(-1)
        for p in range(w.predict_from, w.end):
            total += logprobs[p - w.start - 1, ids[p]].item()
            count += 1
    return total, count
