"""Start-up and scaling of ``datafilter score`` through the CLI, per executor (issue 16).

Run from the repository root::

    python bench/startup.py                 # 130 MB pool, 16 shards, best of 3: ~4-6 minutes
    python bench/startup.py --mb 100 --repeat 2 --skip-ray

Every row is the whole command (``python -m datafilter.cli score ...``) in a child process,
timed from its start to its exit: Python start-up, imports, the executor's start (worker
processes, Ray), the model load, scoring, writing. Rows alternate within each round; the best
of ``--repeat`` rounds is reported, with every round's time. Printed:

1. **Start-up**: a 20-row shard (the pool's first 20 documents), with the default executor
   (``auto``: in-process for an input this small), ``--executor process`` and ``--executor
   ray``. The fixed cost of the Ray path is ray - auto on this shard (Ray's start and stop, the
   actor's start).
2. **Rates** on the pool (``--mb`` MB of text, ``--shards`` shards): the in-process executor
   pinned to one core (``--executor local`` under ``sched_setaffinity``), the default executor
   on every core of the bench's affinity set, and ``--executor ray``; MB/s of text (UTF-8 bytes
   of the text column) over the command's wall time.
3. **Scaling efficiency** = default rate / (cores x one-core in-process rate). Goals: the
   20-row shard under 2 s with the default executor; efficiency >= 0.85. Wall-clock figures
   need an idle machine (the load average is printed): on a busy one a pinned single process
   gets a core to itself more easily than two processes get two. So the bench also runs, as a
   floor measured in the same round, one in-process command per core at once, each on its share
   of the shards (no coordination at all): what the machine gives independent processes now.
   The CPU seconds of each command (its own and its workers') are printed too: in-process /
   default says what the extra processes cost, whatever the load.

The pool and model are ``bench/_data.py``'s (built once under ``--out``, reused).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

try:
    from bench._data import prepare
except ImportError:  # run as a script: bench/ is on sys.path
    from _data import prepare

GOAL_SMALL_SECONDS = 2.0
GOAL_EFFICIENCY = 0.85


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def score_command(inp: Path, out: Path, model: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "datafilter.cli", "score", "--input", str(inp),
            "--output", str(out), "--model", str(model), *extra]  # fmt: skip


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], out: Path, pin: int | None = None) -> tuple[float, float, str, dict]:
    """Run ``command`` once on an empty ``out``: wall seconds, CPU seconds (the command and the
    processes it waited for: its workers), its executor line, its result."""
    shutil.rmtree(out, ignore_errors=True)
    preexec = (lambda: os.sched_setaffinity(0, {pin})) if pin is not None else None
    cpu = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, preexec_fn=preexec)
    wall = time.perf_counter() - start
    cpu = _children_cpu() - cpu
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(command)}\n{proc.stderr}")
    chosen = next((ln for ln in proc.stderr.splitlines() if ": executor " in ln), "?")
    return wall, cpu, chosen.split(": ", 1)[-1], json.loads(proc.stdout)


def split_input(shards: list[Path], parts: int, folder: Path) -> list[Path]:
    """``parts`` folders of symbolic links, the shards dealt round-robin."""
    shutil.rmtree(folder, ignore_errors=True)
    dirs = [folder / f"part{k}" for k in range(parts)]
    for d in dirs:
        d.mkdir(parents=True)
    for i, shard in enumerate(shards):
        (dirs[i % parts] / shard.name).symlink_to(shard)
    return dirs


def timed_together(commands: list[list[str]], outs: list[Path]) -> tuple[float, float]:
    """Run ``commands`` at once (each on an empty output): wall until the last ends, CPU s."""
    for out in outs:
        shutil.rmtree(out, ignore_errors=True)
    cpu = _children_cpu()
    start = time.perf_counter()
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for c in commands]  # fmt: skip
    for proc, command in zip(procs, commands, strict=True):
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"failed ({proc.returncode}): {' '.join(command)}\n{err}")
    return time.perf_counter() - start, _children_cpu() - cpu


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class Row:
    """One bench row: every round's wall time and the executor line it printed."""

    def __init__(self, name: str):
        self.name = name
        self.walls: list[float] = []
        self.cpus: list[float] = []
        self.chosen = ""

    def add(self, wall: float, cpu: float, chosen: str) -> None:
        self.walls.append(wall)
        self.cpus.append(cpu)
        self.chosen = chosen

    @property
    def best(self) -> float:
        return min(self.walls)

    @property
    def cpu(self) -> float:
        """CPU seconds of the best round."""
        return self.cpus[self.walls.index(self.best)]

    def rounds(self) -> str:
        return ", ".join(f"{w:.2f}" for w in self.walls)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("bench/out"))
    p.add_argument("--mb", type=float, default=130.0, help="MB of text in the pool (>= 100)")
    p.add_argument("--shards", type=int, default=16)
    p.add_argument("--repeat", type=int, default=3, help="rounds; the best is reported")
    p.add_argument("--skip-ray", action="store_true")
    args = p.parse_args(argv)

    data = prepare(args.out, mb=args.mb, shards=args.shards, order=5, vocab_size=8000, log=say)
    work = (args.out / "startup").resolve()
    small = work / "small"
    small.mkdir(parents=True, exist_ok=True)
    pq.write_table(pq.read_table(data.shard_paths[0]).slice(0, 20), small / "part-00000.parquet")
    model, pool, run = data.model_dir, data.pool_dir, work / "run"
    cpus = cores()

    before = load()
    small_rows = {name: Row(name) for name in ("auto", "process", "ray")}
    parts = split_input(data.shard_paths, len(cpus), work / "parts")
    floor_name = f"{len(cpus)} independent in-process runs"
    pool_rows = {name: Row(name) for name in ("local, 1 core", floor_name, "auto", "ray")}
    if args.skip_ray:
        del small_rows["ray"], pool_rows["ray"]
    for r in range(args.repeat):
        say(f"round {r + 1}/{args.repeat}: 20-row shard ...")
        for name, row in small_rows.items():
            extra = [] if name == "auto" else ["--executor", name]
            row.add(*timed(score_command(small, run, model, *extra), run)[:3])
        say(f"round {r + 1}/{args.repeat}: {data.n_bytes / 1e6:.0f} MB pool ...")
        for name, row in pool_rows.items():
            if name == floor_name:  # each on its share of the shards, as if nothing linked them
                outs = [work / f"run{k}" for k in range(len(parts))]
                commands = [score_command(part, out, model, "--executor", "local")
                            for part, out in zip(parts, outs, strict=True)]  # fmt: skip
                row.add(*timed_together(commands, outs), "--executor local, each on 1/n")
                continue
            if name == "auto":
                wall, cpu, chosen, result = timed(score_command(pool, run, model), run)
            elif name == "ray":
                command = score_command(pool, run, model, "--executor", "ray")
                wall, cpu, chosen, result = timed(command, run)
            else:
                command = score_command(pool, run, model, "--executor", "local")
                wall, cpu, chosen, result = timed(command, run, pin=cpus[0])
            assert result["rows"] == data.n_docs, result
            row.add(wall, cpu, chosen)
    shutil.rmtree(run, ignore_errors=True)
    for k in range(len(parts)):
        shutil.rmtree(work / f"run{k}", ignore_errors=True)
    after = load()

    print(f"# datafilter score through the CLI; {len(cpus)} cores, best of {args.repeat}")
    print(f"load average before: {before}; after: {after}")
    print("\n## start-up: a 20-row shard, whole command, wall s")
    print("| executor | wall s (best) | rounds | chosen |")
    print("| --- | --- | --- | --- |")
    for name, row in small_rows.items():
        print(f"| {name} | {row.best:.2f} | {row.rounds()} | {row.chosen} |")
    auto = small_rows["auto"].best
    print(f"\ngoal: 20-row shard with the default executor under {GOAL_SMALL_SECONDS:g} s: "
          f"{auto:.2f} s, {'met' if auto < GOAL_SMALL_SECONDS else 'MISSED'}")  # fmt: skip
    pool_cost = small_rows["process"].best - auto
    print(f"fixed cost of a process pool (process - auto): {pool_cost:.2f} s")
    if "ray" in small_rows:
        print(f"fixed cost of the Ray path (ray - auto): {small_rows['ray'].best - auto:.2f} s")

    mb = data.n_bytes / 1e6
    print(f"\n## rates: {mb:.1f} MB of text, {data.n_docs} documents, {args.shards} shards")
    print("| executor | wall s (best) | MB/s | CPU s | rounds | chosen |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, row in pool_rows.items():
        cpu = f"{row.cpu:.1f}" if name != "ray" else "n/a"  # actors are the raylet's children
        print(f"| {name} | {row.best:.2f} | {mb / row.best:.2f} | {cpu} | "
              f"{row.rounds()} | {row.chosen} |")  # fmt: skip
    one = mb / pool_rows["local, 1 core"].best
    default = mb / pool_rows["auto"].best
    efficiency = default / (len(cpus) * one)
    print(f"\nscaling efficiency: default {default:.2f} MB/s / ({len(cpus)} cores x {one:.2f} "
          f"MB/s in-process on one core) = {efficiency:.3f} (goal >= {GOAL_EFFICIENCY}: "
          f"{'met' if efficiency >= GOAL_EFFICIENCY else 'MISSED'})")  # fmt: skip
    floor = mb / pool_rows[floor_name].best
    print(f"the machine now: {len(cpus)} independent in-process runs reach {floor:.2f} MB/s, "
          f"{floor / (len(cpus) * one):.3f} of cores x one core (the most any pool of "
          f"processes could reach here); default / that: {default / floor:.3f}")  # fmt: skip
    cpu_ratio = pool_rows["local, 1 core"].cpu / pool_rows["auto"].cpu
    print(f"CPU seconds, in-process / default: {cpu_ratio:.3f} (what the extra processes cost; "
          "on a busy machine the wall-clock efficiency above reflects the load, this does not)")
    if "ray" in pool_rows:
        ray_rate = mb / pool_rows["ray"].best
        print(f"ray: {ray_rate:.2f} MB/s, {ray_rate / (len(cpus) * one):.3f} of cores x one core")
    median = statistics.median(pool_rows["auto"].walls)
    print(f"default executor, median of rounds: {median:.2f} s ({mb / median:.2f} MB/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
