"""Peak memory of the pipeline on a corpus of S MB and on one ``--factor`` times larger.

Scoring and selection stream shard by shard, so with shards of the same size the peak memory of
a run should not grow with the corpus. This bench checks that::

    python bench/memory_flat.py                     # 20 MB and 200 MB, 1 MB shards, ~4-5 min
    python bench/memory_flat.py --mb 5 --factor 4   # a quick look (~2-3 min, mostly Ray start-up)

Each stage runs as its own ``datafilter`` command (as a user would run it), in a fresh process:
``score`` (Ray with ``--actors`` actors, and the local executor), ``thresholds`` and ``select``
(``perplexity_band``, keep the middle half; on Ray or locally, like the score before it). A
thread samples the command's process tree every ``--interval`` seconds with psutil:

- driver peak: the ``datafilter`` process's own high-water mark (``VmHWM`` in
  ``/proc/PID/status``: exact, kept by the kernel; read at every sample);
- tree peak RSS: the largest sum of RSS over the process and all its descendants (the Ray
  daemons, Ray Data's helper actors, the worker processes) seen in one sample. Pages shared by
  several processes (libraries, Ray's shared-memory object store) count once per process, so
  this overstates what the machine spends; a short spike between two samples can be missed;
- tree peak PSS: the same with PSS (each shared page split between the processes that map
  it). Reading it costs a few ms per process, so with more than two processes (Ray) it is
  sampled every ``--pss-every`` samples only, and can miss a peak that the RSS column shows.

The data (demo corpus, KenLM model, pools) is built by ``bench/_data.py`` under ``--out``, the
pools as ``--mb / --shard-mb`` and ``--factor`` times as many shards of the same size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    from bench._data import BenchData, prepare
except ImportError:  # run as a script: bench/ is on sys.path
    from _data import BenchData, prepare

MIB = 1024 * 1024


@dataclass
class Peak:
    """What one command used at most, and how long it ran."""

    stage: str
    driver_hwm: int = 0  # bytes
    tree_rss: int = 0
    tree_pss: int = 0
    processes: int = 0  # most processes in the tree at once
    samples: int = 0
    seconds: float = 0.0
    result: dict[str, Any] = field(default_factory=dict)  # the command's JSON output


def _vm_hwm(pid: int) -> int:
    """The kernel's high-water mark of a process's resident memory, in bytes (0 if gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class TreeSampler(threading.Thread):
    """Samples the RSS (and every few samples the PSS) of a process and its descendants."""

    def __init__(self, pid: int, peak: Peak, interval: float, pss_every: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.interval, self.pss_every = pid, peak, interval, pss_every
        self._done = threading.Event()

    def stop(self) -> None:
        self._done.set()
        self.join()

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._done.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            # PSS costs a few ms per process: every sample for a lone process, else every few.
            with_pss = len(procs) <= 2 or self.peak.samples % self.pss_every == 0
            rss = pss = 0
            for proc in procs:
                try:
                    if with_pss:
                        info = proc.memory_full_info()
                        pss += info.pss
                    else:
                        info = proc.memory_info()
                    rss += info.rss
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
            p = self.peak
            p.driver_hwm = max(p.driver_hwm, _vm_hwm(self.pid))
            p.tree_rss = max(p.tree_rss, rss)
            p.tree_pss = max(p.tree_pss, pss)
            p.processes = max(p.processes, len(procs))
            p.samples += 1
            self._done.wait(self.interval)


def measure(stage: str, argv: list[str], args: argparse.Namespace, log_file: Path) -> Peak:
    """Run one command, sampling its process tree; fail loudly if the command fails."""
    peak = Peak(stage)
    env = dict(os.environ)
    if args.object_store_bytes:
        env["RAY_DEFAULT_OBJECT_STORE_MAX_MEMORY_BYTES"] = str(args.object_store_bytes)
    start = time.perf_counter()
    with open(log_file, "ab") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=env)
        sampler = TreeSampler(proc.pid, peak, args.interval, args.pss_every)
        sampler.start()
        out, _ = proc.communicate()
        sampler.stop()
    peak.seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"FAIL {stage}: exit {proc.returncode}; see {log_file}\n{' '.join(argv)}")
    peak.result = json.loads(out)
    return peak


def run_pipeline(
    data: BenchData, executor: str, args: argparse.Namespace, work: Path
) -> list[Peak]:
    """score, thresholds, select as three commands on fresh folders; check every row arrived."""
    run_dir, out_dir = work / "run", work / "selected"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cli = [str(Path(sys.executable).with_name("datafilter")), "-q"]
    runtime = ["--executor", executor]
    if executor == "ray":
        runtime += ["--num-actors", str(args.actors)]
    log_file = work / "stderr.log"
    score = measure(
        f"score ({executor})",
        [
            *cli,
            "score",
            "--input",
            str(data.pool_dir),
            "--output",
            str(run_dir),
            "--model",
            str(data.model_dir),
            "--id-column",
            "id",
            "--batch-rows",
            str(args.batch_rows),
            *runtime,
        ],
        args,
        log_file,
    )
    duckdb = ["--memory-limit", args.duckdb_memory_limit] if args.duckdb_memory_limit else []
    plan = ["--selector", "perplexity_band", "--set", "keep=0.5"]
    thresholds = measure(
        "thresholds", [*cli, "thresholds", "--run", str(run_dir), *plan, *duckdb], args, log_file
    )
    select = measure(
        f"select ({executor})",
        [
            *cli,
            "select",
            "--run",
            str(run_dir),
            "--output",
            str(out_dir),
            "--set",
            "keep=0.5",
            "--report-by",
            "domain",
            *runtime,
        ],
        args,
        log_file,
    )
    rows = score.result["rows"]
    read = select.result["totals"]["read"]
    if rows != data.n_docs or read != data.n_docs:
        raise SystemExit(f"FAIL: {data.n_docs} docs in the pool, scored {rows}, selected {read}")
    return [score, thresholds, select]


def _mib(n: int) -> str:
    return f"{n / MIB:.0f}"


def print_table(rows: list[tuple[str, Peak]], labels: tuple[str, str]) -> None:
    head = (
        f"{'corpus':<24}{'stage':<14}{'wall s':>8}{'procs':>6}{'driver MiB':>11}"
        f"{'tree RSS MiB':>13}{'tree PSS MiB':>13}"
    )
    print(head)
    print("-" * len(head))
    for corpus, p in rows:
        print(
            f"{corpus:<24}{p.stage:<14}{p.seconds:>8.1f}{p.processes:>6}{_mib(p.driver_hwm):>11}"
            f"{_mib(p.tree_rss):>13}{_mib(p.tree_pss):>13}"
        )
    print()
    small = [p for c, p in rows if c == labels[0]]
    large = [p for c, p in rows if c == labels[1]]
    print(f"ratio {labels[1]} / {labels[0]} (peaks; 1.00 = flat):")
    print(f"{'stage':<14}{'driver':>8}{'tree RSS':>10}{'tree PSS':>10}{'wall':>8}")
    for a, b in zip(small, large, strict=True):
        print(
            f"{a.stage:<14}{b.driver_hwm / a.driver_hwm:>8.2f}{b.tree_rss / a.tree_rss:>10.2f}"
            f"{b.tree_pss / max(a.tree_pss, 1):>10.2f}{b.seconds / a.seconds:>8.2f}"
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=20.0, help="MB of text, small corpus (20)")
    parser.add_argument("--factor", type=int, default=10, help="the large corpus is x this (10)")
    parser.add_argument("--shard-mb", type=float, default=1.0, help="MB of text per shard (1)")
    parser.add_argument("--actors", type=int, default=2, help="Ray actors for score/select (2)")
    parser.add_argument("--executors", nargs="+", default=["ray", "local"], help="(ray local)")
    parser.add_argument("--batch-rows", type=int, default=512, help="score --batch-rows (512)")
    parser.add_argument(
        "--object-store-bytes",
        type=int,
        default=None,
        help="cap the local Ray's object store (RAY_DEFAULT_OBJECT_STORE_MAX_MEMORY_BYTES)",
    )
    parser.add_argument(
        "--duckdb-memory-limit",
        default=None,
        help="thresholds --memory-limit, e.g. 64MB (default: DuckDB's, 80%% of RAM)",
    )
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between samples")
    parser.add_argument("--pss-every", type=int, default=5, help="PSS every N samples (5)")
    parser.add_argument("--out", type=Path, default=Path("bench/out"), help="work folder")
    parser.add_argument("--order", type=int, default=5, help="KenLM n-gram order (5)")
    parser.add_argument("--vocab-size", type=int, default=8000, help="SentencePiece vocab (8000)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = args.out.resolve()
    started = time.perf_counter()

    def say(message: str) -> None:
        print(f"# {message}", file=sys.stderr, flush=True)

    sizes = [args.mb, args.mb * args.factor]
    datasets = [
        prepare(
            out,
            mb=mb,
            shards=max(1, round(mb / args.shard_mb)),
            order=args.order,
            vocab_size=args.vocab_size,
            seed=args.seed,
            log=say,
        )
        for mb in sizes
    ]
    rows: list[tuple[str, Peak]] = []
    labels = []
    for mb, data in zip(sizes, datasets, strict=True):
        label = f"{mb:g} MB, {len(data.shard_paths)} shards"
        labels.append(label)
        for executor in args.executors:
            say(f"{label}: {executor} pipeline ...")
            work = out / "memory" / f"{mb:g}mb-{executor}"
            for peak in run_pipeline(data, executor, args, work):
                rows.append((label, peak))
                say(
                    f"  {peak.stage}: {peak.seconds:.1f}s driver {_mib(peak.driver_hwm)} MiB, "
                    f"tree {_mib(peak.tree_rss)} MiB RSS / {_mib(peak.tree_pss)} MiB PSS"
                )
    import psutil

    print()
    print("Peak memory, datafilter bench/memory_flat.py")
    print(
        f"machine : {os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.1f} GiB RAM; "
        f"Ray actors {args.actors}; score --batch-rows {args.batch_rows}; "
        f"object store cap {args.object_store_bytes or 'Ray default (30% of RAM)'}; "
        f"DuckDB memory limit {args.duckdb_memory_limit or 'default (80% of RAM)'}"
    )
    for mb, data in zip(sizes, datasets, strict=True):
        print(
            f"data    : {mb:g} MB: {data.n_docs} docs, {data.n_bytes / 1e6:.1f} MB text in "
            f"{len(data.shard_paths)} shards"
        )
    print(f"sampling: every {args.interval}s (PSS every {args.pss_every} samples)")
    print()
    print_table(rows, (labels[0], labels[1]))
    print(f"\ntotal bench time {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
