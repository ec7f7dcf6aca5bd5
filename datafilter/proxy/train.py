"""One proxy model: a preset Llama trained for a fixed number of steps on fixed token rows, and
its loss on target documents (nats per token and bits per byte).

The schedule is train-reference's (AdamW, betas and weight decay of the preset, linear warmup
then cosine decay, gradient clipping); the seed sets the initial weights and the order of the
rows, so two candidates trained with the same seed start from the same model (paired seeds).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from datafilter.reference.presets import Preset
from datafilter.reference.train import learning_rate, new_model


def row_order(n_rows: int, n_needed: int, seed: int) -> np.ndarray:
    """``n_needed`` row indices: a seeded permutation of the rows per epoch, back to back."""
    rng = np.random.default_rng([seed, n_rows])
    epochs = -(-n_needed // n_rows)
    return np.concatenate([rng.permutation(n_rows) for _ in range(epochs)])[:n_needed]


def train_proxy(rows: np.ndarray, p: Preset, tokenizer, steps: int, seed: int, device: str):
    """A fresh model of preset ``p`` (weights seeded by ``seed``) trained ``steps`` optimiser
    steps on ``rows``; returned in eval mode."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    model, opt = new_model(p, tokenizer, device)
    data = torch.from_numpy(rows)
    order = row_order(len(rows), steps * p.grad_accum * p.batch_rows, seed)
    model.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, steps, p)
        for micro in range(p.grad_accum):
            first = (step * p.grad_accum + micro) * p.batch_rows
            x = data[order[first : first + p.batch_rows]].to(device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
                logits = model(input_ids=x).logits
            loss = F.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1)
            )
            (loss / p.grad_accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    model.eval()
    return model


def windows(ids: list[int], context: int) -> list[tuple[list[int], int]]:
    """A document's tokens ``<s> ids </s>`` cut into windows of at most ``context`` tokens that
    overlap by one, each with the position from which its predictions count, so that every
    token after ``<s>`` is predicted exactly once."""
    out, start = [], 0
    while True:
        piece = ids[start : start + context]
        out.append((piece, 1))
        if start + context >= len(ids):
            return out
        start += context - 1


def target_loss(
    model, tokenizer, texts: list[str], ids: list[list[int]], context: int, device: str
) -> dict[str, Any]:
    """Summed loss of the model on the documents: nats per token (every token after ``<s>``,
    ``</s>`` included) and bits per UTF-8 byte of the texts."""
    import torch
    import torch.nn.functional as F

    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    pieces = [w for doc in ids for w in windows([bos, *doc, eos], context)]
    nats, n_tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(pieces), 32):
            batch = pieces[start : start + 32]
            width = max(len(w) for w, _ in batch)
            x = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.bool)
            for row, (w, first) in enumerate(batch):
                x[row, : len(w)] = torch.tensor(w)
                mask[row, first : len(w)] = True
            x, mask = x.to(device), mask.to(device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
                logits = model(input_ids=x).logits
            losses = F.cross_entropy(
                logits[:, :-1].float().transpose(1, 2), x[:, 1:], reduction="none"
            )
            nats += float(losses[mask[:, 1:]].double().sum())
            n_tokens += int(mask[:, 1:].sum())
    n_bytes = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts)
    return {
        "nats_per_token": nats / n_tokens,
        "bits_per_byte": nats / math.log(2) / n_bytes,
        "tokens": n_tokens,
        "bytes": n_bytes,
        "documents": len(texts),
    }
