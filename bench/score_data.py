"""Synthetic score shards for the thresholds benchmarks: 10^7 to 10^9 rows, fast to write.

Under ``OUT/scores-<rows>rows-<shards>shards-<groups>groups-seed<seed>/``: ``scores/`` holds
score shards with the score stage's schema and row groups (``SCORE_SCHEMA``, zstd, 65,536-row
row groups) and ``input/`` the row-aligned input shards with a ``domain`` group column
(dictionary-encoded) of ``groups`` values with Zipf-like sizes (the largest about 50 times the
smallest). Written once and reused when ``meta.json`` matches.

Scores have heavy ties: ppl is lognormal (median e^6 ~ 403, sigma 0.8) rounded to 0.1, and two
clusters of rows share one value exactly (boilerplate-like): 3 % at ppl 235.0 and 5 % at 691.0,
near the 25th and 75th percentiles, where a band plan keeping the middle half cuts (so its cuts
fall inside ties); bpb is derived from ppl and shares its ties. 0.5 % of rows are rejected
(NaN scores and a reason). ``id_hash`` is random and ``row`` the position, as the score stage
writes them; ``doc_id`` is ``<shard>-<row>``.
Input shards hold only the group column (thresholds read nothing else from them).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

FORMAT = 3
ROW_GROUP_ROWS = 65536


def data_dir(out: Path, rows: int, shards: int, groups: int, seed: int) -> Path:
    return out / f"scores-{rows:g}rows-{shards}shards-{groups}groups-seed{seed}"


def generate(out: Path, rows: int, shards: int, groups: int, seed: int = 0,
             workers: int | None = None, log=print) -> dict:
    """Write (or reuse) the shards; return their description (``meta.json``)."""
    folder = data_dir(out, rows, shards, groups, seed)
    meta_path = folder / "meta.json"
    wanted = {"format": FORMAT, "rows": rows, "shards": shards, "groups": groups, "seed": seed}
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if {k: meta.get(k) for k in wanted} == wanted:
            return meta
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "scores").mkdir(parents=True)
    (folder / "input").mkdir(parents=True)
    t0 = time.perf_counter()
    sizes = [rows // shards + (1 if i < rows % shards else 0) for i in range(shards)]
    jobs = [(str(folder), i, n, groups, seed) for i, n in enumerate(sizes)]
    with ProcessPoolExecutor(workers or os.cpu_count() or 1) as pool:
        for done, _ in enumerate(pool.map(_write_shard, jobs), start=1):
            if done % max(1, shards // 20) == 0 or done == shards:
                log(f"# generated {done}/{shards} shards ({time.perf_counter() - t0:.0f} s)")
    meta = {**wanted, "files": [f"part-{i:05d}.parquet" for i in range(shards)]}
    meta["seconds"] = round(time.perf_counter() - t0, 1)
    meta["bytes"] = sum(p.stat().st_size for p in folder.rglob("*.parquet"))
    meta_path.write_text(json.dumps(meta, indent=1))
    return meta


def _write_shard(job: tuple[str, int, int, int, int]) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from datafilter.scorers.columns import SCORE_SCHEMA

    folder, i, n, groups, seed = job
    rng = np.random.default_rng([seed, i])
    ppl = np.round(rng.lognormal(6.0, 0.8, n), 1)
    cluster = rng.random(n)
    ppl[cluster < 0.03] = 235.0
    ppl[(cluster >= 0.03) & (cluster < 0.08)] = 691.0
    ppl = np.maximum(ppl, 1.1)
    n_tokens = rng.integers(1, 9, n) * 64
    n_bytes = n_tokens * 4
    logprob = -np.log(ppl) * n_tokens
    rejected = rng.random(n) < 0.005
    ppl[rejected] = np.nan
    logprob[rejected] = np.nan
    n_tokens[rejected] = 0
    doc_id = pc.binary_join_element_wise(
        f"{i}-", pa.array(np.arange(n)).cast(pa.string()), ""
    )
    scores = pa.table(
        {
            "doc_id": doc_id,
            "row": np.arange(n, dtype=np.int64),
            "id_hash": pa.array(rng.integers(0, 2**64, n, dtype=np.uint64)),
            "logprob_sum": logprob,
            "n_tokens": n_tokens.astype(np.int64),
            "n_bytes": n_bytes.astype(np.int64),
            "ppl": ppl,
            "bpb": -logprob / (np.log(2) * n_bytes),
            "reject_reason": pa.array(np.where(rejected, "empty_text", None), pa.string()),
        },
        schema=SCORE_SCHEMA,
    )
    name = f"part-{i:05d}.parquet"
    pq.write_table(scores, Path(folder) / "scores" / name, row_group_size=ROW_GROUP_ROWS,
                   compression="zstd")
    weights = 1.0 / (np.arange(groups) + 20.0)
    codes = rng.choice(groups, n, p=weights / weights.sum()).astype(np.int32)
    names = pa.array([f"g{g:04d}" for g in range(groups)], pa.string())
    domain = pa.DictionaryArray.from_arrays(pa.array(codes), names)
    pq.write_table(pa.table({"domain": domain}), Path(folder) / "input" / name,
                   row_group_size=ROW_GROUP_ROWS, compression="zstd")


if __name__ == "__main__":
    rows, shards, groups = int(float(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3])
    print(json.dumps({k: v for k, v in generate(Path("bench/out"), rows, shards, groups).items()
                      if k != "files"}))
