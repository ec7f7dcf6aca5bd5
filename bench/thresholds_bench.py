"""Thresholds and band plans at 10^7, 10^8 and 10^9 scores: the product's bounded-memory order
statistics (``datafilter.aggregate.ScoreStats`` over ``datafilter.order_stats``) beside the
method before issue 22 (every value sorted in memory, DuckDB windows).

Run from the repository root (see bench/README.md)::

    python bench/thresholds_bench.py --sizes 1e7 1e8 1e9        # the issue-22 figures
    python bench/thresholds_bench.py --sizes 1e7                  # a quick look (~1 min)
    python bench/thresholds_bench.py --sizes 1e7 1e8 --current-max 1e8 --cases thresholds

Data (``bench/score_data.py``): score shards of 10^6 rows each (score stage schema, 65,536-row
row groups, heavy ties) and row-aligned input shards with a ``domain`` column of ``--groups``
values, written once under ``--out`` and reused (10^9 rows: ~30 GB, ~15-25 minutes on 2
cores). Each (size, case, method) runs in a fresh child process; a thread samples the child's
process tree (RSS summed over the child and its descendants, every 0.1 s, and the child's own
``VmHWM``, exact). Cases:

- ``thresholds``: counts and percentiles 0..100 of ppl and bpb per group, what ``datafilter
  thresholds`` computes; ``global`` (no group column) and ``groups`` (``domain``);
- ``band``: counts and the full sort keys at the two ends of a ``perplexity_band`` plan
  (keep 0.5, criterion medium) per group;
- ``approx``: the thresholds' approximate mode (one pass; the rank error it states is printed).

Methods: ``ScoreStats`` (what ``datafilter thresholds`` runs now: ``threshold_table`` and
``keys_at_ranks`` through the streaming passes) and ``before`` (the method before: numpy sorts of
every value, ``columnar_stats``, for the percentiles; DuckDB's window over every row for the band
keys; DuckDB's ``approx_quantile`` for the approximate mode), the latter only up to
``--current-max`` rows. ``agree``: the new results against the method before's of the same
size, bit for bit (``-0.0`` and ``0.0`` equal); where they differ, the largest difference in
units in the last place.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

try:
    from bench.memory_flat import Peak, TreeSampler
    from bench.score_data import data_dir, generate
except ImportError:  # run as a script: bench/ is on sys.path
    from memory_flat import Peak, TreeSampler
    from score_data import data_dir, generate

CASES = {
    "thresholds global": ("thresholds", None),
    "thresholds groups": ("thresholds", "domain"),
    "band global": ("band", None),
    "band groups": ("band", "domain"),
    "approx global": ("approx", None),
    "approx groups": ("approx", "domain"),
    "buckets global": ("plan:ccnet_buckets", None),
    "buckets groups": ("plan:ccnet_buckets", "domain"),
    "sampling groups": ("plan:perplexity_sampling", "domain"),
    "harmful groups": ("plan:harmful_outlier", "domain"),
    "quotas groups": ("plan:perplexity_correlation", "domain"),
}
PLAN_OPTIONS = {  # what each plan case asks of its selector (others: the defaults)
    "perplexity_sampling": {"target_keep": 0.5, "sample_size": 1000},
}
METHODS = ("ScoreStats", "before")


# ------------------------------------------------------------------------ child side ------------
def _files(folder: Path) -> tuple[list[str], list[str]]:
    meta = json.loads((folder / "meta.json").read_text())
    return (
        [str(folder / "scores" / n) for n in meta["files"]],
        [str(folder / "input" / n) for n in meta["files"]],
    )


def _band_ranks(counts: dict[str, int]) -> dict[str, list[int]]:
    from datafilter.selectors.perplexity_band import band_ranks

    out = {}
    for group, n in counts.items():
        start, stop = band_ranks(n, 0.5, "medium")
        out[group] = sorted({start, stop - 1})
    return out


class _InMemory:
    """The percentile table's input as before issue 22: ``columnar_stats`` sorting every value."""

    def __init__(self, old, group_by: str | None):
        self.old, self.group_by, self.rank_error = old, group_by, {}

    def counts(self) -> dict[str, int]:
        return self.old.group_counts()

    def quantiles_many(self, wanted: dict, approx: bool) -> dict:
        return {m: self.old.quantiles(qs, m) for m, qs in wanted.items()}


def run_child(folder: Path, case: str, method: str, result_path: Path) -> dict:
    """One case by one method, in this (fresh) process; results saved for the agreement."""
    from datafilter.aggregate import PERCENTILES, ScoreFiles, ScoreStats
    from datafilter.stages.thresholds import threshold_table

    kind, group_by = CASES[case]
    scores, inputs = _files(folder)
    t0 = time.perf_counter()
    info: dict = {}
    arrays: dict[str, np.ndarray] = {}
    q: dict[str, dict[str, list[float]]] = {"ppl": {}, "bpb": {}}
    stats = ScoreStats(ScoreFiles(scores, inputs), group_by)
    if kind.startswith("plan:"):
        return _run_plan(folder, kind.removeprefix("plan:"), method, stats, result_path, t0,
                         (scores, inputs, group_by))
    if method == "ScoreStats":  # what `datafilter thresholds` runs: streaming order statistics
        counts = stats.counts()
        if kind == "band":
            keys = stats.keys_at_ranks(_band_ranks(counts), "ppl")
        else:
            table, _ = threshold_table(stats, "kenlm", PERCENTILES, kind == "approx")
        info["passes"] = [
            {"seconds": round(p.seconds, 2), "collected": p.collected_rows,
             "counted": p.counted_ranges, "by_distinct": p.settled_by_distinct}
            for p in stats._order.passes
        ]
        if kind == "approx":
            errors = stats.rank_error
            shares = sorted(errors[k] / max(1, counts[k[1]]) for k in errors)
            worst = max(errors, key=lambda k: errors[k] / max(1, counts[k[1]]))
            info["rank_error"] = {"rows": errors[worst], "group": worst[1],
                                  "share": errors[worst] / counts[worst[1]],
                                  "median_share": shares[len(shares) // 2]}
    else:  # before issue 22: every value sorted in memory (numpy), DuckDB windows and sketches
        stats._order = None
        if kind == "thresholds":
            from datafilter.aggregate import ALL, NULL_GROUP
            from datafilter.columnar_stats import ColumnarScores

            old = ColumnarScores(scores, inputs, group_by, ALL, NULL_GROUP)
            counts = old.group_counts()
            table, _ = threshold_table(_InMemory(old, group_by), "kenlm", PERCENTILES, False)
        else:
            counts = stats.counts()
            if kind == "band":
                keys = stats.keys_at_ranks(_band_ranks(counts), "ppl")
            else:
                table, _ = threshold_table(stats, "kenlm", PERCENTILES, True)
    if kind != "band" and not q["ppl"]:
        t = table.to_pydict()
        for g, m, v in zip(t["group"], t["metric"], t["value"], strict=True):
            q[m].setdefault(g, []).append(v)
    seconds = time.perf_counter() - t0
    groups = sorted(counts)
    arrays["counts"] = np.array([counts[g] for g in groups], dtype=np.int64)
    if kind == "band":
        wanted = _band_ranks(counts)
        flat = [(g, r) for g in groups for r in wanted[g]]
        arrays["values"] = np.array([keys[k][0] for k in flat], dtype=np.float64)
        arrays["ids"] = np.array([keys[k][1] for k in flat], dtype=np.uint64)
        arrays["rows"] = np.array([keys[k][3] for k in flat], dtype=np.int64)
        arrays["files"] = np.array([Path(keys[k][2]).name for k in flat], dtype=str)
    else:
        for m in ("ppl", "bpb"):
            arrays[m] = np.array([q[m][g] for g in groups], dtype=np.float64)
    np.savez(result_path, **arrays)
    digest = hashlib.sha256(b"".join(a.tobytes() for a in arrays.values())).hexdigest()[:12]
    return {"seconds": seconds, "groups": len(groups), "rows": int(sum(counts.values())),
            "digest": digest, **info}


def _run_plan(folder: Path, name: str, method: str, stats, result_path: Path, t0: float,
              files: tuple) -> dict:
    """A selector's plan, as the thresholds stage makes it; ``before``: as before issue 22,
    quantiles by ``columnar_stats`` (every value sorted in memory), every other statistic by
    DuckDB over every row, and the quota fill by the DuckDB window it ran."""
    from datafilter.selectors import make_selector

    options = dict(PLAN_OPTIONS.get(name, {}))
    if name == "perplexity_correlation":
        options.update(weights=str(_weights_file(folder)), unit="tokens")
    selector = make_selector(name, options)
    if method == "before":
        from datafilter.aggregate import ALL, NULL_GROUP
        from datafilter.columnar_stats import ColumnarScores

        stats._order = None
        old = ColumnarScores(*files, ALL, NULL_GROUP)
        stats.quantiles_many = lambda wanted, approx=False: {
            m: old.quantiles(qs, m) for m, qs in wanted.items()
        }
        if name == "perplexity_correlation":
            import datafilter.correlation.per_domain as per_domain

            per_domain.amounts_per_domain = _quota_fill_before
    body = selector.plan(stats)
    seconds = time.perf_counter() - t0
    text = json.dumps(body, sort_keys=True, default=str).encode()
    np.savez(result_path, plan=np.frombuffer(text, dtype=np.uint8))
    counts = stats.counts()
    return {"seconds": seconds, "groups": len(counts), "rows": int(sum(counts.values())),
            "digest": hashlib.sha256(text).hexdigest()[:12]}


def _weights_file(folder: Path) -> Path:
    """Perplexity-correlation weights over the synthetic domains (every tenth domain left out)
    whose budget is half the tokens: quotas cut inside most domains."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folder / "bench-weights.parquet"
    if not path.is_file():
        meta = json.loads((folder / "meta.json").read_text())
        domains = [f"g{g:04d}" for g in range(meta["groups"])]
        rng = np.random.default_rng(0)
        weight = rng.random(len(domains))
        weight[::10] = 0.0
        weight /= weight.sum()
        pq.write_table(pa.table({"domain": domains, "weight": weight}), path)
        budget = int(meta["rows"] * 4.5 * 64 / 2)  # n_tokens: 64 x uniform{1..8}, mean 288
        path.with_suffix(".json").write_text(json.dumps({"unit": "tokens", "budget": budget}))
    return path


def _quota_fill_before(pairs, spec, unit="tokens", quotas=None):
    """The quota fill before issue 22: a DuckDB window over every row of every domain."""
    import pyarrow as pa

    from datafilter.correlation.per_domain import UNIT_COLUMNS, _Session

    shard_map = pa.table({"input_file": [p.input_file for p in pairs],
                          "score_file": [p.score_file for p in pairs]})
    session = _Session(shard_map, sorted({p.input_file for p in pairs}), spec)
    session.params["scores"] = [p.score_file for p in pairs]
    session.db.register("quotas", pa.table({
        "domain": pa.array(list(quotas or {}), pa.string()),
        "quota": pa.array(list((quotas or {}).values()), pa.int64())}))
    amount = UNIT_COLUMNS[unit]
    rows = session.query(
        ", s AS (SELECT d.domain, s.id_hash, s.filename AS score_file, s.row, "
        f"s.{amount} AS amount FROM read_parquet($scores, filename=true) s "
        "JOIN shard_map m ON s.filename = m.score_file "
        "JOIN domains d ON d.input_file = m.input_file AND d.row = s.row "
        "WHERE s.reject_reason IS NULL), "
        "c AS (SELECT s.*, coalesce(q.quota, 0) AS quota, sum(amount) OVER (PARTITION BY "
        "s.domain ORDER BY id_hash, score_file, row ROWS BETWEEN UNBOUNDED PRECEDING AND "
        "CURRENT ROW) AS cum FROM s LEFT JOIN quotas q ON s.domain = q.domain) "
        "SELECT domain, count(*), sum(amount), count(*) FILTER (WHERE cum <= quota), "
        "coalesce(sum(amount) FILTER (WHERE cum <= quota), 0), "
        "arg_max(struct_pack(id_hash := id_hash, shard := score_file, row := row), cum) "
        "FILTER (WHERE cum <= quota) FROM c GROUP BY domain ORDER BY domain"
    )
    out = {}
    for domain, n, total, kept, kept_amount, last in rows:
        entry = {"documents": int(n), "amount": int(total)}
        if quotas is not None:
            entry.update(kept_documents=int(kept), kept_amount=int(kept_amount), last=last)
        out[domain] = entry
    return out


# ------------------------------------------------------------------------ parent side -----------
def compare(new: Path, old: Path) -> str:
    """``identical`` (bit for bit, signed zeros equal) or the largest difference in ulps."""
    a, b = np.load(new), np.load(old)
    if set(a.files) != set(b.files):
        return "different shapes"
    worst, differing, total = 0, 0, 0
    for name in a.files:
        x, y = a[name], b[name]
        if x.shape != y.shape:
            return f"{name}: different shapes"
        if x.dtype == np.float64:
            x, y = x + 0.0, y + 0.0
            same = (x.view(np.uint64) == y.view(np.uint64)) | (np.isnan(x) & np.isnan(y))
            if not same.all():
                ulps = np.abs(x.view(np.int64) - y.view(np.int64))[~same]
                worst = max(worst, int(ulps.max()))
                differing += int((~same).sum())
        elif name == "plan":
            return "identical" if x.tobytes() == y.tobytes() else "plans differ"
        elif not (x == y).all():
            return f"{name} differ"
        total += x.size
    if not differing:
        return "identical"
    return f"{differing}/{total} values differ, by <= {worst} ulp"


def run_case(folder: Path, case: str, method: str, out: Path) -> dict:
    name = f"{folder.name}-{case.replace(' ', '-')}-{method}.npz"
    result_path = out / "thresholds-results" / name
    result_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, __file__, "--child", case, "--method", method,
           "--folder", str(folder), "--result", str(result_path)]
    peak = Peak(case)
    load0 = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(proc.pid, peak, 0.1, 10**9)
    sampler.start()
    stdout, stderr = proc.communicate()
    sampler.stop()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{case} / {method} failed:\n{stderr[-3000:]}")
    res = json.loads(stdout.strip().splitlines()[-1])
    res.update(wall=wall, tree_rss=peak.tree_rss, hwm=peak.driver_hwm, load=(load0,
               os.getloadavg()[0]), result=str(result_path))
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e7, 1e8, 1e9])
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--shard-rows", type=float, default=1e6, help="rows per shard (1e6)")
    parser.add_argument("--cases", nargs="+", default=list(CASES),
                        help=f"cases, or their first word ({', '.join(CASES)})")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--current-max", type=float, default=1e8,
                        help="largest size today's method runs thresholds at (1e8)")
    parser.add_argument("--current-max-band", type=float, default=1e7,
                        help="largest size today's method runs plans at (1e7: band 4.6 GB)")
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    parser.add_argument("--delete-after", type=float, default=None,
                        help="delete the data of sizes >= this once measured")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args.folder, args.child, args.method, args.result)))
        return 0

    cases = [c for c in CASES if c in args.cases or c.split()[0] in args.cases]
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    usage = shutil.disk_usage(out)
    print("Thresholds at scale (datafilter bench/thresholds_bench.py)")
    print(f"{os.cpu_count()} cores; disk free {usage.free / 1e9:.0f} GB of "
          f"{usage.total / 1e9:.0f} GB under {out}")
    print()
    head = (f"{'rows':>6}  {'case':<18}{'method':<12}{'seconds':>8}{'peak RSS GB':>12}"
            f"{'load':>11}  passes / agreement")
    print(head)
    print("-" * len(head))
    previous: dict[tuple[str, str], dict] = {}
    growth_lines = []
    for size in args.sizes:
        rows = int(size)
        shards = max(1, int(rows // args.shard_rows))
        t0 = time.perf_counter()
        meta = generate(out, rows, shards, args.groups,
                        log=lambda m: print(m, file=sys.stderr, flush=True))
        folder = data_dir(out, rows, shards, args.groups, 0)
        if time.perf_counter() - t0 > 5:
            print(f"# data: {rows:,} rows, {shards} shards, {meta['bytes'] / 1e9:.1f} GB, "
                  f"written in {meta['seconds']:.0f} s", flush=True)
        for case in cases:
            results = {}
            for method in args.methods:
                whole_table = case.split()[0] in ("thresholds", "approx")
                limit = args.current_max if whole_table else args.current_max_band
                if method == "before" and rows > limit:
                    continue
                res = results[method] = run_case(folder, case, method, out)
                detail = ""
                if method == "ScoreStats" and res.get("passes"):
                    times = "+".join(f"{p['seconds']:.0f}" for p in res["passes"])
                    detail = f"{len(res['passes'])} passes ({times} s)"
                    print("# passes: " + "; ".join(
                        f"{p['collected']:,} rows collected, {p['counted']:,} ranges counted, "
                        f"{p['by_distinct']:,} by distinct values" for p in res["passes"][1:]),
                        file=sys.stderr, flush=True)
                    if "rank_error" in res:
                        e = res["rank_error"]
                        detail += (f", rank error <= {e['rows']:,} rows ({e['share']:.2%} of "
                                   f"group {e['group']}; median group {e['median_share']:.2%})")
                if method == "before" and "ScoreStats" in results:
                    agree = "approximate" if case.startswith("approx") else compare(
                        Path(results["ScoreStats"]["result"]), Path(res["result"]))
                    detail = f"agree: {agree}"
                peak = max(res["tree_rss"], res["hwm"])
                print(f"{size:>6.0e}  {case:<18}{method:<12}{res['seconds']:>8.1f}"
                      f"{peak / 1e9:>12.2f}{res['load'][0]:>5.1f}/{res['load'][1]:<5.1f}  "
                      f"{detail}", flush=True)
                key = (case, method)
                if key in previous:
                    before = previous[key]
                    before_peak = max(before["tree_rss"], before["hwm"])
                    growth_lines.append(
                        f"{case} / {method}: {before['size']:.0e} -> {size:.0e} rows: time x"
                        f"{res['seconds'] / before['seconds']:.1f}, peak RSS "
                        f"{(peak - before_peak) / 1e6:+.0f} MB"
                    )
                previous[key] = {**res, "size": size}
        if args.delete_after is not None and size >= args.delete_after:
            shutil.rmtree(folder)
            print(f"# deleted {folder}", flush=True)
    print()
    print("Growth from one size to the next:")
    for line in growth_lines:
        print(f"  {line}")
    print()
    print("load: the 1-minute load average at the start/end of the case (2 cores, shared).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
