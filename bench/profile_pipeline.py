"""Where the KenLM score stage spends its time: one profiled pipeline run on the bench pool.

Uses the pool and model that ``bench/kenlm_throughput.py`` builds (same flags)::

    python bench/profile_pipeline.py --executor local     # pyinstrument, whole run in-process
    python bench/profile_pipeline.py --executor ray       # py-spy on the actor, CPU per process

``--executor local`` profiles the per-shard code with pyinstrument (the text tree goes to
``OUT/prof/local.txt``). ``--executor ray`` attaches ``py-spy record`` to the Ray actor as soon as
it appears (folded stacks in ``OUT/prof/worker-PID.folded``), and, before Ray shuts down, sums the
CPU seconds of every process this run started (driver, Ray daemons, workers). Both print a
summary of the worker's samples by category. Needs ``pip install -r bench/requirements.txt``.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

try:
    from bench._data import prepare
    from bench._memory import descendants
except ImportError:  # run as a script: bench/ is on sys.path
    from _data import prepare
    from _memory import descendants

CLK_TCK = os.sysconf("SC_CLK_TCK")
# py-spy from PATH, else the one installed beside this interpreter (a virtual environment's bin/).
PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))

# (category, substring of a frame, leaf only): walking from the leaf to the root, the first
# frame that matches a category names the sample.
CATEGORIES = [
    ("score_batch self: kenlm Model.score, join", "KenlmScorer.score_batch (", True),
    ("sentencepiece encode", "SentencePieceProcessor.Encode", False),
    ("normalize: build non-printing regex (once)", "_non_printing_re (", False),
    ("normalize", "normalize (datafilter/normalize.py", False),
    ("_units: split lines", "KenlmScorer._units", False),
    ("score_batch other", "KenlmScorer.score_batch (", False),
    ("id_hash", "id_hash (datafilter/score_columns.py", False),
    ("decode/validate text", "_decode_texts", False),
    ("reject reasons", "_reject_reason", False),
    ("parquet write", "write_table", False),
    ("parquet read", "_iter_batches", False),
    ("other in _score_batch", "_score_batch (datafilter/score_stage.py", False),
    ("other in score_shard", "score_shard (datafilter/score_stage.py", False),
    ("scorer setup (model load)", "KenlmScorer.setup", False),
    ("actor constructor", "_ShardActor.__init__", False),
    ("imports", "_find_and_load", False),
    ("ray worker runtime", "ray/", False),
]


def categorize(frames: list[str]) -> str:
    """The category of one stack (root first)."""
    for depth, frame in enumerate(reversed(frames)):
        for name, needle, leaf_only in CATEGORIES:
            if needle in frame and (depth == 0 or not leaf_only):
                return name
    return "other"


def summarize_folded(path: Path, top: int = 12) -> str:
    """Samples per category and the top self-time frames of a py-spy ``--format raw`` file."""
    cats: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        n = int(count)
        total += n
        cats[categorize(frames)] += n
        leaves[frames[-1]] += n
    lines = [f"{path.name}: {total} samples (active threads only)"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in cats.most_common()]
    lines.append("  top self-time frames:")
    lines += [f"  {n / total:6.1%}  {frame[:100]}" for frame, n in leaves.most_common(top)]
    return "\n".join(lines)


def _started_at(pid: int) -> float | None:
    """When a process started, as a time.time() value."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        btime = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime")
        )
    except (OSError, StopIteration, ValueError):
        return None
    return btime + ticks / CLK_TCK


def _proc_info(pid: int) -> tuple[str, float] | None:
    """A short name (title or script) and the CPU seconds of one process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
    words = [w.decode(errors="replace") for w in cmd if w]
    name = words[0] if words else stat.split("(", 1)[1].split(")")[0]
    if name.endswith("python") or name.endswith("python3"):
        script = next((w for w in words[1:] if not w.startswith("-")), "?")
        name = "python " + "/".join(Path(script).parts[-2:])
    return name.split(" --")[0][:60], cpu


class WorkerSpy:
    """Attach ``py-spy record`` to each Ray actor process titled ``ray::_ShardActor`` (the
    stages' actor class in ``datafilter/runtime.py``)."""

    def __init__(self, out_dir: Path, rate: int):
        self.out_dir, self.rate = out_dir, rate
        self.files: list[Path] = []
        self.actors: list[tuple[int, float | None, float]] = []  # pid, process start, titled
        self._procs: list[subprocess.Popen] = []
        self._seen: set[int] = set()
        self.cpu: dict[int, tuple[str, float]] = {}  # last seen, so exited workers count too
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            for pid in descendants(os.getpid()):
                info = _proc_info(pid)
                if info:
                    self.cpu[pid] = info
                if pid in self._seen:
                    continue
                try:
                    title = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if title.startswith(b"ray::_ShardActor"):
                    self._seen.add(pid)
                    self.actors.append((pid, _started_at(pid), time.time()))
                    out = self.out_dir / f"worker-{pid}.folded"
                    self.files.append(out)
                    cmd = [PY_SPY, "record", "--pid", str(pid), "--rate", str(self.rate)]
                    cmd += ["--nonblocking", "--format", "raw", "-o", str(out)]
                    self._procs.append(
                        subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    )
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        for proc in self._procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.terminate()
                proc.wait()


def _timeline(spy: WorkerSpy, run_dir: Path, data, t_call: float) -> None:
    """Seconds after the score() call: actor process start, actor titled, first shard began."""
    from datafilter.io.layout import RunLayout
    from datafilter.io.markers import read_marker

    layout = RunLayout.at(run_dir)
    starts = []
    for p in data.shard_paths:
        marker = layout.marker_path("score", "kenlm", p.name)
        starts.append(marker.stat().st_mtime - read_marker(marker)["stats"]["seconds"])
    print("timeline, seconds after the score() call:")
    for pid, started, titled in spy.actors:
        began = f"{started - t_call:6.2f}" if started is not None else "     ?"
        print(f"  actor {pid}: process started {began}, became _ShardActor {titled - t_call:6.2f}")
    print(f"  first shard began {min(starts) - t_call:6.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executor", choices=["local", "ray"], default="ray")
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--mb", type=float, default=30.0)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--order", type=int, default=5)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args(argv)
    out = args.out.resolve()
    data = prepare(
        out,
        mb=args.mb,
        shards=args.shards,
        order=args.order,
        vocab_size=args.vocab_size,
        seed=args.seed,
        log=lambda m: print(f"# {m}", file=sys.stderr),
    )
    from datafilter import api
    from datafilter.runtime import RuntimeOptions, ensure_ray

    prof_dir = out / "prof"
    prof_dir.mkdir(parents=True, exist_ok=True)
    run_dir = out / "runs" / f"profile-{args.executor}"
    shutil.rmtree(run_dir, ignore_errors=True)
    runtime = RuntimeOptions(executor=args.executor, num_actors=args.actors)

    def score() -> float:
        t0 = time.perf_counter()
        api.score(
            data.pool_dir,
            run_dir,
            options={"model": str(data.model_dir)},
            id_column="id",
            runtime=runtime,
        )
        return time.perf_counter() - t0

    if args.executor == "local":
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001)
        profiler.start()
        wall = score()
        profiler.stop()
        text = profiler.output_text(unicode=False, color=False, show_all=False)
        (prof_dir / "local.txt").write_text(text)
        print(f"local executor: score() {wall:.2f}s, {data.n_bytes / 1e6 / wall:.2f} MB/s")
        print(f"pyinstrument tree -> {prof_dir / 'local.txt'}")
        print(text)
        return 0

    t0 = time.perf_counter()
    ray = ensure_ray(None)
    print(f"ray.init {time.perf_counter() - t0:.2f}s")
    before = {pid: info for pid in descendants(os.getpid()) if (info := _proc_info(pid))}
    driver_cpu0 = time.process_time()
    spy = WorkerSpy(prof_dir, args.rate)
    spy.start()
    t_call = time.time()
    wall = score()
    driver_cpu = time.process_time() - driver_cpu0
    for pid in descendants(os.getpid()):
        if info := _proc_info(pid):
            spy.cpu[pid] = info
    spy.stop()
    cpu: collections.Counter[str] = collections.Counter()
    for pid, (name, sec) in spy.cpu.items():
        cpu[name] += sec - (before[pid][1] if pid in before else 0.0)
    ray.shutdown()
    print(
        f"ray, {args.actors} actor(s): score() {wall:.2f}s, {data.n_bytes / 1e6 / wall:.2f} MB/s "
        "(excluding ray.init)"
    )
    _timeline(spy, run_dir, data, t_call)
    print("CPU seconds during score(), by process (this run's processes; sampled every 0.05 s,")
    print("so a worker's last 0.05 s before it exits may be missed):")
    print(f"  {driver_cpu:7.2f}  driver (this process, all threads)")
    for name, sec in cpu.most_common():
        if sec >= 0.05:
            print(f"  {sec:7.2f}  {name}")
    for path in spy.files:
        if path.exists():
            print(summarize_folded(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
