"""Benchmark inputs: the demo corpus, a KenLM model trained on it, and a replicated pool.

Everything is built under an output folder (``bench/out`` by default, git-ignored) and reused
on the next run when the parameters match.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

POOL_FORMAT = 1


@dataclass(frozen=True)
class BenchData:
    """A benchmark pool (Parquet shards with a unique ``id`` and a ``text`` column) and a model."""

    pool_dir: Path
    shard_paths: list[Path]
    model_dir: Path
    n_docs: int
    n_bytes: int  # UTF-8 bytes of the ``text`` column, all shards
    source_docs: int
    copies: float


def prepare(
    out: Path,
    *,
    mb: float,
    shards: int,
    order: int,
    vocab_size: int,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> BenchData:
    """Build or reuse the demo corpus, the model and a pool of about ``mb`` MB (10^6 bytes)."""
    from datafilter.demo_corpus import build_demo_corpus
    from datafilter.kenlm.train import KenlmTrainingOptions, train_kenlm

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    demo = build_demo_corpus(out / "demo", seed=seed)
    model_dir = out / f"model-o{order}-v{vocab_size}-seed{seed}"
    train_kenlm(
        [demo.reference_dir],
        model_dir,
        options=KenlmTrainingOptions(order=order, vocab_size=vocab_size),
        log=log,
    )
    pool_dir = out / f"pool-{mb:g}mb-{shards}shards-seed{seed}"
    meta = _read_meta(pool_dir)
    wanted = {"format": POOL_FORMAT, "mb": mb, "shards": shards, "seed": seed}
    if meta is None or {k: meta.get(k) for k in wanted} != wanted:
        meta = _build_pool(demo.pool_dir, pool_dir, wanted)
        log(
            f"bench pool: {meta['n_docs']} docs, {meta['n_bytes'] / 1e6:.1f} MB of text in "
            f"{shards} shards -> {pool_dir}"
        )
    else:
        log(f"bench pool already built in {pool_dir}; reusing it")
    return BenchData(
        pool_dir=pool_dir,
        shard_paths=[pool_dir / name for name in meta["files"]],
        model_dir=model_dir,
        n_docs=meta["n_docs"],
        n_bytes=meta["n_bytes"],
        source_docs=meta["source_docs"],
        copies=meta["copies"],
    )


def _meta_path(pool_dir: Path) -> Path:
    """Beside the pool folder, so the folder holds only Parquet shards."""
    return pool_dir.with_name(pool_dir.name + ".json")


def _read_meta(pool_dir: Path) -> dict | None:
    path = _meta_path(pool_dir)
    if not path.is_file():
        return None
    meta = json.loads(path.read_text())
    if not all((pool_dir / name).is_file() for name in meta.get("files", [])):
        return None
    return meta


def _build_pool(demo_pool: Path, pool_dir: Path, wanted: dict) -> dict:
    """Repeat the demo pool's documents until ``mb`` MB; round-robin them over the shards."""
    source = pq.read_table(demo_pool)
    source = source.select(["id", "text", "source", "domain", "quality"])
    doc_bytes = pc.binary_length(source.column("text").cast(pa.binary())).to_numpy()
    doc_bytes = doc_bytes.astype(np.int64)
    n_src = len(doc_bytes)
    target = int(wanted["mb"] * 1e6)
    full, rest = divmod(target, int(doc_bytes.sum()))
    partial = int(np.searchsorted(np.cumsum(doc_bytes), rest, side="left")) + 1 if rest else 0
    total = full * n_src + min(partial, n_src)
    order = np.arange(total) % n_src
    copy_no = np.arange(total) // n_src
    src_ids = source.column("id").to_pylist()
    table = source.take(pa.array(order))
    ids = [f"{src_ids[i]}~r{c:03d}" for i, c in zip(order.tolist(), copy_no.tolist(), strict=True)]
    table = table.set_column(0, "id", pa.array(ids, pa.string()))
    tmp = pool_dir.with_name(pool_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n_shards = wanted["shards"]
    files = []
    for s in range(n_shards):
        name = f"part-{s:05d}.parquet"
        pq.write_table(table.take(pa.array(np.arange(s, total, n_shards))), tmp / name)
        files.append(name)
    meta = {
        **wanted,
        "files": files,
        "n_docs": total,
        "n_bytes": int(doc_bytes[order].sum()),
        "source_docs": n_src,
        "copies": round(total / n_src, 3),
    }
    _meta_path(pool_dir).unlink(missing_ok=True)
    shutil.rmtree(pool_dir, ignore_errors=True)
    os.replace(tmp, pool_dir)
    _meta_path(pool_dir).write_text(json.dumps(meta, indent=1) + "\n")  # written last: complete
    return meta
