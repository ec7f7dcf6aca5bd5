"""A tiny Llama-style causal LM with its own BPE tokenizer, made offline for the scorer tests."""

from __future__ import annotations

from pathlib import Path

TEXT = [
    "The Bank of England raised interest rates on Thursday.",
    "Shares in London fell as investors sold banks and miners.",
    "The film won three awards at the ceremony in Los Angeles.",
    "A new phone with a larger screen goes on sale next month.",
]


def make_tiny_lm(folder: Path, *, seed: int = 0, vocab_size: int = 300, context: int = 64) -> Path:
    """Random weights (seeded), head size 32 (vLLM's CPU build needs >= 32), a trained BPE."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(TEXT * 20, trainer)
    from tokenizers import decoders

    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=context,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder, safe_serialization=True)
    fast.save_pretrained(folder)
    return folder


def direct_logprob_sum(model, tokenizer, text: str, max_length: int) -> tuple[float, int]:
    """The reference the scorers are tested against: a plain forward pass with a full float64
    log-softmax over the vocabulary, window by window (BOS first, as the scorers do)."""
    import torch

    from datafilter.scorers.windows import token_windows

    ids = [tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"]]
    total, count = 0.0, 0
    for w in token_windows(len(ids), max_length):
        with torch.inference_mode():
            logits = model(torch.tensor([ids[w.start : w.end]])).logits[0].double()
        logprobs = logits.log_softmax(-1)
        for p in range(w.predict_from, w.end):
            total += logprobs[p - w.start - 1, ids[p]].item()
            count += 1
    return total, count
