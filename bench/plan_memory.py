"""Peak memory of ``datafilter thresholds`` and ``select`` through the CLI at 10^6 and 10^7 tiny
documents (issue 22: growth under 100 MB, exact counts).

Run from the repository root (see bench/README.md)::

    python bench/plan_memory.py --model MODEL_DIR                # 10^6 and 10^7 documents
    python bench/plan_memory.py --model MODEL_DIR --sizes 1e5 1e6  # a quick look

Each size: a pool of tiny documents (three words each, a ``domain`` column of 10 values, shards
of 10^5 rows) scored once with KenLM (``score --executor process``), then each command in a
fresh process, its process tree sampled (``bench/memory_flat.py``'s sampler: RSS summed over
the tree every 0.1 s, and the command's own ``VmHWM``):

- ``thresholds --selector perplexity_band --set keep=0.5``: the percentile table and the band
  plan (global), and ``--group-by domain`` for the per-group table and plan;
- ``select --executor local``: the plan applied in this process (kept count checked against
  ``round(0.5 * n)`` per group).

Data and runs go under ``--out`` (deleted with ``--clean``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

try:
    from bench.memory_flat import Peak, TreeSampler
except ImportError:  # run as a script: bench/ is on sys.path
    from memory_flat import Peak, TreeSampler

WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far", "away", "in",
         "rain", "sun"]
SHARD_ROWS = 100_000


def make_pool(folder: Path, n: int) -> None:
    """``n`` tiny documents in shards of ``SHARD_ROWS`` rows (written once)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    done = folder / "done"
    if done.is_file():
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    words = np.array(WORDS)
    rng = np.random.default_rng(0)
    for s in range(max(1, n // SHARD_ROWS)):
        k = rng.integers(0, len(words), size=(SHARD_ROWS, 3))
        text = [" ".join(w) for w in words[k]]
        ids = [f"d{s}-{i}" for i in range(SHARD_ROWS)]
        domain = [f"dom{x}" for x in rng.integers(0, 10, SHARD_ROWS)]
        table = pa.table({"id": ids, "text": text, "domain": domain})
        pq.write_table(table, folder / f"part-{s:05d}.parquet")
    done.write_text("")


def measure(argv: list[str]) -> tuple[Peak, dict]:
    peak = Peak(argv[2])
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(proc.pid, peak, 0.1, 10**9)
    sampler.start()
    out, err = proc.communicate()
    sampler.stop()
    peak.seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"FAIL {' '.join(argv)}:\n{err[-3000:]}")
    return peak, json.loads(out) if out.strip() else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="KenLM model folder")
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e6, 1e7])
    parser.add_argument("--out", type=Path, default=Path("bench/out/plan-memory"))
    parser.add_argument("--clean", action="store_true", help="delete the data afterwards")
    args = parser.parse_args(argv)
    cli = [str(Path(sys.executable).with_name("datafilter")), "-q"]
    band = ["--selector", "perplexity_band", "--set", "keep=0.5", "--set", "criterion=medium"]
    print("CLI peak memory of thresholds and select (datafilter bench/plan_memory.py)")
    head = f"{'documents':>10}  {'command':<34}{'seconds':>8}{'tree RSS MB':>12}{'VmHWM MB':>10}"
    print(head + "  check")
    print("-" * (len(head) + 7))
    before: dict[str, float] = {}
    growth = []
    for size in args.sizes:
        n = int(size)
        pool, run = args.out / f"pool-{n}", args.out / f"run-{n}"
        make_pool(pool, n)
        if not (run / "done").is_file():
            shutil.rmtree(run, ignore_errors=True)
            subprocess.run([*cli, "score", "--input", str(pool), "--output", str(run),
                            "--model", str(args.model), "--id-column", "id",
                            "--executor", "process", "--num-actors", "2"], check=True,
                           stdout=subprocess.DEVNULL)
            (run / "done").write_text("")
        commands = {
            "thresholds + band plan": [*cli, "thresholds", "--run", str(run), *band],
            "thresholds + band plan, by domain": [*cli, "thresholds", "--run", str(run),
                                                  "--group-by", "domain", *band],
            "select (local)": [*cli, "select", "--run", str(run), "--output",
                               str(args.out / f"sel-{n}"), "--overwrite", "--executor", "local",
                               *band],
            "select (local), by domain": [*cli, "select", "--run", str(run), "--output",
                                          str(args.out / f"sel-{n}-domain"), "--overwrite",
                                          "--executor", "local", "--group-by", "domain",
                                          *band],
        }
        for name, command in commands.items():
            peak, result = measure(command)
            check = ""
            if name.startswith("select"):
                totals = result.get("totals", {})
                check = f"kept {totals.get('kept')} of {totals.get('read')}"
            rss = max(peak.tree_rss, peak.driver_hwm) / 1e6
            print(f"{n:>10,}  {name:<34}{peak.seconds:>8.1f}{rss:>12.0f}"
                  f"{peak.driver_hwm / 1e6:>10.0f}  {check}", flush=True)
            if name in before:
                growth.append(f"{name}: {rss - before[name]:+.0f} MB")
            before[name] = rss
    print()
    print("Growth from one size to the next (peak RSS of the process tree):")
    for line in growth:
        print(f"  {line}")
    if args.clean:
        shutil.rmtree(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
