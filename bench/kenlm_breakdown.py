"""Where the KenLM loop's time goes, step by step, with cold and with warm word caches.

Run from the repository root after ``kenlm_throughput.py`` has built its data::

    python bench/kenlm_breakdown.py                      # the 30 MB pool, ~1 minute
    python bench/kenlm_breakdown.py --pool bench/out/pool-100mb-16shards-seed0

One process, one core, the KenLM scorer's own objects (``setup()`` as an actor does it). Two
passes over the same documents: the first starts with empty caches (every word new to the
normaliser's and the scorer's caches), the second finds them full. Per pass: ms per MB of
document text in each step, and MB/s overall.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pyarrow.parquet as pq

from datafilter.scorers import make_scorer


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    out = Path(__file__).resolve().parent / "out"
    p.add_argument("--pool", type=Path, default=out / "pool-30mb-8shards-seed0")
    p.add_argument("--model", type=Path, default=out / "model-o5-v8000-seed0")
    p.add_argument("--batch-rows", type=int, default=512)
    args = p.parse_args()
    texts = pq.read_table(args.pool, columns=["text"])["text"].to_pylist()
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    scorer = make_scorer("kenlm", {"model": str(args.model)})
    scorer.setup()
    if not scorer.native:
        raise SystemExit("the native line scorer is not built: datafilter setup-kenlm")
    native = scorer._native
    scorer._normalizer.lines("caf\u00e9 \u00ab1\u00bb\x01")  # unicode tables, built once
    print(f"{len(texts)} documents, {mb:.1f} MB of text ({args.pool.name})")
    print(f"{'pass':<6}{'normalise':>11}{'look up':>9}{'SentencePiece':>15}{'KenLM':>8}"
          f"{'total':>8}{'MB/s':>7}{'new words':>11}")  # fmt: skip
    for name in ("cold", "warm"):
        steps = dict.fromkeys(("normalise", "look up", "SentencePiece", "KenLM"), 0.0)
        new_words = 0
        for start in range(0, len(texts), args.batch_rows):
            batch = texts[start : start + args.batch_rows]
            t0 = time.perf_counter()
            units = [scorer._units(t) for t in batch]
            flat = [line for doc in units for line in doc]
            t1 = time.perf_counter()
            missing = native.prepare(flat)
            t2 = time.perf_counter()
            if missing:
                native.add(missing, scorer._encode(missing))
            t3 = time.perf_counter()
            native.score([len(doc) for doc in units])
            t4 = time.perf_counter()
            for key, seconds in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                steps[key] += seconds
            new_words += len(missing)
        total = sum(steps.values())
        widths = (11, 9, 15, 8)
        cells = "".join(
            f"{1e3 * s / mb:>{w}.1f}" for s, w in zip(steps.values(), widths, strict=True)
        )
        print(f"{name:<6}{cells}{1e3 * total / mb:>8.1f}{mb / total:>7.1f}{new_words:>11,}")
    print("ms per MB of document text; look up = splitting lines into words and finding them in")
    print("the cache; SentencePiece = encoding the new words; KenLM = scoring the lines")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
