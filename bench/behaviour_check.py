"""Behaviour check: every artifact of the data path, recorded from one version of the code and
compared with another's (issue 17: the refactor must not change a byte).

    python bench/behaviour_check.py record --code /work/main --out /tmp/before.json
    python bench/behaviour_check.py record --code .          --out /tmp/after.json
    python bench/behaviour_check.py compare /tmp/before.json /tmp/after.json

``record`` drives the version of datafilter found in ``--code`` through its command line only
(``python -m datafilter.cli``, with ``--code`` first on ``PYTHONPATH``), so the same script runs
against the code before and after a refactor. It builds, under ``--work`` (the same folder for
both versions, so that the paths inside plans and manifests agree; emptied first):

- the demo corpus (4 shards) and two KenLM models trained on its reference part (order 3 and 2);
- a larger pool: the demo pool four times over in 12 shards, the second copy keeping the first
  copy's ids (repeated ids: ties broken by score shard and row), with a ``bucket`` group column
  holding nulls;

then, on each corpus: ``score`` with both models (the larger pool on the process executor),
``thresholds`` (global and per group), and a battery of selections: perplexity_band
low/medium/high, global and per group, by ppl and bpb; ccnet_buckets; perplexity_sampling
gaussian and stepwise; harmful_outlier automatic, manual and with a clean model. A version whose
``thresholds`` takes ``--selector`` (the plan as an artifact) is asked for each selection's plan
first. The record holds the sha256 of every score shard, percentile table, output shard and
model file, and the JSON of every manifest, plan, summary and command result, with the work
folder's path replaced by ``<WORK>``.

``compare`` fails on any artifact that differs or is missing; keys that only the second record
has (new fields of a manifest or result) are listed, not failed. Two differences that the same
code shows between two runs of its own are listed apart and do not fail the check: the sha256
of a trained ``tokenizer.model`` (SentencePiece stores the path of its temporary input file;
``tokenizer.vocab`` and ``model.bin`` must match), and floats in the last bits where DuckDB sums
in parallel (``avg``/``stddev_pop`` of harmful_outlier's z-scores: a relative difference under
1e-9, and output shards whose rows are equal with floats to 10 significant digits).
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
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent

# (name, selector, options, group_by, extra select flags); the same on both corpora.
SELECTIONS: list[tuple[str, str, dict[str, Any], str | None, list[str]]] = [
    ("band-medium", "perplexity_band", {"criterion": "medium", "keep": 0.5}, None, []),
    ("band-low", "perplexity_band", {"criterion": "low", "keep": 0.3}, None, ["--with-scores"]),
    ("band-high-by-group", "perplexity_band", {"criterion": "high", "keep": 0.7}, "G", []),
    ("band-low-by-group", "perplexity_band", {"criterion": "low", "keep": 0.25}, "G", []),
    (
        "band-medium-bpb-by-group",
        "perplexity_band",
        {"criterion": "medium", "keep": 0.5, "metric": "bpb"},
        "G",
        ["--report-by", "domain"],
    ),
    ("buckets", "ccnet_buckets", {}, None, ["--report-by", "domain"]),
    ("buckets-by-group", "ccnet_buckets", {"keep": ["head", "middle"]}, "G", []),
    ("sampling-gaussian", "perplexity_sampling", {}, None, []),
    (
        "sampling-stepwise-by-group",
        "perplexity_sampling",
        {"method": "stepwise", "target_keep": 0.3},
        "G",
        ["--seed", "3"],
    ),
    ("sampling-flag", "perplexity_sampling", {"action": "flag", "target_keep": 0.6}, None, []),
    ("harmful-automatic-by-group", "harmful_outlier", {}, "G", []),
    ("harmful-manual", "harmful_outlier", {"threshold": 300.0}, None, []),
    (
        "harmful-clean-model",
        "harmful_outlier",
        {"clean_scorer_id": "kenlm", "threshold": 1.0, "action": "flag"},
        "domain",
        ["--scorer-id", "o2"],
    ),
]


class Cli:
    """``python -m datafilter.cli`` of the code in ``code``."""

    def __init__(self, code: Path, log: Path):
        self.env = {**os.environ, "PYTHONPATH": str(code), "DATAFILTER_PROGRESS": "0"}
        self.code = code
        self.log = log
        self.calls = 0
        self.plan_flags = "--selector" in self.run("thresholds", "--help", json_out=False)

    def run(self, *args: str, json_out: bool = True) -> Any:
        self.calls += 1
        command = [sys.executable, "-m", "datafilter.cli", *args]
        # From the code's folder: ``python -m`` puts the current folder first on the path.
        done = subprocess.run(command, env=self.env, cwd=self.code, capture_output=True, text=True)
        with self.log.open("a") as f:
            f.write(f"$ {' '.join(command[1:])}\n{done.stderr}")
        if done.returncode != 0:
            raise SystemExit(f"failed ({done.returncode}): {' '.join(args)}\n{done.stderr}")
        return json.loads(done.stdout) if json_out else done.stdout


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def normalised(value: Any, work: Path) -> Any:
    """JSON with the work folder's path replaced by ``<WORK>``."""
    text = json.dumps(value, sort_keys=True, default=str)
    return json.loads(text.replace(str(work), "<WORK>"))


def rounded_digest(path: Path) -> str:
    """sha256 of a Parquet file's rows with every float written to 10 significant digits."""
    table = pq.read_table(path)
    columns = []
    for name in table.column_names:
        values = table.column(name).to_pylist()
        if pa.types.is_floating(table.schema.field(name).type):
            values = [None if v is None else f"{v:.10g}" for v in values]
        columns.append([name, values])
    return hashlib.sha256(json.dumps(columns, default=str).encode()).hexdigest()


def files(folder: Path, suffix: str) -> dict[str, str]:
    """sha256 of every ``*suffix`` file under ``folder`` (not under ``_state``), by its path
    relative to ``folder``."""
    return {
        p.relative_to(folder).as_posix(): sha256(p)
        for p in sorted(folder.rglob(f"*{suffix}"))
        if "_state" not in p.relative_to(folder).parts
    }


def big_pool(demo_pool: Path, out: Path, n_shards: int = 12) -> Path:
    """The demo pool four times over (copy 1 repeats copy 0's ids), a ``bucket`` column with
    nulls, cut into ``n_shards`` shards."""
    table = pq.read_table(demo_pool)
    ids = table.column("id").to_pylist()
    copies = []
    for k in range(4):
        new_ids = ids if k in (0, 1) else [f"{i}~r{k}" for i in ids]
        copy = table.set_column(table.schema.get_field_index("id"), "id", pa.array(new_ids))
        copies.append(copy)
    big = pa.concat_tables(copies)
    bucket = [None if i % 7 == 0 else f"b{i % 3}" for i in range(big.num_rows)]
    big = big.append_column("bucket", pa.array(bucket, pa.string()))
    out.mkdir(parents=True)
    size = -(-big.num_rows // n_shards)
    for s in range(n_shards):
        pq.write_table(big.slice(s * size, size), out / f"part-{s:05d}.parquet")
    return out


def record(code: Path, work: Path, out: Path) -> None:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    cli = Cli(code, work / "commands.log")
    start = time.monotonic()
    rec: dict[str, Any] = {"code": str(code), "plan_flags": cli.plan_flags, "corpora": {}}
    demo = cli.run("demo-corpus", "--output", str(work / "corpus"))
    models = {}
    for sid, order in (("kenlm", "3"), ("o2", "2")):
        folder = work / f"model-{sid}"
        cli.run(
            "train-kenlm", "--input", demo["reference"], "--output", str(folder),
            "--order", order, "--vocab-size", "2000", "--memory", "256M",
        )  # fmt: skip
        models[sid] = folder
        rec[f"model-{sid}"] = {
            p.name: sha256(p) for p in sorted(folder.iterdir()) if p.suffix != ".json"
        }
        recipe = json.loads((folder / "recipe.json").read_text())
        rec[f"model-{sid}-recipe"] = normalised(recipe, work)
    corpora = {
        "demo": (Path(demo["pool"]), "domain", []),
        "big": (
            big_pool(Path(demo["pool"]), work / "big-pool"),
            "bucket",
            ["--executor", "process", "--local-below", "0", "--num-actors", "2"],
        ),
    }
    for name, (pool, group, runtime) in corpora.items():
        rec["corpora"][name] = corpus_record(cli, work, name, pool, group, runtime, models)
    rec["seconds"] = round(time.monotonic() - start, 1)
    rec["cli_calls"] = cli.calls
    out.write_text(json.dumps(rec, indent=1, sort_keys=True))
    print(f"recorded {cli.calls} commands in {rec['seconds']} s -> {out}", file=sys.stderr)


def corpus_record(
    cli: Cli,
    work: Path,
    name: str,
    pool: Path,
    group: str,
    runtime: list[str],
    models: dict[str, Path],
) -> dict[str, Any]:
    run = work / f"run-{name}"
    rec: dict[str, Any] = {"input": files(pool, ".parquet"), "results": {}, "selections": {}}
    for sid, model in models.items():
        result = cli.run(
            "score", "--input", str(pool), "--output", str(run), "--model", str(model),
            "--id-column", "id", "--scorer-id", sid, *runtime,
        )  # fmt: skip
        rec["results"][f"score-{sid}"] = normalised(result, work)
        summary = run / "_state" / "score" / sid / "summary.json"
        rec[f"score-summary-{sid}"] = normalised(json.loads(summary.read_text()), work)
    rec["scores"] = files(run / "scores", ".parquet")
    rec["run.json"] = normalised(json.loads((run / "run.json").read_text()), work)
    for group_by in (None, group, "domain"):
        flags = ["--group-by", group_by] if group_by else []
        for sid in models:
            result = cli.run("thresholds", "--run", str(run), "--scorer-id", sid, *flags)
            rec["results"][f"thresholds-{sid}-{group_by}"] = normalised(result, work)
    rec["thresholds"] = files(run / "thresholds", ".parquet")
    rec["thresholds-json"] = {
        p.name: normalised(json.loads(p.read_text()), work)
        for p in sorted((run / "thresholds").glob("*.json"))
    }
    for label, selector, options, group_by, extra in SELECTIONS:
        group_by = group if group_by == "G" else group_by
        sets = [f"--set={k}={json.dumps(v)}" for k, v in options.items()]
        scorer = extra[extra.index("--scorer-id") + 1] if "--scorer-id" in extra else "kenlm"
        flags = ["--group-by", group_by] if group_by else []
        if cli.plan_flags:  # the plan is made by the thresholds stage
            cli.run(
                "thresholds", "--run", str(run), "--scorer-id", scorer, "--selector", selector,
                *sets, *flags,
            )  # fmt: skip
        out = work / f"out-{name}-{label}"
        if "--scorer-id" not in extra:
            extra = [*extra, "--scorer-id", scorer]
        result = cli.run(
            "select", "--run", str(run), "--output", str(out), "--selector", selector,
            *sets, *flags, *extra, *runtime,
        )  # fmt: skip
        manifest = json.loads((out / "manifest.json").read_text())
        outputs = files(out, ".parquet")
        rec["selections"][label] = {
            "result": normalised(result, work),
            "outputs": outputs,
            "outputs_rounded": {name: rounded_digest(out / name) for name in outputs},
            "manifest": normalised(manifest, work),
        }
    return rec


def diff(a: Any, b: Any, where: str, found: dict[str, list[str]]) -> None:
    """Differences of ``b`` from ``a`` into ``found``: "problems" (changed or missing values),
    "added" (keys only ``b`` has), "rounding" (floats within 1e-9) and "tokenizer" (a trained
    tokenizer.model's sha256)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in a:
            if key not in b:
                found["problems"].append(f"{where}.{key}: missing")
            else:
                diff(a[key], b[key], f"{where}.{key}", found)
        found["added"] += [f"{where}.{key}" for key in b if key not in a]
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            diff(x, y, f"{where}[{i}]", found)
    elif a != b:
        line = f"{where}: {json.dumps(a)[:120]} != {json.dumps(b)[:120]}"
        if where.endswith("tokenizer.model"):
            found["tokenizer"].append(line)
        elif isinstance(a, float) and isinstance(b, float) and _close(a, b):
            found["rounding"].append(line)
        else:
            found["problems"].append(line)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1e-300)


def _outputs_within_rounding(a: dict[str, Any], b: dict[str, Any], found) -> None:
    """Output shards whose bytes differ count as rounding when their rows agree to 10
    significant digits (the problem lines about their bytes are moved)."""
    for corpus, entry in a["corpora"].items():
        for label, sel in entry["selections"].items():
            other = b["corpora"][corpus]["selections"].get(label, {})
            for name, digest in sel["outputs"].items():
                if other.get("outputs", {}).get(name, digest) == digest:
                    continue
                where = f"record.corpora.{corpus}.selections.{label}.outputs.{name}"
                same = sel["outputs_rounded"][name] == other["outputs_rounded"].get(name)
                if same:
                    found["problems"] = [p for p in found["problems"] if not p.startswith(where)]
                    found["rounding"].append(f"{where}: bytes differ, rows equal to 10 digits")


def compare(before: Path, after: Path) -> int:
    a, b = json.loads(before.read_text()), json.loads(after.read_text())
    found: dict[str, list[str]] = {"problems": [], "added": [], "rounding": [], "tokenizer": []}
    for key in ("code", "plan_flags", "seconds", "cli_calls"):
        a.pop(key, None), b.pop(key, None)
    for rec in (a, b):
        for sid in ("kenlm", "o2"):
            rec[f"model-{sid}-recipe"]["training"].pop("seconds", None)
    diff(a, b, "record", found)
    _outputs_within_rounding(a, b, found)
    counted = count_artifacts(a)
    print(f"compared: {', '.join(f'{v} {k}' for k, v in counted.items())}")
    if found["added"]:
        shown = sorted({_generic(k) for k in found["added"]})
        print(f"keys only in {after.name} ({len(found['added'])}; allowed): " + ", ".join(shown))
    if found["tokenizer"]:
        print(f"tokenizer.model sha256 differs in {len(found['tokenizer'])} place(s) (allowed: "
              "SentencePiece stores its temporary input path; tokenizer.vocab and model.bin "
              "are compared)")  # fmt: skip
    if found["rounding"]:
        print(f"floats differing in the last bits (allowed: DuckDB's parallel sums): "
              f"{len(found['rounding'])}")  # fmt: skip
        for line in found["rounding"][:5]:
            print(f"  {line}")
    if found["problems"]:
        print(f"DIFFERENT: {len(found['problems'])} value(s):")
        for line in found["problems"][:50]:
            print(f"  {line}")
        return 1
    print("IDENTICAL: every score shard, percentile table, plan value, output shard and count")
    return 0


def _generic(key: str) -> str:
    """A key path with the selection and corpus names folded, for a short listing."""
    parts = key.split(".")
    if len(parts) > 4 and parts[3] == "selections":
        parts[2], parts[4] = "*", "*"
    elif len(parts) > 2 and parts[1] == "corpora":
        parts[2] = "*"
    return ".".join(parts)


def count_artifacts(rec: dict[str, Any]) -> dict[str, int]:
    counts = {"score shards": 0, "percentile tables": 0, "selections": 0, "output shards": 0}
    for corpus in rec["corpora"].values():
        counts["score shards"] += len(corpus["scores"])
        counts["percentile tables"] += len(corpus["thresholds"])
        counts["selections"] += len(corpus["selections"])
        counts["output shards"] += sum(len(s["outputs"]) for s in corpus["selections"].values())
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("record", help="run the battery with the code in --code")
    p.add_argument("--code", type=Path, default=ROOT, help="repository whose datafilter to run")
    p.add_argument("--work", type=Path, default=Path("/tmp/datafilter-behaviour"))
    p.add_argument("--out", type=Path, required=True, help="record to write (JSON)")
    p = sub.add_parser("compare", help="compare two records")
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    if args.command == "record":
        record(args.code.resolve(), args.work.resolve(), args.out)
        return 0
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
