"""The stratified subset of the demo pool that the README's combine figures were measured on.

``--per-stratum`` documents of each stratum (the source for clean text: bbc, subtitles,
gutenberg; the junk kind for synthetic text: noise, shuffled, spam, tokens), chosen by the
sha256 of their id, cut to ``--chars`` characters (``part-0.parquet``), and as many documents of
one more junk kind, repeated lines: the first sentence of a pool BBC document outside the subset
repeated to ``--chars`` characters (``part-1.parquet``). Columns: the pool's and ``stratum``.

    python bench/combine_demo_subset.py --pool DEMO/pool --output SUBSET
"""

from __future__ import annotations

import argparse
import hashlib
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def _key(salt: str, doc_id: str) -> str:
    return hashlib.sha256((salt + doc_id).encode()).hexdigest()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pool", type=Path, required=True)
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--per-stratum", type=int, default=20)
    p.add_argument("--chars", type=int, default=1200)
    args = p.parse_args()
    rows = pq.read_table(args.pool).to_pylist()
    for r in rows:
        r["stratum"] = r["domain"] if r["source"] == "synthetic" else r["source"]
    subset = []
    for stratum in sorted({r["stratum"] for r in rows}):
        mine = sorted((r for r in rows if r["stratum"] == stratum), key=lambda r: _key("", r["id"]))
        subset += [{**r, "text": r["text"][: args.chars]} for r in mine[: args.per_stratum]]
    taken = {r["id"] for r in subset}
    bbc = sorted((r for r in rows if r["source"] == "bbc" and r["id"] not in taken),
                 key=lambda r: _key("rep", r["id"]))[: args.per_stratum]  # fmt: skip
    repeated = []
    for r in bbc:
        first = re.split(r"(?<=[.!?])\s", r["text"].strip().replace("\n", " "))[0][:200]
        text = "\n".join([first] * (args.chars // (len(first) + 1) + 1))[: args.chars]
        repeated.append({**r, "id": r["id"] + "-repeated", "text": text, "source": "synthetic",
                         "domain": "repeated", "quality": "low", "stratum": "repeated"})
    args.output.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(subset)
    pq.write_table(table, args.output / "part-0.parquet")
    pq.write_table(pa.Table.from_pylist(repeated, schema=table.schema),
                   args.output / "part-1.parquet")  # fmt: skip
    print(f"{len(subset)} + {len(repeated)} documents -> {args.output}")


if __name__ == "__main__":
    main()
