"""Data-Juicer's ``perplexity_filter`` on the bench pool: the peer row (d) of kenlm_throughput.py.

Runs inside the separate Data-Juicer environment (``bash bench/setup_datajuicer.sh``), not in
datafilter's: ``kenlm_throughput.py`` starts it as a child process and reads the JSON it writes.
It can also be run alone::

    bench/out/venv-dj/bin/python bench/dj_perplexity.py --pool bench/out/pool-30mb-8shards-seed0 \\
        --model bench/out/model-o5-v8000-seed0 --output /tmp/dj.json

Data-Juicer loads its models by name from its model cache (``en.sp.model``, ``en.arpa.bin``
for ``lang="en"``) and downloads them when missing. This points ``DATA_JUICER_MODELS_CACHE`` at
a folder of symbolic links to the datafilter model's ``tokenizer.model`` and ``model.bin``, so
both tools score with the same files and nothing is downloaded.

Two ways of running the op, one process each (``num_proc=1``: MB/s per core):

- ``op.run``: how a user runs it. The shards are loaded into a Hugging Face dataset
  (``datasets.Dataset.from_parquet``, timed apart as ``load s``), wrapped in Data-Juicer's
  ``NestedDataset``, and ``PerplexityFilter(...).run(dataset)`` adds the stats column, computes
  the perplexities in batches (``dataset.map``) and filters (``dataset.filter``). Caching of
  ``datasets`` is off, so nothing is reused between runs. A first run on 8 documents (imports,
  model loading) is timed apart as start-up. With ``num_proc=1``, ``datasets`` (5.x) runs each
  ``map`` in a pool of one worker process; that is included, as Ray's actor start-up is in (a).
- ``compute_stats_batched``: the op's own per-batch method called directly on plain Python
  batches read with pyarrow: the op's scoring without the dataset machinery, its lower bound.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (datasets' pool worker)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _shards(pool: Path) -> list[str]:
    files = sorted(str(p) for p in pool.glob("*.parquet"))
    if not files:
        raise SystemExit(f"no Parquet shards in {pool}")
    return files


def _model_cache(model_dir: Path, folder: Path) -> None:
    """Data-Juicer's English model names, linked to datafilter's model files."""
    recipe = json.loads((model_dir / "recipe.json").read_text())
    for name, target in (
        ("en.sp.model", recipe["tokenizer_file"]),
        ("en.arpa.bin", recipe["binary_file"]),
    ):
        link = folder / name
        link.unlink(missing_ok=True)
        link.symlink_to((model_dir / target).resolve())


def pq_head(path: str, n: int) -> dict[str, list]:
    import pyarrow.parquet as pq

    table = pq.ParquetFile(path).read_row_group(0, columns=["id", "text"]).slice(0, n)
    return table.to_pydict()


def run_op(files: list[str], batch_size: int) -> dict:
    import datasets
    from data_juicer.core.data import NestedDataset
    from data_juicer.ops.filter.perplexity_filter import PerplexityFilter
    from data_juicer.utils.constant import Fields, StatsKeys

    datasets.disable_caching()
    op = PerplexityFilter(lang="en", min_ppl=0, max_ppl=1e30, num_proc=1, batch_size=batch_size)
    # Warm-up on 8 documents: the first run imports what the op needs (torch, to free models at
    # the end) and loads the models; timed as start-up and left out, as ray.init is for (a).
    first = pq_head(files[0], 8)
    t0 = time.perf_counter()
    op.run(NestedDataset(datasets.Dataset.from_dict(first)))
    startup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    dataset = NestedDataset(datasets.Dataset.from_parquet(files, columns=["id", "text"]))
    load_s = time.perf_counter() - t0
    t0, cpu0 = time.perf_counter(), _cpu()
    out = op.run(dataset)
    op_s, cpu_s = time.perf_counter() - t0, _cpu() - cpu0
    stats = list(out[Fields.stats])
    return {
        "startup_s": startup_s,
        "load_s": load_s,
        "seconds": op_s,
        "cpu_s": cpu_s,
        "kept": len(out),
        "ids": list(out["id"]),
        "ppl": [s[StatsKeys.perplexity] for s in stats],
    }


def run_core(files: list[str], batch_size: int) -> dict:
    import pyarrow.parquet as pq
    from data_juicer.ops.filter.perplexity_filter import PerplexityFilter
    from data_juicer.utils.constant import Fields, StatsKeys

    op = PerplexityFilter(lang="en", min_ppl=0, max_ppl=1e30, num_proc=1, batch_size=batch_size)
    t0 = time.perf_counter()
    op.compute_stats_batched({op.text_key: ["warm up"], Fields.stats: [{}]})  # loads the models
    startup_s = time.perf_counter() - t0
    ids: list[str] = []
    ppl: list[float] = []
    t0, cpu0 = time.perf_counter(), _cpu()
    for path in files:
        batches = pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=["id", "text"])
        for batch in batches:
            texts = batch.column(1).to_pylist()
            samples = {op.text_key: texts, Fields.stats: [{} for _ in texts]}
            samples = op.compute_stats_batched(samples)
            keep = list(op.process_batched(samples))
            ids.extend(i for i, k in zip(batch.column(0).to_pylist(), keep, strict=True) if k)
            ppl.extend(s[StatsKeys.perplexity] for s in samples[Fields.stats])
    seconds, cpu_s = time.perf_counter() - t0, _cpu() - cpu0
    return {"startup_s": startup_s, "load_s": 0.0, "seconds": seconds, "cpu_s": cpu_s,
            "kept": len(ids), "ids": ids, "ppl": ppl}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", type=Path, required=True, help="folder of Parquet shards")
    parser.add_argument("--model", type=Path, required=True, help="datafilter KenLM model folder")
    parser.add_argument("--mode", choices=["run", "core"], default="run")
    parser.add_argument("--batch-size", type=int, default=1000, help="Data-Juicer's default")
    parser.add_argument("--output", type=Path, required=True, help="JSON results")
    args = parser.parse_args()
    files = _shards(args.pool)
    with tempfile.TemporaryDirectory(prefix="dj-models-") as cache:
        os.environ["DATA_JUICER_MODELS_CACHE"] = cache
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_CACHE", str(Path(cache) / "hf"))
        _model_cache(args.model.resolve(), Path(cache))
        from loguru import logger

        logger.remove()
        logger.add(sys.stderr, level="WARNING")
        import data_juicer

        result = (run_op if args.mode == "run" else run_core)(files, args.batch_size)
        result.update(
            {"mode": args.mode, "batch_size": args.batch_size, "version": data_juicer.__version__}
        )
    args.output.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
