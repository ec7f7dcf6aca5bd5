"""End to end: ``datafilter run`` on ~1 GB of text against the floor of the same work.

Run from the repository root (see bench/README.md)::

    python bench/e2e_run.py                   # 1000 MB, 32 shards, 2 actors: ~5-6 minutes
    python bench/e2e_run.py --mb 100          # a quick check

The pool is the bench pool of ``kenlm_throughput.py`` (the demo pool's documents repeated to
``--mb`` MB, ``id``/``text``/``source``/``domain``/``quality``), the model the bench's 5-gram.

- ``datafilter run``: the CLI in a child process, on a config the bench writes: score (KenLM,
  ``--actors`` Ray actors), thresholds (global), select (``perplexity_band``, middle half).
  Timed from the command's start to its exit: Python start-up, ``ray.init``, every stage.
  Stage times come from the command's own log lines, stamped as they arrive.
- the floor: the least any tool must do for the same result, in ``--actors`` processes (one per
  core, a ``multiprocessing`` pool; the same process count as the actors): per shard, pyarrow
  reads it (every column), the bare loop scores it (the KenLM scorer's ``score_batch``:
  datafilter's normaliser, word pieces, the native line scorer; loop (b) of
  ``kenlm_throughput.py``), pyarrow writes the scores (id, logprob_sum,
  n_tokens) and the lower-perplexity half of the shard's rows (every column), both with the
  score stage's compression (zstd). No thresholds over the corpus, no manifest, no resume.

Printed: both wall times, MB/s, the ratio run / floor, and where each one's time went.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

try:
    from bench._data import prepare
except ImportError:  # run as a script: bench/ is on sys.path
    from _data import prepare

LN10 = math.log(10.0)
COMPRESSION = "zstd"  # what datafilter writes (datafilter.io.atomic.PARQUET_OPTIONS)

# ----------------------------------------------------------------------------- the floor

_worker: dict = {}


def _floor_init(model_dir: str) -> None:
    from datafilter.scorers import make_scorer

    # The bare scoring loop: the KenLM scorer's score_batch (normalise, word pieces, native
    # line scorer), nothing of the stage around it.
    _worker["scorer"] = make_scorer("kenlm", {"model": model_dir})
    _worker["scorer"].setup()


def _floor_shard(task: tuple[str, str, int]) -> dict:
    """Read one shard, score it with the bare loop, write its scores and its kept half."""
    path, out_dir, batch_rows = task
    t0 = time.perf_counter()
    table = pq.read_table(path)
    t_read = time.perf_counter() - t0
    scorer = _worker["scorer"]
    logprob = np.empty(table.num_rows)
    n_tokens = np.empty(table.num_rows, dtype=np.int64)
    row = 0
    for batch in table.column("text").chunks:
        texts = batch.to_pylist()
        for start in range(0, len(texts), batch_rows):
            scores = scorer.score_batch(texts[start : start + batch_rows])
            logprob[row : row + len(scores.logprob_sum)] = scores.logprob_sum
            n_tokens[row : row + len(scores.n_tokens)] = scores.n_tokens
            row += len(scores.logprob_sum)
    t_score = time.perf_counter() - t0 - t_read
    t1 = time.perf_counter()
    name = Path(path).name
    pq.write_table(
        pa.table({"id": table.column("id"), "logprob_sum": logprob, "n_tokens": n_tokens}),
        Path(out_dir) / "scores" / name,
        compression=COMPRESSION,
    )
    ppl = np.exp(-logprob / np.maximum(n_tokens, 1))
    keep = ppl <= np.median(ppl)
    pq.write_table(
        table.filter(pa.array(keep)), Path(out_dir) / "output" / name, compression=COMPRESSION
    )
    return {"read": t_read, "score": t_score, "write": time.perf_counter() - t1}


def run_floor(shards: list[Path], model_dir: Path, out_dir: Path, procs: int) -> dict:
    shutil.rmtree(out_dir, ignore_errors=True)
    (out_dir / "scores").mkdir(parents=True)
    (out_dir / "output").mkdir(parents=True)
    t0 = time.perf_counter()
    tasks = [(str(p), str(out_dir), 512) for p in shards]
    with get_context("spawn").Pool(procs, _floor_init, (str(model_dir),)) as pool:
        parts = pool.map(_floor_shard, tasks, chunksize=1)
    wall = time.perf_counter() - t0
    return {"wall": wall, **{k: sum(p[k] for p in parts) for k in ("read", "score", "write")}}


# ----------------------------------------------------------------------------- datafilter run


def write_config(path: Path, pool: Path, model: Path, work: Path, actors: int) -> None:
    config = {
        "input": str(pool),
        "run_dir": str(work / "run"),
        "score": {"scorer": "kenlm", "options": {"model": str(model)}, "id_column": "id"},
        "thresholds": {"group_by": [None]},
        "select": {
            "output": str(work / "output"),
            "selector": "perplexity_band",
            "options": {"criterion": "medium", "keep": 0.5},
        },
        "ray": {"executor": "ray", "num_actors": actors},
    }
    path.write_text(json.dumps(config, indent=1))  # JSON is YAML


def run_datafilter(config: Path, work: Path, niceness: int | None = None) -> dict:
    """``datafilter run CONFIG`` in a child process; its log lines stamped as they arrive."""
    shutil.rmtree(work / "run", ignore_errors=True)
    shutil.rmtree(work / "output", ignore_errors=True)
    exe = Path(sys.executable).with_name("datafilter")
    cmd = [str(exe), "run", str(config)] if exe.exists() else None
    if cmd is None:
        cmd = [sys.executable, "-m", "datafilter.cli", "run", str(config)]
    t0 = time.perf_counter()
    env = dict(os.environ)
    if niceness is not None:
        env["RAY_worker_niceness"] = str(niceness)  # Ray config override (datafilter sets 0)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    stamps: list[tuple[float, str]] = []
    assert proc.stderr is not None
    for line in proc.stderr:
        stamps.append((time.perf_counter() - t0, line.rstrip("\n")))
    stdout = proc.stdout.read() if proc.stdout else ""
    code = proc.wait()
    wall = time.perf_counter() - t0
    if code != 0:
        tail = "\n".join(line for _, line in stamps[-20:])
        raise SystemExit(f"FAIL datafilter run exited with {code}:\n{tail}")
    return {"wall": wall, "stamps": stamps, "stdout": stdout}


def stage_times(stamps: list[tuple[float, str]], wall: float) -> dict[str, float]:
    """Seconds per stage from the log: each stage starts at its first line."""
    firsts: dict[str, float] = {}
    for t, line in stamps:
        stage = line.split(":", 1)[0]
        if stage in ("score", "thresholds", "select"):
            firsts.setdefault(stage, t)
    order = sorted(firsts.items(), key=lambda kv: kv[1])
    if not order:
        return {}
    out = {"start-up (python, imports, until the score stage logs)": order[0][1]}
    for (name, start), nxt in zip(order, [*order[1:], ("end", wall)], strict=True):
        out[name] = nxt[1] - start
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=1000.0, help="MB of text (1000)")
    parser.add_argument("--shards", type=int, default=32, help="Parquet shards (32)")
    parser.add_argument("--actors", type=int, default=2, help="Ray actors = floor processes (2)")
    parser.add_argument("--out", type=Path, default=Path("bench/out"), help="work folder")
    parser.add_argument(
        "--ray-worker-niceness",
        type=int,
        default=None,
        help="RAY_worker_niceness for the run's local Ray (datafilter's default 0; Ray's 15)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = args.out.resolve()
    say = lambda m: print(f"# {m}", file=sys.stderr, flush=True)  # noqa: E731
    data = prepare(
        out, mb=args.mb, shards=args.shards, order=5, vocab_size=8000, seed=args.seed, log=say
    )
    work = out / f"e2e-{args.mb:g}mb"
    work.mkdir(parents=True, exist_ok=True)
    config = work / "config.yaml"
    write_config(config, data.pool_dir, data.model_dir, work, args.actors)
    load0 = os.getloadavg()[0]
    say("floor ...")
    floor = run_floor(data.shard_paths, data.model_dir, work / "floor", args.actors)
    say("datafilter run ...")
    run = run_datafilter(config, work, args.ray_worker_niceness)
    manifest = json.loads((work / "output" / "manifest.json").read_text())
    mb = data.n_bytes / 1e6
    print("End to end: datafilter run against the floor (datafilter bench/e2e_run.py)")
    print(
        f"data: {data.n_docs} docs, {mb:.1f} MB of text, {len(data.shard_paths)} shards "
        f"({sum(p.stat().st_size for p in data.shard_paths) / 1e6:.0f} MB Parquet); "
        f"{args.actors} actors / processes; {os.cpu_count()} cores; load avg {load0:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after; Ray worker niceness "
        + (
            "0 (datafilter's default for a local Ray)"
            if args.ray_worker_niceness is None
            else str(args.ray_worker_niceness)
        )
    )
    print()
    print(f"{'':<34}{'wall s':>9}{'MB/s':>8}")
    for name, wall in (
        ("floor (read + bare loop + write)", floor["wall"]),
        ("datafilter run", run["wall"]),
    ):
        print(f"{name:<34}{wall:>9.1f}{mb / wall:>8.2f}")
    print(f"ratio datafilter run / floor (wall): {run['wall'] / floor['wall']:.2f}")
    print()
    print(
        "floor, process-seconds summed over its workers: "
        + ", ".join(f"{k} {floor[k]:.1f}" for k in ("read", "score", "write"))
    )
    print("datafilter run, seconds per stage (from its log lines):")
    for name, sec in stage_times(run["stamps"], run["wall"]).items():
        print(f"  {name:<56}{sec:8.1f}")
    totals = manifest.get("totals", manifest.get("total", {}))
    print(f"selection: {json.dumps(totals)[:200]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
