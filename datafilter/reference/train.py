"""``train_reference``: the split, the tokenizer, then one plain-PyTorch training run per fold.

A plain process (one device); no Ray Train. Defaults: ~20 tokens per parameter
(:data:`TOKENS_PER_PARAM`), AdamW (betas 0.9/0.95, weight decay 0.1 on matrices), linear warmup
over 5% of the steps then cosine decay to 10% of the peak learning rate, gradient clipping at 1.
bf16 autocast and ``torch.compile`` on GPU, fp32 on CPU.
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from datafilter.errors import ConfigError
from datafilter.io.atomic import atomic_path, write_json, write_table
from datafilter.reference.crossfit import HASH_SCHEME
from datafilter.reference.data import pack as pack_rows
from datafilter.reference.data import (
    read_candidates,
    tokenize_capped,
    train_tokenizer,
)
from datafilter.reference.presets import PRESETS, TOKENS_PER_PARAM, Preset, llama_config
from datafilter.registry import as_list

log = logging.getLogger(__name__)

PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12}


class TrainReferenceOptions(BaseModel):
    """``datafilter train-reference``."""

    model_config = ConfigDict(extra="forbid")

    input: list[str] = Field(description="Parquet files or folders")
    output: str = Field(description="model folder to write (fold-j/ inside)")

    _one_input = field_validator("input", mode="before")(as_list)
    text_column: str = Field("text", description="input column holding the documents")
    id_column: str | None = Field("id", description="document id column, recorded in the split")
    preset: str = Field(
        "tiny",
        description="model size: tiny (CPU tests) or 125m",
        json_schema_extra={"choices": sorted(PRESETS)},
    )
    folds: int = Field(1, description="k models on disjoint hash folds")
    fraction: float = Field(0.1, description="share of each fold sampled, in (0, 1]")
    tokens: int | None = Field(
        None, ge=1, description="tokens per model (default: 20 per parameter)"
    )
    steps: int | None = Field(None, ge=1, description="optimiser steps (default: from tokens)")
    seed: int = Field(0, description="seed of the sample and the training")
    resume: bool = Field(False, description="continue from the last checkpoints")
    checkpoint_every: int = Field(500, ge=1, description="steps between checkpoints")
    log_every: int = Field(50, ge=1, description="steps between loss lines")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where to train")
    stop_after: int | None = Field(
        None,
        ge=1,
        description="stop this process after that many steps (a checkpoint is written)",
        json_schema_extra={"cli": False},
    )


def train_reference(opts: TrainReferenceOptions) -> dict[str, Any]:
    """Train ``folds`` reference models into ``output/fold-j/`` (see the module docstring).

    ``tokens`` caps each fold's sample and sets the training budget (default: 20 tokens per
    parameter); ``steps`` overrides the number of optimiser steps. ``stop_after`` stops this
    process after that many steps (a checkpoint is written) — ``resume=True`` continues.
    """
    import torch

    input, output = opts.input, opts.output
    text_column, id_column = opts.text_column, opts.id_column
    preset, folds, fraction, tokens, steps = (
        opts.preset, opts.folds, opts.fraction, opts.tokens, opts.steps
    )  # fmt: skip
    seed, resume, device, stop_after = opts.seed, opts.resume, opts.device, opts.stop_after
    checkpoint_every, log_every = opts.checkpoint_every, opts.log_every

    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    if folds < 1:
        raise ConfigError("--folds must be at least 1")
    if not 0 < fraction <= 1:
        raise ConfigError("--fraction must be in (0, 1]")
    p = PRESETS[preset]
    out = Path(output).expanduser().resolve()
    inputs = [input] if isinstance(input, str | Path) else list(input)
    if out.exists() and any(out.iterdir()) and not resume:
        raise ConfigError(f"{out} is not empty; use --resume to continue or another --output")
    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device

    settings = {
        "input": [str(Path(i).expanduser().resolve()) for i in inputs],
        "text_column": text_column,
        "preset": preset,
        "folds": folds,
        "fraction": fraction,
        "tokens": tokens,
        "steps": steps,
        "seed": seed,
    }
    split_json = out / "split.json"
    if resume and split_json.is_file():
        import json

        old = json.loads(split_json.read_text())["settings"]
        if old != settings:
            raise ConfigError(f"{out} was trained with other settings {old}; cannot resume")

    n_params = _count_params(p)
    budget = tokens
    if budget is None:
        budget = steps * p.tokens_per_step if steps else TOKENS_PER_PARAM * n_params
    total_steps = steps or max(1, math.ceil(budget / p.tokens_per_step))

    candidates, n_read = read_candidates(inputs, text_column, id_column, folds, fraction, seed)
    tok_dir = out / "tokenizer"
    if resume and (tok_dir / "tokenizer.json").is_file():
        from transformers import PreTrainedTokenizerFast

        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tok_dir))
    else:
        t0 = time.perf_counter()
        tokenizer = train_tokenizer([d for f in candidates for d in f], p.vocab, p.context)
        _save_dir(lambda d: tokenizer.save_pretrained(str(d)), tok_dir)
        log.info(
            f"train-reference: BPE tokenizer, {len(tokenizer)} tokens, "
            f"{time.perf_counter() - t0:.1f}s"
        )

    fold_info = []
    rows_per_fold = []
    for j, docs in enumerate(candidates):
        kept, ids = tokenize_capped(docs, tokenizer, budget)
        if not kept:
            raise ConfigError(f"fold {j} has no training documents; raise --fraction")
        n_tok = sum(len(x) + 2 for x in ids)
        import pyarrow as pa

        table = pa.table(
            {
                "text_hash": pa.array([d.text_hash for d in kept], pa.uint64()),
                "id": pa.array([d.id for d in kept], pa.string()),
                "n_tokens": pa.array([len(x) + 2 for x in ids], pa.int64()),
            }
        )
        split_file = out / "split" / f"fold-{j}.parquet"
        if resume and split_file.is_file():
            import pyarrow.parquet as pq

            old_hashes = pq.read_table(split_file, columns=["text_hash"]).column(0).to_pylist()
            if old_hashes != [d.text_hash for d in kept]:
                raise ConfigError(f"the input changed since {split_file} was written")
        else:
            write_table(split_file, table)
        rows_per_fold.append(
            pack_rows(ids, tokenizer.bos_token_id, tokenizer.eos_token_id, p.context)
        )
        fold_info.append(
            {
                "fold": j,
                "candidates": len(docs),
                "documents": len(kept),
                "tokens": n_tok,
                "epochs": round(total_steps * p.tokens_per_step / n_tok, 3),
                "split": f"split/fold-{j}.parquet",
            }
        )
        log.info(
            f"train-reference: fold {j}: {len(kept)} documents, {n_tok} tokens, "
            f"{fold_info[-1]['epochs']} epochs of {total_steps} steps"
        )
    write_json(
        split_json,
        {
            "settings": settings,
            "hash_scheme": HASH_SCHEME,
            "documents_read": n_read,
            "folds": fold_info,
        },
    )

    results = []
    for j in range(folds):
        result = _train_fold(
            j,
            folds,
            p,
            rows_per_fold[j],
            tokenizer,
            out,
            total_steps,
            seed,
            dev,
            resume,
            checkpoint_every,
            log_every,
            stop_after,
        )
        results.append(result)
        if not result["finished"]:
            return {"output": str(out), "finished": False, "folds": results}
    crossfit = {
        "reference_kind": "corpus",  # trained on the corpus itself (the band's default: medium)
        "folds": folds,
        "fold_dirs": [f"fold-{j}" for j in range(folds)],
        "hash_scheme": HASH_SCHEME,
        "cross_fitted": folds > 1,
        "preset": preset,
        "parameters": n_params,
        "split": "split.json",
    }
    write_json(out / "crossfit.json", crossfit)
    return {
        "output": str(out),
        "finished": True,
        "parameters": n_params,
        "steps": total_steps,
        "folds": results,
    }


def _count_params(p: Preset) -> int:
    per_layer = 4 * p.hidden * p.hidden + 3 * p.hidden * p.intermediate + 2 * p.hidden
    emb = p.vocab * p.hidden * (1 if p.tie_embeddings else 2)
    return p.layers * per_layer + emb + p.hidden


def _save_dir(save: Callable[[Path], None], target: Path) -> None:
    """Write a folder under a temporary name, then move it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    save(tmp)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)


def new_model(p: Preset, tokenizer: Any, device: str) -> tuple[Any, Any]:
    """A Llama of the preset with fresh weights (from torch's current seed) on ``device``, and
    its AdamW (weight decay on matrices only, the preset's betas)."""
    import torch
    from transformers import LlamaForCausalLM

    config = llama_config(
        p, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    )
    model = LlamaForCausalLM(config).to(device)
    decay = [q for q in model.parameters() if q.dim() >= 2]
    no_decay = [q for q in model.parameters() if q.dim() < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": p.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=p.lr,
        betas=p.betas,
        fused=device == "cuda",
    )
    return model, opt


def learning_rate(step: int, total: int, p: Preset) -> float:
    """Linear warmup over ``warmup_fraction`` of the steps, then cosine decay to
    ``min_lr_ratio`` of the peak."""
    warmup = max(1, int(p.warmup_fraction * total))
    if step < warmup:
        return p.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return p.lr * (p.min_lr_ratio + (1 - p.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


class _RowOrder:
    """Row indices for (step, micro-batch): a seeded permutation per epoch, a pure function of
    the step, so a resumed run reads exactly the rows the uninterrupted run would have."""

    def __init__(self, n_rows: int, seed: int, fold: int):
        self.n_rows, self.seed, self.fold = n_rows, seed, fold
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {
                epoch: np.random.default_rng([self.seed, self.fold, epoch]).permutation(self.n_rows)
            } | {e: v for e, v in self._perms.items() if e == epoch - 1}
        return self._perms[epoch]

    def rows(self, first: int, count: int) -> np.ndarray:
        g = np.arange(first, first + count)
        out = np.empty(count, dtype=np.int64)
        for epoch in np.unique(g // self.n_rows):
            sel = g // self.n_rows == epoch
            out[sel] = self._perm(int(epoch))[g[sel] % self.n_rows]
        return out


def _train_fold(
    j: int,
    k: int,
    p: Preset,
    rows: np.ndarray,
    tokenizer,
    out: Path,
    total_steps: int,
    seed: int,
    dev: str,
    resume: bool,
    checkpoint_every: int,
    log_every: int,
    stop_after: int | None,
) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    fold_dir = out / f"fold-{j}"
    done = fold_dir / "training.json"
    if resume and done.is_file():
        import json

        log.info(f"train-reference: fold {j} already trained")
        return json.loads(done.read_text())
    fold_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed * 1000 + j)
    model, opt = new_model(p, tokenizer, dev)
    ckpt = fold_dir / "checkpoint.pt"
    start, history, resumed_from = 0, [], None
    if resume and ckpt.is_file():
        state = torch.load(ckpt, map_location=dev, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = resumed_from = state["step"]
        history = state["history"]
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        if dev == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"])
        log.info(f"train-reference: fold {j} resumes at step {start}")

    def save_checkpoint(step: int) -> None:
        state = {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "step": step,
            "history": history,
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state() if dev == "cuda" else None,
            },
        }
        with atomic_path(ckpt) as tmp:
            torch.save(state, tmp)

    fwd = torch.compile(model) if dev == "cuda" else model
    data = torch.from_numpy(rows)
    order = _RowOrder(len(rows), seed, j)
    n_params = sum(q.numel() for q in model.parameters())
    flops_per_token = 6 * n_params + 12 * p.layers * p.hidden * p.context
    peak = None
    if dev == "cuda":
        name = torch.cuda.get_device_name()
        peak = next((v for key, v in PEAK_BF16_FLOPS.items() if key in name), None)
    model.train()
    loss_acc = torch.zeros((), device=dev)
    n_acc, t_last, tok_last = 0, time.perf_counter(), 0
    fold_start = t_last
    step = start
    for step in range(start, total_steps):
        lr = learning_rate(step, total_steps, p)
        for group in opt.param_groups:
            group["lr"] = lr
        for micro in range(p.grad_accum):
            idx = order.rows((step * p.grad_accum + micro) * p.batch_rows, p.batch_rows)
            x = data[idx].to(dev, non_blocking=True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev == "cuda"):
                logits = fwd(input_ids=x).logits
            loss = F.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1)
            )
            (loss / p.grad_accum).backward()
            loss_acc += loss.detach() / p.grad_accum
        torch.nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        n_acc += 1
        tok_last += p.tokens_per_step
        last = step + 1 == total_steps
        if (step + 1) % log_every == 0 or last or step == start:
            mean_loss = loss_acc.item() / n_acc
            now = time.perf_counter()
            tps = tok_last / max(now - t_last, 1e-9)
            entry = {
                "step": step + 1,
                "loss": round(mean_loss, 5),
                "lr": lr,
                "tokens_per_s": round(tps, 1),
            }
            line = (
                f"train-reference: fold {j}/{k} step {step + 1}/{total_steps} "
                f"loss {mean_loss:.4f} lr {lr:.2e} tok/s {tps:,.0f}"
            )
            if peak:
                entry["mfu"] = round(tps * flops_per_token / peak, 4)
                line += f" mfu {entry['mfu']:.1%}"
            per_step = (now - fold_start) / (step + 1 - start)
            if not last:  # the fold's time left, at the rate since it (re)started
                line += f", about {per_step * (total_steps - step - 1):.0f} s left"
            history.append(entry)
            log.info(line)
            loss_acc.zero_()
            n_acc, t_last, tok_last = 0, now, 0
        if (step + 1) % checkpoint_every == 0 and not last:
            save_checkpoint(step + 1)
        if stop_after is not None and step + 1 - start >= stop_after and not last:
            save_checkpoint(step + 1)
            log.info(f"train-reference: fold {j} stopped at step {step + 1} (checkpoint written)")
            return {"fold": j, "finished": False, "step": step + 1, "resumed_from": resumed_from}

    model.eval()

    def save(d: Path) -> None:
        model.to("cpu").save_pretrained(str(d), safe_serialization=True)
        tokenizer.save_pretrained(str(d))

    final = fold_dir.with_name(f".{fold_dir.name}.final-{os.getpid()}")
    _save_dir(save, final)
    for item in final.iterdir():
        os.replace(item, fold_dir / item.name)
    final.rmdir()
    result = {
        "fold": j,
        "finished": True,
        "step": total_steps,
        "resumed_from": resumed_from,
        "parameters": n_params,
        "flops_per_token": flops_per_token,
        "tokens_trained": total_steps * p.tokens_per_step,
        "sample_tokens": int(rows.size),
        "device": dev,
        "preset": p.to_json(),
        "history": history,
    }
    write_json(done, result)
    ckpt.unlink(missing_ok=True)
    return result
