"""Thresholds at scale: exact (and approximate) percentiles 0..100 over 10^8 scores.

Run from the repository root (see bench/README.md)::

    python bench/thresholds_bench.py                       # 10^8 rows, 100 shards, 1,000 groups
    python bench/thresholds_bench.py --rows 1e7 --shards 20    # a quick check

The bench writes score-shaped Parquet files once (``OUT/thresholds-<rows>-<shards>/``, reused):
score shards with the columns and types of ``datafilter score``'s output (ppl lognormal, bpb
from it, 0.5 % rejected rows with NaN scores and a reason) and, row-aligned with each, an input
shard with ``id`` and a ``domain`` column of ``--groups`` values (the group column). Score
shard row groups hold ``--row-group-rows`` rows: 65,536 by default; ``--row-group-rows 512`` is
what ``score_stage.py`` writes today (one row group per 512-row batch), several times slower to
read (see bench/README.md).

Each case runs in a fresh child process, through datafilter's own code:
``ScoreStats(ScoreFiles(...), group_by)`` and ``threshold_table(stats, ..., PERCENTILES,
approx)``, what ``datafilter thresholds`` runs (the counts, then percentiles 0..100 of ppl and
bpb per group). Reported per case: wall seconds, the child's peak RSS (``VmHWM``: Python,
pyarrow and DuckDB together) and DuckDB's own peak (``duckdb_memory()`` sampled every 0.1 s from
a second cursor). Exact results are checked against numpy on a sample of groups.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

GEN_FORMAT = 1
CASES = {
    "exact, global": (None, False),
    "exact, per group": ("domain", False),
    "approx, global": (None, True),
    "approx, per group": ("domain", True),
}


def _gen_dir(out: Path, rows: int, shards: int, groups: int, rg: int) -> Path:
    return out / f"thresholds-{rows:g}rows-{shards}shards-{groups}groups-rg{rg}"


def generate(folder: Path, rows: int, shards: int, groups: int, rg: int, seed: int = 0) -> dict:
    """Write (or reuse) the score and input shards; return their description."""
    from datafilter.scorers.columns import SCORE_SCHEMA

    meta_path = folder / "meta.json"
    wanted = {"format": GEN_FORMAT, "rows": rows, "shards": shards, "groups": groups, "rg": rg}
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if {k: meta.get(k) for k in wanted} == wanted:
            return meta
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "scores").mkdir(parents=True)
    (folder / "input").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    names = pa.array([f"g{g:04d}" for g in range(groups)], pa.string())
    t0 = time.perf_counter()
    per = [rows // shards + (1 if i < rows % shards else 0) for i in range(shards)]
    start = 0
    for i, n in enumerate(per):
        doc_id = pc.binary_join_element_wise(
            "d", pa.array(np.arange(start, start + n)).cast(pa.string()), ""
        )
        n_tokens = rng.integers(20, 2000, size=n)
        n_bytes = n_tokens * 4 + rng.integers(0, 4, size=n)
        ppl = rng.lognormal(6.0, 0.8, size=n)
        logprob = -np.log(ppl) * n_tokens
        rejected = rng.random(n) < 0.005
        ppl[rejected] = np.nan
        logprob[rejected] = np.nan
        n_tokens[rejected] = 0
        scores = pa.table(
            {
                "doc_id": doc_id,
                "row": np.arange(n, dtype=np.int64),
                "id_hash": pa.array(rng.integers(0, 2**63, size=n, dtype=np.uint64)),
                "logprob_sum": logprob,
                "n_tokens": n_tokens.astype(np.int64),
                "n_bytes": n_bytes.astype(np.int64),
                "ppl": ppl,
                "bpb": -logprob / (np.log(2) * n_bytes),
                "reject_reason": pa.array(np.where(rejected, "empty_text", None), pa.string()),
            },
            schema=SCORE_SCHEMA,
        )
        domain = names.take(pa.array(rng.integers(0, groups, size=n)))
        name = f"part-{i:05d}.parquet"
        pq.write_table(
            scores, folder / "scores" / name, row_group_size=rg, compression="zstd"
        )  # the score stage's compression
        pq.write_table(
            pa.table({"id": doc_id, "domain": domain}),
            folder / "input" / name,
            compression="zstd",
        )
        start += n
        print(f"# generated shard {i + 1}/{shards}", file=sys.stderr, flush=True)
    meta = {**wanted, "files": [f"part-{i:05d}.parquet" for i in range(shards)]}
    meta["seconds"] = round(time.perf_counter() - t0, 1)
    meta["bytes"] = sum(p.stat().st_size for p in folder.rglob("*.parquet"))
    meta_path.write_text(json.dumps(meta, indent=1))
    return meta


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def run_case(folder: Path, case: str, threads: int | None, memory_limit: str | None) -> dict:
    """In the child: one threshold_table call, timed, with DuckDB's memory sampled."""
    import threading

    from datafilter.aggregate import PERCENTILES, ScoreFiles, ScoreStats, threshold_table

    group_by, approx = CASES[case]
    meta = json.loads((folder / "meta.json").read_text())
    files = ScoreFiles(
        score_files=[str(folder / "scores" / n) for n in meta["files"]],
        input_files=[str(folder / "input" / n) for n in meta["files"]],
    )
    t0 = time.perf_counter()
    stats = ScoreStats(files, group_by, memory_limit=memory_limit)
    if threads:
        stats.con.execute(f"SET threads = {int(threads)}")
    duck_peak = 0
    stop = threading.Event()
    probe = stats.con.cursor()

    def sample() -> None:
        nonlocal duck_peak
        while not stop.wait(0.1):
            used = probe.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchone()
            duck_peak = max(duck_peak, int(used[0] or 0))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    table, summary = threshold_table(stats, "kenlm", PERCENTILES, approx)
    seconds = time.perf_counter() - t0
    stop.set()
    sampler.join()
    settings = dict(
        stats.con.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN "
            "('threads', 'memory_limit', 'preserve_insertion_order')"
        ).fetchall()
    )
    return {
        "case": case,
        "seconds": seconds,
        "peak_rss": _peak_rss(),
        "duckdb_peak": duck_peak,
        "n_docs": summary["n_docs"],
        "groups": len(summary["groups"]),
        "settings": settings,
        "table": table.to_pydict(),
    }


def check_exact(folder: Path, result: dict, n_groups_checked: int = 3) -> str:
    """numpy's percentiles (linear interpolation) of ppl for a few groups, against the table."""
    meta = json.loads((folder / "meta.json").read_text())
    t = result["table"]
    got: dict[str, list[float]] = {}
    for g, m, v in zip(t["group"], t["metric"], t["value"], strict=True):
        if m == "ppl":
            got.setdefault(g, []).append(v)
    groups = sorted(got)[:n_groups_checked]
    values: dict[str, list[np.ndarray]] = {g: [] for g in groups}
    for name in meta["files"]:
        s = pq.read_table(folder / "scores" / name, columns=["ppl", "reject_reason"])
        ppl = s.column("ppl").to_numpy()
        valid = s.column("reject_reason").is_null().to_numpy(zero_copy_only=False)
        if groups == ["__all__"]:
            values["__all__"].append(ppl[valid])
            continue
        dom = pq.read_table(folder / "input" / name, columns=["domain"]).column(0)
        dom = np.asarray(dom.to_pylist(), dtype=object)
        for g in groups:
            values[g].append(ppl[valid & (dom == g)])
    worst = 0.0
    for g in groups:
        want = np.quantile(np.concatenate(values[g]), [i / 100 for i in range(101)])
        rel = np.max(np.abs(np.asarray(got[g]) - want) / np.abs(want))
        worst = max(worst, float(rel))
    if worst > 1e-12:
        raise SystemExit(f"FAIL {result['case']}: percentiles differ from numpy by {worst:.3g}")
    return f"{len(groups)} group(s) checked against numpy: max rel diff {worst:.1e}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=float, default=1e8, help="scored rows (1e8)")
    parser.add_argument("--shards", type=int, default=100, help="shards (100)")
    parser.add_argument("--groups", type=int, default=1000, help="values of the group column")
    parser.add_argument(
        "--row-group-rows", type=int, default=65536, help="rows per score-shard row group (65536)"
    )
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (its default)")
    parser.add_argument("--memory-limit", default=None, help="DuckDB memory_limit (its default)")
    parser.add_argument("--no-check", action="store_true", help="skip the numpy check")
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    rows = int(args.rows)
    folder = _gen_dir(args.out.resolve(), rows, args.shards, args.groups, args.row_group_rows)
    if args.child:
        result = run_case(folder, args.child, args.threads, args.memory_limit)
        sys.stdout.write(json.dumps(result))
        return 0

    import duckdb

    t0 = time.perf_counter()
    meta = generate(folder, rows, args.shards, args.groups, args.row_group_rows)
    gen_s = time.perf_counter() - t0
    print("Thresholds at scale (datafilter bench/thresholds_bench.py)")
    print(
        f"data: {rows:,} rows in {args.shards} score shards + {args.shards} input shards, "
        f"{args.groups} groups, row groups of {args.row_group_rows} rows, "
        f"{meta['bytes'] / 1e9:.2f} GB on disk ({folder}; "
        + (f"generated in {gen_s:.0f} s)" if gen_s > 5 else "reused)")
    )
    print(
        f"duckdb {duckdb.__version__}; {os.cpu_count()} cores; load avg "
        f"{os.getloadavg()[0]:.2f}; threads {args.threads or 'default'}, memory_limit "
        f"{args.memory_limit or 'default'}"
    )
    print()
    head = f"{'case':<22}{'seconds':>9}{'peak RSS GB':>13}{'DuckDB GB':>11}{'groups':>8}  check"
    print(head)
    print("-" * len(head))
    for case in args.cases:
        cmd = [sys.executable, __file__, "--child", case, "--rows", str(rows)]
        cmd += ["--shards", str(args.shards), "--groups", str(args.groups)]
        cmd += ["--row-group-rows", str(args.row_group_rows), "--out", str(args.out)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        if args.memory_limit:
            cmd += ["--memory-limit", args.memory_limit]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{case:<22} FAILED:\n{proc.stderr[-2000:]}")
            return 1
        res = json.loads(proc.stdout)
        check = "-"
        if not args.no_check and not CASES[case][1]:
            check = check_exact(folder, res)
        print(
            f"{case:<22}{res['seconds']:>9.2f}{res['peak_rss'] / 1e9:>13.2f}"
            f"{res['duckdb_peak'] / 1e9:>11.2f}{res['groups']:>8}  {check}"
        )
    print()
    print(f"DuckDB settings in the child: {res['settings']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
