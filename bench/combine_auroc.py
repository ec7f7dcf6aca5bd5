"""How well each score id of a run (and a combination of them) ranks known junk below clean text.

Reads the run's score shards and, row-aligned, a label column of its input shards; prints per
score id the AUROC of "junk ranks worse" (higher value = worse: ln(ppl) of a scorer, the
combined value of a ``datafilter combine`` id) and the clean share of the best ``--best``
fraction, then the AUROC per junk kind (``--kind-column``). Documents any score rejected are
left out of every row, so all scores are compared on the same documents.

    python bench/combine_auroc.py --run RUN --scores kenlm smol mix \
        --label-column quality --clean clean --kind-column domain
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from scipy.stats import mannwhitneyu

from datafilter.io.shards import discover_shards


def roc_auc_score(junk: np.ndarray, x: np.ndarray) -> float:
    """P(a junk document's value > a clean one's), ties counting half (Mann-Whitney U)."""
    return float(mannwhitneyu(x[junk], x[~junk]).statistic) / (junk.sum() * (~junk).sum())


def load(run: Path, scores: list[str], columns: list[str]) -> dict[str, np.ndarray]:
    """Per score id its value (higher = worse), and the input's label columns, row-aligned."""
    record = json.loads((run / "run.json").read_text())
    parts: dict[str, list] = {k: [] for k in [*scores, *columns, "valid"]}
    for shard in discover_shards(record["input"]):
        inp = pq.read_table(shard.path, columns=columns)
        valid = np.ones(inp.num_rows, dtype=bool)
        for sid in scores:
            t = pq.read_table(run / "scores" / sid / shard.rel, columns=["ppl", "reject_reason"])
            ppl = t["ppl"].to_numpy(zero_copy_only=False)
            # ln(ppl): a scorer's log perplexity, a combined id's combined value (ppl = exp(c))
            with np.errstate(divide="ignore", invalid="ignore"):
                parts[sid].append(np.log(ppl))
            valid &= np.array([r is None for r in t["reject_reason"].to_pylist()])
        for c in columns:
            parts[c].append(np.array(inp[c].to_pylist(), dtype=object))
        parts["valid"].append(valid)
    return {k: np.concatenate(v) for k, v in parts.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--scores", nargs="+", required=True)
    p.add_argument("--label-column", default="quality")
    p.add_argument("--clean", default="clean", help="the label value of clean documents")
    p.add_argument("--kind-column", default=None, help="column naming the kind of each document")
    p.add_argument("--best", type=float, default=0.3)
    p.add_argument("--drop", nargs="*", default=[], help="leave out documents of these kinds")
    args = p.parse_args()
    columns = [args.label_column] + ([args.kind_column] if args.kind_column else [])
    data = load(args.run, args.scores, list(dict.fromkeys(columns)))
    ok = data["valid"]
    if args.drop:
        ok = ok & ~np.isin(data[args.kind_column].astype(str), args.drop)
    junk = data[args.label_column][ok] != args.clean
    n = int(ok.sum())
    print(f"{n} documents ({int((~junk).sum())} clean, {int(junk.sum())} junk; "
          f"{int((~ok).sum())} left out: rejected by a score or dropped)")  # fmt: skip
    print(f"| score | AUROC | clean share of the best {args.best:.0%} |")
    print("|---|---|---|")
    k = int(round(args.best * n))
    for sid in args.scores:
        x = data[sid][ok]
        auroc = roc_auc_score(junk, x)
        best = np.argsort(x, kind="stable")[:k]
        print(f"| {sid} | {auroc:.4f} | {float((~junk[best]).mean()):.2f} |")
    if args.kind_column:
        kinds = data[args.kind_column][ok]
        junk_kinds = sorted({str(v) for v in kinds[junk]})
        print()
        print("| score | " + " | ".join(junk_kinds) + " |")
        print("|---|" + "---|" * len(junk_kinds))
        for sid in args.scores:
            x = data[sid][ok]
            row = []
            for kind in junk_kinds:
                rows = ~junk | (kinds == kind)
                row.append(f"{roc_auc_score(junk[rows], x[rows]):.2f}")
            print(f"| {sid} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
