"""Worked example of perplexity-correlation data selection on real text, end to end.

    python bench/perplexity_correlation_example.py [--out demo-run/corr] [--quick]
                                                   [--neural MODEL_DIR]

1. The demo corpus (BBC news by topic, Seinfeld subtitles, Gutenberg literature, and low-quality
   text derived from them; its ``domain`` column gives 11 domains). Its pool is split by id hash:
   half is the corpus to select from, half plays "the web the public models were trained on".
   The clean BBC reference set is split 80/20 into news training text and held-out news.
2. A zoo of KenLM models of different strengths: n-gram orders 2-4 trained on 15%, 40% or 100%
   of the news text ("news-*"), and orders 2 and 4 on half or all of the web half ("web-*", which
   includes subtitles, literature and junk). Optionally a neural model scored by ``torch``
   (``--neural DIR``, e.g. SmolLM2 from ``datafilter convert-gguf --smollm2 --output DIR``;
   slow on CPU).
3. A proxy benchmark, computed with ``datafilter score`` on held-out news sentences that no model
   saw: minimal pairs. ``word_swap``: the sentence against a copy with two adjacent words
   swapped; ``word_replace``: against a copy with one word replaced by a random word of the
   held-out vocabulary. A model is right when it gives the real sentence the higher log-
   probability (ties count half); accuracy over the pairs, error = 1 - accuracy.
   What it is: a cheap, honest measure of how well a model knows English news word order and
   word choice. What it is not: a downstream task. It is aimed at news, so the selection is
   expected to favour news-like domains; with ~13 n-gram models that differ mostly in order
   and data size the estimates are coarse (the paper used 90 LLMs).
4. ``datafilter corr-run`` on ``configs/perplexity_correlation.yaml`` (the CLI): sample 40
   documents per domain, score the sample with every model, bits per byte per (model, domain),
   sign_cdf estimates, linear projection with tau = tokens / budget, selection of 30% of the
   corpus' tokens.
5. A report (printed, and ``OUT/report.md``): the models and their benchmark results, and per
   domain the estimates of all five estimators, tau, weight and what was kept, with the reason.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pyarrow import csv

from datafilter import api
from datafilter.correlation import estimators
from datafilter.demo_corpus import build_demo_corpus
from datafilter.kenlm.train import KenlmTrainingOptions, train_kenlm
from datafilter.runtime import RuntimeOptions
from datafilter.scorers.columns import id_hash

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "perplexity_correlation.yaml"
DEFAULT_OUT = "demo-run/corr"
NEURAL_ID = "neural"
LOCAL = RuntimeOptions(executor="local")
SENTENCE = re.compile(r"(?<=[.!?])\s+")
WORD = re.compile(r"^[A-Za-z]+$")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def quiet(_message: str) -> None:
    pass


def _by_hash(ids: list[str]) -> np.ndarray:
    """A fixed pseudo-random number in [0, 1) per id."""
    return np.array([id_hash(f"corr-example:{i}") / 2.0**64 for i in ids])


def prepare_data(out: Path) -> dict[str, Path]:
    """The corpus to select from, the training text of the zoo and the held-out news."""
    corpus = build_demo_corpus(out / "demo-corpus")
    pool = pq.read_table(corpus.pool_dir)
    reference = pq.read_table(corpus.reference_dir)
    u = _by_hash(pool["id"].to_pylist())
    selectable, web = pool.filter(pa.array(u < 0.5)), pool.filter(pa.array(u >= 0.5))
    size = -(-selectable.num_rows // 4)
    for k in range(4):
        path = out / "corpus" / f"part-{k:05d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(selectable.slice(k * size, size), path)
    v = _by_hash(reference["id"].to_pylist())
    news, heldout = reference.filter(pa.array(v < 0.8)), reference.filter(pa.array(v >= 0.8))
    paths = {"corpus": out / "corpus", "heldout": out / "heldout.parquet"}
    pq.write_table(heldout, paths["heldout"])
    for name, table in (("news", news), ("web", web)):
        order = np.argsort(_by_hash(table["id"].to_pylist()), kind="stable")
        for pct in (15, 40, 50, 100):
            n = max(1, round(table.num_rows * pct / 100))
            path = out / "train" / f"{name}-{pct}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table.take(pa.array(order[:n])).select(["id", "text"]), path)
    log(
        f"data: corpus {selectable.num_rows} docs, web half {web.num_rows}, news training "
        f"{news.num_rows}, held-out news {heldout.num_rows}"
    )
    return paths


def zoo(quick: bool) -> list[tuple[str, int, int]]:
    """(training set, share in %, n-gram order) of every model."""
    if quick:
        return [("news", p, o) for p in (15, 40, 100) for o in (2, 3)] + [
            ("web", p, o) for p in (50, 100) for o in (2, 3)
        ]
    return [("news", p, o) for p in (15, 40, 100) for o in (2, 3, 4)] + [
        ("web", p, o) for p in (50, 100) for o in (2, 4)
    ]


def train_zoo(out: Path, quick: bool) -> dict[str, Path]:
    models = {}
    for data, pct, order in zoo(quick):
        name = f"{data}-{pct}-o{order}"
        folder = out / "models" / name
        options = KenlmTrainingOptions(order=order, vocab_size=1000, memory="256M")
        start = time.perf_counter()
        train_kenlm([out / "train" / f"{data}-{pct}.parquet"], folder, options=options, log=quiet)
        log(f"model {name}: {time.perf_counter() - start:.1f}s")
        models[name] = folder
    return models


def benchmark_pairs(heldout: Path, folder: Path, n_sentences: int) -> pa.Table:
    """Held-out sentences, each with a swapped and a replaced copy (same bytes count or not)."""
    rng = random.Random(0)
    sentences = []
    for text in pq.read_table(heldout)["text"].to_pylist():
        for line in text.splitlines():
            sentences += [s.strip() for s in SENTENCE.split(line) if 8 <= len(s.split()) <= 40]
    rng.shuffle(sentences)
    vocab = sorted({w for s in sentences for w in s.split() if WORD.match(w)})
    rows = {"id": [], "text": [], "pair": [], "variant": []}
    for k, sentence in enumerate(sentences[:n_sentences]):
        words = sentence.split()
        i = rng.randrange(1, len(words) - 2)
        swapped = words[:i] + [words[i + 1], words[i]] + words[i + 2 :]
        j = rng.randrange(1, len(words) - 1)
        replaced = list(words)
        replaced[j] = rng.choice([w for w in rng.sample(vocab, 5) if w != words[j]] or ["zebra"])
        for variant, ws in (("orig", words), ("word_swap", swapped), ("word_replace", replaced)):
            rows["id"].append(f"pair-{k}-{variant}")
            rows["text"].append(" ".join(ws))
            rows["pair"].append(k)
            rows["variant"].append(variant)
    table = pa.table(rows)
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / "pairs.parquet")
    return table


def run_benchmark(out: Path, models: dict[str, dict], n_sentences: int) -> Path:
    """Accuracy of every model on both minimal-pair tasks, written as the benchmark table."""
    pairs = benchmark_pairs(out / "heldout.parquet", out / "bench" / "input", n_sentences)
    results = {}
    for name, spec in models.items():
        api.score(out / "bench" / "input", out / "bench" / "run", scorer=spec["scorer"],
                  options=spec["options"], scorer_id=name, id_column="id",
                  runtime=LOCAL)  # fmt: skip
        scores = pq.read_table(out / "bench" / "run" / "scores" / name / "pairs.parquet")
        logprob = dict(zip(scores["doc_id"].to_pylist(), scores["logprob_sum"].to_pylist(),
                           strict=True))  # fmt: skip
        results[name] = {}
        for task in ("word_swap", "word_replace"):
            wins = []
            for k in sorted(set(pairs["pair"].to_pylist())):
                real, fake = logprob[f"pair-{k}-orig"], logprob[f"pair-{k}-{task}"]
                wins.append(1.0 if real > fake else 0.5 if real == fake else 0.0)
            results[name][task] = float(np.mean(wins))
    path = out / "benchmarks.csv"
    lines = ["model,word_swap,word_replace"] + [
        f"{m},{r['word_swap']:.6f},{r['word_replace']:.6f}" for m, r in results.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    log(f"benchmark: {len(set(pairs['pair'].to_pylist()))} pairs per task -> {path}")
    return path


def write_config(out: Path, quick: bool, neural: str | None) -> Path:
    """The checked-in config with its paths moved under ``out`` (and quick-mode settings)."""
    text = CONFIG.read_text().replace(DEFAULT_OUT, str(out))
    cfg = yaml.safe_load(text)
    if quick:
        cfg["sample"]["per_domain"] = 20
        cfg["corpus_scorer"] = "news-100-o3"
    if neural:
        cfg["models"] = {NEURAL_ID: {"scorer": "torch", "options": {"model": neural}}}
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def report(out: Path, cfg: dict, seconds: dict[str, float]) -> str:
    work = Path(cfg["work_dir"])
    weights = pq.read_table(work / "weights.parquet").to_pylist()
    summary = json.loads((work / "weights.json").read_text())
    bpb = pq.read_table(work / "bpb.parquet")
    manifest = json.loads((Path(cfg["select"]["output"]) / "manifest.json").read_text())
    bench = {r["model"]: r for r in csv.read_csv(out / "benchmarks.csv").to_pylist()}
    models = summary["models"]
    y = np.array([summary["benchmark_error"][m] for m in models])
    domains = bpb["domain"].to_pylist()
    X = np.vstack([np.array(bpb[m].to_pylist()) for m in models])
    all_estimates = {name: estimators.estimate(X, y, name) for name in estimators.ESTIMATORS}
    lines = ["# Perplexity-correlation selection on the demo corpus", ""]
    lines += [f"Timings: {', '.join(f'{k} {v:.0f} s' for k, v in seconds.items())}.", ""]
    lines += ["## Models (benchmark: held-out news minimal pairs)", ""]
    lines += ["| model | word_swap acc | word_replace acc | error y | mean bpb on the sample |"]
    lines += ["| --- | --- | --- | --- | --- |"]
    for k, m in sorted(enumerate(models), key=lambda t: y[t[0]]):
        b = bench[m]
        lines.append(
            f"| {m} | {b['word_swap']:.3f} | {b['word_replace']:.3f} | {y[k]:.3f} | "
            f"{X[k].mean():.3f} |"
        )
    groups = manifest["groups"]
    heading = (
        f"## Domains ({summary['estimator']} + {summary['projection']}, budget "
        f"{summary['budget']} tokens = {summary['keep_ratio']:.0%} of the corpus)"
    )
    lines += ["", heading, ""]
    lines += ["| rank | domain | sign_cdf | spearmanr | sign_sign | tokens | tau | weight | "
              "kept tokens | kept docs |", "| --- " * 10 + "|"]  # fmt: skip
    for r in weights:
        if r["status"] != "estimated":
            continue
        j = domains.index(r["domain"])
        g = groups.get(r["domain"], {})
        lines.append(
            f"| {r['rank']} | {r['domain']} | {r['estimate']:+.3f} | "
            f"{all_estimates['spearmanr'][j]:+.3f} | {all_estimates['sign_sign'][j]:+.3f} | "
            f"{r['amount']} | {r['tau']:.3f} | {r['weight']:.3f} | "
            f"{g.get('kept_tokens', 0)} | {g.get('kept', 0)}/{g.get('read', 0)} |"
        )
    order = {name: [domains[j] for j in np.argsort(-1 * e)] for name, e in
             all_estimates.items()}  # fmt: skip
    lines += ["", "Domain order by estimator (best first):", ""]
    lines += [f"- {name}: {', '.join(o)}" for name, o in order.items()]
    chosen = [r for r in weights if r["selected"]]
    dropped = [r for r in weights if r["status"] == "estimated" and not r["selected"]]
    lines += ["", "## Why", ""]
    for r in chosen:
        j = domains.index(r["domain"])
        best, worst = int(np.argmin(y)), int(np.argmax(y))
        how = "whole" if r["weight"] >= r["tau"] * 0.999999 else "in part"
        lines.append(
            f"- **{r['domain']}** kept ({how},"
            f" weight {r['weight']:.3f} of the budget, cap tau {r['tau']:.3f}): sign_cdf "
            f"{r['estimate']:+.3f}, Spearman {all_estimates['spearmanr'][j]:+.3f} between a "
            f"model's loss here and its benchmark error; the best model ({models[best]}) has "
            f"{X[best, j]:.2f} bpb here, the worst ({models[worst]}) {X[worst, j]:.2f}."
        )
    for r in dropped:
        j = domains.index(r["domain"])
        lines.append(
            f"- {r['domain']} dropped: sign_cdf {r['estimate']:+.3f} (rank {r['rank']}); "
            f"Spearman {all_estimates['spearmanr'][j]:+.3f}."
        )
    t = manifest["totals"]
    lines += ["", f"Selection: read {t['read']}, kept {t['kept']}, dropped {t['dropped']}, "
              f"rejected {t['rejected']} documents."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="work folder (default demo-run/corr)")
    parser.add_argument("--quick", action="store_true", help="10 models, smaller sample (tests)")
    parser.add_argument("--pairs", type=int, default=None, help="benchmark sentences")
    parser.add_argument(
        "--neural", help="add a Hugging Face causal LM folder (e.g. SmolLM2) to the zoo"
    )
    args = parser.parse_args()
    out = Path(args.out)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    prepare_data(out)
    seconds["data"] = time.perf_counter() - start
    start = time.perf_counter()
    models = {name: {"scorer": "kenlm", "options": {"model": str(folder)}}
              for name, folder in train_zoo(out, args.quick).items()}  # fmt: skip
    if args.neural:
        models[NEURAL_ID] = {"scorer": "torch", "options": {"model": args.neural}}
    seconds["training"] = time.perf_counter() - start
    start = time.perf_counter()
    run_benchmark(out, models, args.pairs or (150 if args.quick else 500))
    seconds["benchmark"] = time.perf_counter() - start
    config = write_config(out, args.quick, args.neural)
    start = time.perf_counter()
    command = [sys.executable, "-m", "datafilter.cli", "corr-run", str(config)]
    log("$ datafilter corr-run " + str(config))
    proc = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(proc.returncode)
    seconds["corr-run"] = time.perf_counter() - start
    text = report(out, yaml.safe_load(config.read_text()), seconds)
    (out / "report.md").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
