"""KenLM scoring throughput: datafilter's score stage against bare loops and Data-Juicer.

Run from the repository root (see bench/README.md)::

    python bench/kenlm_throughput.py                 # ~30 MB, 8 shards, Ray with 1 and 2 actors
    python bench/kenlm_throughput.py --skip-ray      # no Ray rows

Rows, all on the same shards and the same model files, in one process (Data-Juicer in a child
process of its own environment): (b) a bare loop with datafilter's normaliser, (c) the same
loop with a straightforward CCNet-style normaliser (bench/ccnet_style.py), (a) the real
``datafilter score`` stage (local executor; Ray with 1 and 2 actors), (d) Data-Juicer's
``perplexity_filter`` (bench/dj_perplexity.py, after ``bash bench/setup_datajuicer.sh``).

All figures and ratios come from the same run. MB means 10^6 bytes of UTF-8 document text
(the original documents, before normalisation). The bench fails (exit 1) if any pipeline's
per-document ``logprob_sum`` differs from the bare loop's by more than 1e-9 relative, or if
the two normalisers disagree on any line.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

try:
    from bench import ccnet_style
    from bench._data import BenchData, prepare
    from bench._memory import ActorMemory
except ImportError:  # run as a script: bench/ is on sys.path
    import ccnet_style
    from _data import BenchData, prepare
    from _memory import ActorMemory

LN10 = math.log(10.0)
REL_TOL = 1e-9
SCORER_ID = "kenlm"
WARM_UP = "caf\u00e9 \u00ab1\u00bb\x01"  # builds the normaliser's unicode tables once
RAY_NICENESS_ENV = "RAY_worker_niceness"  # Ray config override; the name is case-sensitive
BARE = "(b) bare loop"
BARE_LINES = "(b') bare, SP per line"
BARE_2 = "(b) bare loop, 2 procs"
BARE_CCNET = "(c) bare, CCNet-style"
LOCAL = "(a) local executor"
DJ_RUN = "(d) DJ op.run"
DJ_CORE = "(d) DJ compute_stats"


@dataclass
class Result:
    """One measured configuration."""

    name: str
    cores: int
    startup_s: float | None  # what the "excl." figures leave out
    wall_s: float  # excluding start-up
    n_bytes: int
    shard_seconds: list[float] = field(default_factory=list)  # inside score_shard, per shard
    first_start_s: float | None = None  # from the call until the first shard began
    busy_cores: float | None = None  # machine-wide, all processes, during wall_s
    driver_cpu_s: float | None = None  # CPU of this process (all threads) during wall_s
    run_dir: Path | None = None

    @property
    def mbps(self) -> float:
        return self.n_bytes / 1e6 / self.wall_s

    @property
    def wall_incl_s(self) -> float:
        return self.wall_s + (self.startup_s or 0.0)

    @property
    def mbps_incl(self) -> float:
        return self.n_bytes / 1e6 / self.wall_incl_s

    @property
    def shard_mbps_per_core(self) -> float | None:
        total = sum(self.shard_seconds)
        return self.n_bytes / 1e6 / total if total else None

    @property
    def steady_mbps(self) -> float | None:
        """MB/s once running: without the start-up column nor the time to the first shard
        (Ray: actor start-up and model load; local: model load)."""
        if self.first_start_s is None:
            return None
        return self.n_bytes / 1e6 / (self.wall_s - self.first_start_s)

    @property
    def overhead_s(self) -> float | None:
        """Wall time not spent inside score_shard (actor start-up, model load, Ray, tail)."""
        if not self.shard_seconds:
            return None
        return self.wall_s - sum(self.shard_seconds) / self.cores


class CpuMeter:
    """Machine-wide busy and stolen cores (from /proc/stat) between start() and stop()."""

    @staticmethod
    def _read() -> tuple[int, int, int] | None:
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        fields = (fields + [0] * 8)[:8]  # user nice system idle iowait irq softirq steal
        total = sum(fields)
        return total - fields[3] - fields[4] - fields[7], fields[7], total

    def start(self) -> CpuMeter:
        self._t0 = self._read()
        return self

    def stop_all(self) -> tuple[float, float] | None:
        """(busy cores, stolen cores) on average since start()."""
        t1 = self._read()
        if self._t0 is None or t1 is None or t1[2] == self._t0[2]:
            return None
        busy, steal, total = (x1 - x0 for x1, x0 in zip(t1, self._t0, strict=True))
        ncpu = os.cpu_count() or 1
        return busy / total * ncpu, steal / total * ncpu

    def stop(self) -> float | None:
        both = self.stop_all()
        return None if both is None else both[0]


# ----------------------------------------------------------------------------- bare loop


def _models(data: BenchData):
    """The KenLM model, the SentencePiece model and the recipe of the bench's model folder."""
    import kenlm
    import sentencepiece

    from datafilter.kenlm.model import load_recipe

    folder = load_recipe(data.model_dir)  # a version-1 folder's recipe is datafilter-v1
    model = kenlm.Model(str(data.model_dir / folder.binary_file))
    sp = sentencepiece.SentencePieceProcessor(
        model_file=str(data.model_dir / folder.tokenizer_file)
    )
    return model, sp, folder.normalization


def _doc_lines(normalizer: str, recipe) -> Callable[[str], list[str]]:
    """A document's normalised non-empty lines, with datafilter's or the CCNet-style normaliser."""
    if normalizer == "ours":
        from datafilter.kenlm.normalize import Normalizer

        return Normalizer(recipe).lines

    def lines(text: str) -> list[str]:
        out = []
        for raw in text.split("\n"):
            line = ccnet_style.normalize_line(raw, recipe)
            if line:
                out.append(line)
        return out

    return lines


def _ready_scorer(model_dir: str):
    """The KenLM scorer set up as an actor sets it up, its unicode tables built."""
    from datafilter.scorers import make_scorer

    scorer = make_scorer("kenlm", {"model": model_dir})
    scorer.setup()
    scorer.score_batch([WARM_UP])
    return scorer


def bare_loop(
    data: BenchData, batch_rows: int, normalizer: str = "ours", tokenize: str = "words"
) -> tuple[Result, dict[str, np.ndarray]]:
    """One process, one core: pyarrow -> split lines -> normalise -> SentencePiece -> KenLM.

    ``tokenize="words"`` (only with datafilter's normaliser) is the KenLM scorer's own
    ``score_batch``: words' pieces cached, the native line scorer when built. ``"lines"`` is
    the straightforward loop: each line SentencePiece-encoded, its pieces joined and scored by
    kenlm's ``Model.score``.
    """
    t0 = time.perf_counter()
    if tokenize == "words":
        if normalizer != "ours":
            raise ValueError("the word-cached loop is datafilter's: normalizer='ours'")
        scorer = _ready_scorer(str(data.model_dir))
        setup_s = time.perf_counter() - t0

        def doc_scores(texts: list[str]) -> list[float]:
            return scorer.score_batch(texts).logprob_sum.tolist()
    else:
        model, sp, recipe = _models(data)
        doc_lines = _doc_lines(normalizer, recipe)
        doc_lines(WARM_UP)
        setup_s = time.perf_counter() - t0
        score = model.score

        def doc_scores(texts: list[str]) -> list[float]:
            lines: list[str] = []
            bounds = [0]
            for text in texts:
                lines.extend(doc_lines(text))
                bounds.append(len(lines))
            # One thread: SentencePiece would otherwise use every core for a batch.
            pieces = sp.encode(lines, out_type=str, num_threads=1)
            logs = [score(" ".join(p), bos=True, eos=True) for p in pieces]
            sums = []
            for a, b in zip(bounds, bounds[1:], strict=False):
                total = 0.0
                for value in logs[a:b]:
                    total += value
                sums.append(total * LN10)
            return sums

    results: dict[str, np.ndarray] = {}
    meter = CpuMeter().start()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for path in data.shard_paths:
        sums: list[float] = []
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=batch_rows, columns=["text"]):
            sums.extend(doc_scores(batch.column(0).to_pylist()))
        results[path.name] = np.asarray(sums, dtype=np.float64)
    wall = time.perf_counter() - t0
    name = BARE_CCNET if normalizer != "ours" else BARE if tokenize == "words" else BARE_LINES
    result = Result(name, 1, setup_s, wall, data.n_bytes, busy_cores=meter.stop())
    result.driver_cpu_s = time.process_time() - cpu0
    return result, results


def _bare_worker(task: tuple[list[str], str, int]) -> tuple[float, float]:
    """(set-up s, scoring s) of loop (b) over some shards, in a process of its own."""
    paths, model_dir, batch_rows = task
    t0 = time.perf_counter()
    scorer = _ready_scorer(model_dir)
    setup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for path in paths:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=["text"]):
            scorer.score_batch(batch.column(0).to_pylist())
    return setup_s, time.perf_counter() - t0


def bare_parallel(data: BenchData, batch_rows: int, procs: int) -> Result:
    """Loop (b) in ``procs`` processes at once, shards dealt round-robin: what the machine
    gives ``procs`` independent scoring loops (shared caches, memory bandwidth, SMT
    siblings), the floor for ``procs`` actors. Wall = the slowest process's scoring time."""
    from multiprocessing import get_context

    tasks = [([str(p) for p in data.shard_paths[i::procs]], str(data.model_dir), batch_rows)
             for i in range(procs)]  # fmt: skip
    meter = CpuMeter().start()
    with get_context("spawn").Pool(procs) as pool:
        parts = pool.map(_bare_worker, tasks, chunksize=1)
    busy = meter.stop()
    wall = max(score_s for _, score_s in parts)
    setup = max(setup_s for setup_s, _ in parts)
    return Result(BARE_2, procs, setup, wall, data.n_bytes, busy_cores=busy)


def tie_differences(
    words: dict[str, np.ndarray], lines: dict[str, np.ndarray]
) -> tuple[int, int, float]:
    """Documents whose score differs between word-by-word and line-by-line encoding (equal-
    score segmentation ties), all documents, and the largest relative difference."""
    a = np.concatenate([words[k] for k in sorted(words)])
    b = np.concatenate([lines[k] for k in sorted(words)])
    rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-300)
    return int(np.sum(a != b)), len(a), float(rel.max(initial=0.0))


def normaliser_speeds(data: BenchData, max_mb: float = 20.0) -> list[tuple[str, float, int]]:
    """MB/s of each normaliser alone (on up to ``max_mb`` of the pool); fails if they differ."""
    _, _, recipe = _models(data)
    texts: list[str] = []
    n_bytes = 0
    for path in data.shard_paths:
        for text in pq.read_table(path, columns=["text"]).column(0).to_pylist():
            texts.append(text)
            n_bytes += len(text.encode("utf-8"))
            if n_bytes >= max_mb * 1e6:
                break
        if n_bytes >= max_mb * 1e6:
            break
    out, outputs = [], {}
    for name, key in (("datafilter Normalizer.lines", "ours"), ("CCNet-style", "ccnet")):
        doc_lines = _doc_lines(key, recipe)
        doc_lines(WARM_UP)
        t0 = time.process_time()
        outputs[key] = [doc_lines(t) for t in texts]
        out.append((name, n_bytes / 1e6 / (time.process_time() - t0), len(texts)))
    differ = sum(a != b for a, b in zip(outputs["ours"], outputs["ccnet"], strict=True))
    if differ:
        raise SystemExit(f"FAIL normalisers: {differ} documents normalise differently")
    return out


# ----------------------------------------------------------------------------- pipelines


def run_pipeline(name: str, data: BenchData, out: Path, runtime, cores: int) -> Result:
    """``datafilter.api.score`` into a fresh run folder; time it and read the shard markers."""
    from datafilter import api
    from datafilter.io.layout import RunLayout
    from datafilter.io.markers import read_marker

    run_dir = out / "runs" / "".join(c if c.isalnum() else "-" for c in name).strip("-")
    shutil.rmtree(run_dir, ignore_errors=True)
    meter = CpuMeter().start()
    cpu0 = time.process_time()
    t0, t0_epoch = time.perf_counter(), time.time()
    summary = api.score(
        data.pool_dir,
        run_dir,
        scorer="kenlm",
        options={"model": str(data.model_dir)},
        scorer_id=SCORER_ID,
        id_column="id",
        runtime=runtime,
    )
    wall = time.perf_counter() - t0
    driver_cpu = time.process_time() - cpu0
    busy = meter.stop()
    if summary["failed_shards"] or summary["scored"] != data.n_docs:
        raise SystemExit(f"FAIL {name}: the pipeline did not score every document: {summary}")
    layout = RunLayout.at(run_dir)
    # Each completion record is written as its shard ends, in the worker: its mtime minus the
    # shard's own seconds is when that shard began (same clock as time.time() here).
    seconds, starts = [], []
    for p in data.shard_paths:
        marker = layout.marker_path("score", SCORER_ID, p.name)
        sec = read_marker(marker)["stats"]["seconds"]
        seconds.append(sec)
        starts.append(marker.stat().st_mtime - t0_epoch - sec)
    return Result(
        name,
        cores,
        None,
        wall,
        data.n_bytes,
        seconds,
        first_start_s=max(0.0, min(starts)),
        busy_cores=busy,
        driver_cpu_s=driver_cpu,
        run_dir=run_dir,
    )


def check_scores(name: str, data: BenchData, run_dir: Path, bare: dict[str, np.ndarray]) -> int:
    """Every document's logprob_sum against the bare loop; exit loudly on any mismatch."""
    checked = 0
    for path in data.shard_paths:
        scores = pq.read_table(
            run_dir / "scores" / SCORER_ID / path.name, columns=["doc_id", "logprob_sum"]
        )
        ids = pq.read_table(path, columns=["id"]).column("id").to_pylist()
        if scores.column("doc_id").to_pylist() != ids:
            raise SystemExit(f"FAIL {name}: {path.name}: score rows are not aligned with input ids")
        got = scores.column("logprob_sum").to_numpy()
        want = bare[path.name]
        if got.shape != want.shape:
            raise SystemExit(f"FAIL {name}: {path.name}: {got.shape} scores, bare {want.shape}")
        both_nan = np.isnan(got) & np.isnan(want)
        rel = np.abs(got - want) / np.maximum(np.abs(want), 1e-300)
        bad = ~both_nan & ~(rel <= REL_TOL)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise SystemExit(
                f"FAIL {name}: {int(bad.sum())} documents in {path.name} differ from the bare "
                f"loop by more than {REL_TOL:g} relative; first: {ids[i]} "
                f"pipeline={float(got[i])!r} bare={float(want[i])!r}"
            )
        checked += len(got)
    return checked


# ----------------------------------------------------------------------------- reporting


def _versions() -> str:
    names = ["datafilter", "ray", "pyarrow", "kenlm", "sentencepiece", "numpy"]
    parts = [f"python {platform.python_version()}"]
    for dist in names:
        try:
            parts.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{dist} ?")
    return ", ".join(parts)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(results: list[Result], bare: Result) -> None:
    head = (
        f"{'run':<22}{'cores':>6}{'start-up s':>11}{'wall s':>8}{'excl. s':>8}{'MB/s':>7}"
        f"{'MB/s/core':>10}{'in-shard':>9}{'1st shard':>10}{'overhead':>9}{'cpu s':>8}{'busy':>6}"
        f"{'x (b)':>7}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        print(
            f"{r.name:<22}{r.cores:>6}{_fmt(r.startup_s):>11}{r.wall_incl_s:>8.2f}"
            f"{r.wall_s:>8.2f}{r.mbps:>7.2f}{r.mbps / r.cores:>10.2f}"
            f"{_fmt(r.shard_mbps_per_core):>9}{_fmt(r.first_start_s):>10}"
            f"{_fmt(r.overhead_s):>9}{_fmt(r.driver_cpu_s):>8}{_fmt(r.busy_cores, '.1f'):>6}"
            f"{r.mbps / bare.mbps:>7.2f}"
        )


def _ratio(label: str, num: Result | None, den: Result | None, per_core: bool = False) -> None:
    if num is None or den is None:
        print(f"  {label:<58} n/a (not run)")
        return
    value = num.mbps / (num.cores if per_core else 1) / den.mbps
    print(f"  {label:<58} {value:5.2f}")


LEGEND = """\
(b) bare  : the KenLM scorer's score_batch alone: datafilter's normaliser, SentencePiece by
            word (cached), the native line scorer (KenLM ids, no Python object per token).
(b') bare : datafilter's normaliser + SentencePiece per line (pieces as strings, one thread) +
            kenlm Model.score per line; (c) the same with bench/ccnet_style.py.
(a)       : datafilter score: the whole stage (read, validate, score, write, records).
(d)       : Data-Juicer perplexity_filter, num_proc=1 (bench/dj_perplexity.py): op.run on a
            NestedDataset, and its compute_stats_batched called directly on pyarrow batches.
start-up s: bare = model load; ray = ray.init alone (done once, before the first Ray run);
            Data-Juicer = a first op call on 8 documents (imports, model load).
wall s    : including start-up; excl. s: without it. MB/s, MB/s/core and x (b) use excl. s.
in-shard  : MB/s per core inside score_shard (per-shard seconds from the completion records).
1st shard : s from the score() call until the first shard began (Ray: actor start-up).
overhead  : excl. s - sum(shard seconds)/cores: time not spent in score_shard.
cpu s     : CPU s of this process during excl. s (Data-Juicer: its process and its pool
            worker); for Ray the driver only waits, so this is Ray's cost on the driver.
busy      : machine-wide busy cores during excl. s, all processes (a bare loop alone ~ 1.0;
            more means something else was running too)."""


# ----------------------------------------------------------------------------- Data-Juicer


def run_datajuicer(
    data: BenchData, out: Path, venv: Path, mode: str, batch_size: int
) -> tuple[Result, dict]:
    """bench/dj_perplexity.py in Data-Juicer's environment; its figures and per-doc ppl."""
    import subprocess

    result_file = out / f"dj-{mode}.json"
    result_file.unlink(missing_ok=True)
    cmd = [
        str(venv / "bin" / "python"),
        str(Path(__file__).with_name("dj_perplexity.py")),
        "--pool",
        str(data.pool_dir),
        "--model",
        str(data.model_dir),
        "--mode",
        mode,
        "--batch-size",
        str(batch_size),
        "--output",
        str(result_file),
    ]
    meter = CpuMeter().start()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    busy = meter.stop()
    if proc.returncode != 0:
        raise SystemExit(f"FAIL data-juicer ({mode}):\n{proc.stderr[-3000:]}")
    res = json.loads(result_file.read_text())
    if len(res["ppl"]) != data.n_docs:
        raise SystemExit(f"FAIL data-juicer ({mode}): {len(res['ppl'])} of {data.n_docs} scored")
    name = DJ_RUN if mode == "run" else DJ_CORE
    result = Result(name, 1, res["startup_s"], res["seconds"], data.n_bytes, busy_cores=busy)
    result.driver_cpu_s = res.get("cpu_s")
    return result, res


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho (ties broken by position; fine for continuous scores)."""
    ra = np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(np.float64)
    rb = np.argsort(np.argsort(b, kind="stable"), kind="stable").astype(np.float64)
    return float(np.corrcoef(ra, rb)[0, 1])


def our_ppl(data: BenchData, run_dir: Path) -> dict[str, float]:
    """doc id -> ppl from a pipeline run's score shards."""
    out: dict[str, float] = {}
    for path in data.shard_paths:
        t = pq.read_table(run_dir / "scores" / SCORER_ID / path.name, columns=["doc_id", "ppl"])
        out.update(zip(t.column(0).to_pylist(), t.column(1).to_pylist(), strict=True))
    return out


# ----------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=30.0, help="MB of text in the pool (30)")
    parser.add_argument("--shards", type=int, default=8, help="Parquet shards (8)")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2], help="Ray actors (1 2)")
    parser.add_argument("--out", type=Path, default=Path("bench/out"), help="work folder")
    parser.add_argument("--skip-ray", action="store_true", help="no Ray pipeline runs")
    parser.add_argument("--skip-ccnet", action="store_true", help="no (c) CCNet-style loop")
    parser.add_argument(
        "--dj-venv",
        type=Path,
        default=Path("bench/out/venv-dj"),
        help="Data-Juicer's environment (bench/setup_datajuicer.sh); rows skipped if missing",
    )
    parser.add_argument("--dj-batch-size", type=int, default=1000, help="Data-Juicer batch (1000)")
    parser.add_argument("--order", type=int, default=5, help="KenLM n-gram order (5)")
    parser.add_argument("--vocab-size", type=int, default=8000, help="SentencePiece vocab (8000)")
    parser.add_argument("--batch-rows", type=int, default=512, help="rows per batch (512)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per row; keep the fastest (2)")
    parser.add_argument(
        "--ray-worker-niceness",
        type=int,
        default=None,
        help="set RAY_worker_niceness for the local Ray (datafilter's default 0; Ray's 15)",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser


def _ray_name(actors: int) -> str:
    return f"(a) ray, {actors} actor{'s' if actors > 1 else ''}"


def _print_memory(memory: dict[int, list]) -> None:
    mib = 1 << 20
    print(
        "memory per Ray actor, MiB, while all N actors ran (shared/private: pages other processes"
        " map too / only this one; model = its model.bin mapping; peak = largest RSS seen):"
    )
    print(
        f"  {'actors':>6} {'pid':>8} {'RSS':>7} {'PSS':>7} {'shared':>7} {'private':>8}"
        f" {'model RSS':>10} {'model PSS':>10} {'model private':>14} {'peak RSS':>9}"
    )
    for n, samples in memory.items():
        if not samples:
            print(f"  {n:>6}  (no sample with all {n} actors running: the run was too short)")
        for pid, m, peak in samples:
            print(
                f"  {n:>6} {pid:>8} {m.rss / mib:7.1f} {m.pss / mib:7.1f} {m.shared / mib:7.1f}"
                f" {m.private / mib:8.1f} {m.model_rss / mib:10.1f} {m.model_pss / mib:10.1f}"
                f" {m.model_private / mib:14.1f} {peak / mib:9.1f}"
            )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = args.out.resolve()
    say: Callable[[str], None] = lambda m: print(f"# {m}", file=sys.stderr, flush=True)  # noqa: E731

    from datafilter.runtime import RuntimeOptions

    started = time.perf_counter()
    data = prepare(
        out,
        mb=args.mb,
        shards=args.shards,
        order=args.order,
        vocab_size=args.vocab_size,
        seed=args.seed,
        log=say,
    )
    load_before = os.getloadavg()
    whole = CpuMeter().start()
    checked: dict[str, list[int]] = {}
    runs: dict[str, list[Result]] = {}
    dj_venv = args.dj_venv.resolve()
    have_dj = (dj_venv / "bin" / "python").exists()
    if not have_dj:
        say(f"no Data-Juicer environment at {dj_venv}: run bash bench/setup_datajuicer.sh")

    def keep(res: Result) -> None:
        runs.setdefault(res.name, []).append(res)

    def pipeline(name: str, runtime: RuntimeOptions, cores: int) -> Result:
        res = run_pipeline(name, data, out, runtime, cores)
        checked.setdefault(name, []).append(check_scores(name, data, res.run_dir, bare_scores))
        return res

    say("normalisers alone ...")
    norm_speeds = normaliser_speeds(data)
    # Rounds alternate the configurations so that a slow spell of the machine does not fall on
    # one of them only; each row keeps its fastest run. Ray runs come last (its daemons stay).
    bare_scores: dict[str, np.ndarray] = {}
    dj_results: dict[str, dict] = {}
    local_run_dir: Path | None = None
    for r in range(args.repeat):
        say(f"round {r + 1}/{args.repeat}: (b) bare loop ...")
        res, bare_scores = bare_loop(data, args.batch_rows)
        keep(res)
        say(f"round {r + 1}/{args.repeat}: (b') bare loop, SentencePiece per line ...")
        res, line_scores = bare_loop(data, args.batch_rows, tokenize="lines")
        keep(res)
        ties = tie_differences(bare_scores, line_scores)
        if not args.skip_ray and 2 in args.actors:
            say(f"round {r + 1}/{args.repeat}: (b) bare loop in 2 processes at once ...")
            keep(bare_parallel(data, args.batch_rows, 2))
        if not args.skip_ccnet:
            say(f"round {r + 1}/{args.repeat}: (c) bare loop, CCNet-style normaliser ...")
            res, ccnet_scores = bare_loop(data, args.batch_rows, "ccnet", tokenize="lines")
            keep(res)
            for shard, values in ccnet_scores.items():
                if not np.array_equal(values, line_scores[shard]):
                    raise SystemExit(f"FAIL (c): {shard}: scores differ from (b')")
        say(f"round {r + 1}/{args.repeat}: (a) local executor ...")
        res = pipeline(LOCAL, RuntimeOptions(executor="local"), 1)
        local_run_dir = res.run_dir
        keep(res)
        if have_dj:
            for mode in ("run", "core"):
                say(f"round {r + 1}/{args.repeat}: (d) Data-Juicer perplexity_filter ({mode}) ...")
                res, dj_results[mode] = run_datajuicer(data, out, dj_venv, mode, args.dj_batch_size)
                keep(res)

    ray_init_s = ray_cpus = None
    memory: dict[int, list] = {}
    if not args.skip_ray:
        from datafilter.runtime import ensure_ray

        if args.ray_worker_niceness is not None:
            os.environ[RAY_NICENESS_ENV] = str(args.ray_worker_niceness)
        say("ray.init ...")
        t0 = time.perf_counter()
        ray = ensure_ray(None)
        ray_init_s = time.perf_counter() - t0
        ray_cpus = ray.cluster_resources().get("CPU")
        model_file = data.model_dir / "model.bin"
        for r in range(args.repeat):
            for n in args.actors:
                name = _ray_name(n)
                say(f"round {r + 1}/{args.repeat}: {name} ...")
                opts = RuntimeOptions(executor="ray", num_actors=n)
                with ActorMemory(model_file, expected=n) as watch:
                    res = pipeline(name, opts, min(n, len(data.shard_paths)))
                if r == 0:
                    memory[n] = [
                        (pid, m, watch.peak_rss[pid]) for pid, m in sorted(watch.snapshot.items())
                    ]
                res.startup_s = ray_init_s
                keep(res)
        ray.shutdown()
    usage = whole.stop_all()

    best = {name: min(rs, key=lambda x: x.wall_s) for name, rs in runs.items()}
    results = list(best.values())
    bare, local = best[BARE], best[LOCAL]
    ccnet, lines_loop = best.get(BARE_CCNET), best.get(BARE_LINES)
    dj_run, dj_core = best.get(DJ_RUN), best.get(DJ_CORE)
    ray_runs = {n: best[_ray_name(n)] for n in args.actors if _ray_name(n) in best}

    load_after = os.getloadavg()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    niceness = os.environ.get(RAY_NICENESS_ENV, "0 (datafilter's default)")
    print()
    print("KenLM scoring throughput (datafilter bench/kenlm_throughput.py)")
    print(
        f"machine : {_cpu_model()}; nproc {affinity} (os.cpu_count {os.cpu_count()})"
        + (f"; Ray CPUs {ray_cpus:g}; Ray worker niceness {niceness}" if ray_cpus else "")
    )
    print(
        f"load avg: {load_before[0]:.2f} before, {load_after[0]:.2f} after (1 min)"
        + (f"; cpu steal {usage[1]:.2f} cores on average" if usage else "")
    )
    print(f"versions: {_versions()}" + (f", data-juicer {dj_results['run']['version']}"
                                        if "run" in dj_results else ""))  # fmt: skip
    print(
        f"data    : {data.n_docs} docs ({data.source_docs} demo-pool docs x {data.copies:g}), "
        f"{data.n_bytes / 1e6:.2f} MB text, {len(data.shard_paths)} shards; "
        f"{args.order}-gram, vocab {args.vocab_size}; batch_rows {args.batch_rows}; "
        f"best of {args.repeat}"
    )
    print()
    print("normalisers alone (CPU time, same output checked):")
    for name, mbps, docs in norm_speeds:
        print(f"  {name:<30} {mbps:8.2f} MB/s   ({docs} docs)")
    print()
    print_table(results, bare)
    if args.repeat > 1:
        print("all runs, MB/s excl. start-up (the table shows the fastest):")
        for name, rs in runs.items():
            print(f"  {name:<22}" + "  ".join(f"{x.mbps:.2f}" for x in rs))
    print()
    print(LEGEND)
    print(f"word-by-word vs line-by-line encoding: {ties[0]} of {ties[1]} documents score "
          f"differently (equal-score segmentation ties), largest relative difference "
          f"{ties[2]:.1e}")  # fmt: skip
    if "run" in dj_results:
        print(
            f"Data-Juicer op.run: loading the shards into a datasets.Dataset took "
            f"{dj_results['run']['load_s']:.2f} s (left out of its MB/s)."
        )
    print()
    print("ratios (MB/s, excluding start-up):")
    _ratio("(b) bare loop / (c) CCNet-style bare loop", bare, ccnet)
    _ratio("  of which: (b') SP per line / (c) (the normaliser alone)", lines_loop, ccnet)
    _ratio("  and: (b) / (b') (SentencePiece by cached word, native KenLM)", bare, lines_loop)
    _ratio("(a) local executor / (b) bare loop", local, bare)
    _ratio("(a) ray 1 actor / (b) bare loop", ray_runs.get(1), bare)
    _ratio("(a) ray 2 actors, per core / (b) bare loop", ray_runs.get(2), bare, per_core=True)
    _ratio("(a) ray 2 actors, total / (b) bare loop", ray_runs.get(2), bare)
    _ratio("(a) ray 2 actors / (b) bare loop in 2 processes", ray_runs.get(2), best.get(BARE_2))
    _ratio("(b) bare loop in 2 processes / (b) in 1 (machine scaling)", best.get(BARE_2), bare)
    _ratio("(a) ray 1 actor / (a) local executor (Ray's cost)", ray_runs.get(1), local)
    _ratio("(a) local executor / (d) Data-Juicer op.run", local, dj_run)
    _ratio("(a) ray 1 actor / (d) Data-Juicer op.run", ray_runs.get(1), dj_run)
    _ratio("(a) local executor / (d) Data-Juicer compute_stats_batched", local, dj_core)
    if 1 in ray_runs:
        r1 = ray_runs[1]
        label = "(a) ray 1 actor incl. ray.init / (b) bare loop"
        print(f"  {label:<58} {r1.mbps_incl / bare.mbps:5.2f}")
    print("ratios excluding all fixed start-up (ray.init, and until the first shard began):")
    for res in [local, *ray_runs.values()]:
        if res.steady_mbps is not None:
            label = f"{res.name}, per core / (b) bare loop"
            print(f"  {label:<58} {res.steady_mbps / res.cores / bare.mbps:5.2f}")
    two, bare_two = ray_runs.get(2), best.get(BARE_2)
    if two is not None and two.steady_mbps is not None and bare_two is not None:
        label = "(a) ray, 2 actors / (b) bare loop in 2 processes"
        print(f"  {label:<58} {two.steady_mbps / bare_two.mbps:5.2f}")
    if memory:
        print()
        _print_memory(memory)
    if "run" in dj_results and local_run_dir is not None:
        ours = our_ppl(data, local_run_dir)
        dj = dict(zip(dj_results["run"]["ids"], dj_results["run"]["ppl"], strict=True))
        ids = [i for i in ours if i in dj and math.isfinite(ours[i])]
        rho = rank_correlation(
            np.array([ours[i] for i in ids]), np.array([dj[i] for i in ids], dtype=np.float64)
        )
        print()
        print(
            f"scores: Data-Juicer vs datafilter per-document perplexity, Spearman {rho:.3f} over "
            f"{len(ids)} docs (not identical by design: Data-Juicer does not normalise and scores "
            "each document as one KenLM sentence; see bench/README.md)"
        )
    print()
    for name, counts in checked.items():
        print(
            f"correctness: {name}: all {counts[0]} docs' logprob_sum == (b) bare loop "
            f"(rel {REL_TOL:g}), {len(counts)} run(s): OK"
        )
    if ccnet is not None:
        print("correctness: (c) CCNet-style normaliser: identical lines and scores to (b'): OK")
    print(f"total bench time {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
