"""The Python API: one function per command; the CLI calls exactly these.

Each function fills its stage's options model from its keyword arguments (the same model that
the command's flags and the YAML config fill, so an option is declared once), validates it
strictly, and calls the stage. Results are JSON-able dicts (the command prints them), except
``train_kenlm`` and ``import_kenlm``, which return the model folder's recipe.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from datafilter.correlation.steps import (
    CorrBpbOptions,
    CorrDistillOptions,
    CorrSampleOptions,
    CorrWeightsOptions,
)
from datafilter.kenlm.options import ImportKenlmOptions, TrainKenlmOptions
from datafilter.reference.train import TrainReferenceOptions
from datafilter.registry import parse_options
from datafilter.reporting import ReportOptions
from datafilter.runtime import RuntimeOptions
from datafilter.stages.combine import CombineOptions
from datafilter.stages.evaluate import EvaluateOptions
from datafilter.stages.score import ScoreOptions
from datafilter.stages.select import SelectOptions
from datafilter.stages.thresholds import ThresholdsOptions

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])
Runtime = RuntimeOptions | dict[str, Any] | None


def _options(model: type[M], values: dict[str, Any], what: str) -> M:
    return parse_options(model, values, what)  # type: ignore[return-value]


def _runtime(runtime: Runtime) -> RuntimeOptions:
    if isinstance(runtime, RuntimeOptions):
        return runtime
    return _options(RuntimeOptions, runtime or {}, "runtime")


def _takes(model: type[BaseModel]) -> Callable[[F], F]:
    """Show the model's fields as the function's keyword arguments (``help()``, IDEs)."""

    def wrap(fn: F) -> F:
        sig = inspect.signature(fn)
        params = [p for p in sig.parameters.values() if p.kind != p.VAR_KEYWORD]
        named = {p.name for p in params}
        for name, field in model.model_fields.items():
            if name not in named:
                default = inspect.Parameter.empty if field.is_required() else field.default
                params.append(
                    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
                )
        fn.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        lines = [f"    {n}: {f.description or ''}" for n, f in model.model_fields.items()]
        fn.__doc__ = f"{fn.__doc__}\n\nOptions ({model.__name__}):\n" + "\n".join(lines)
        return fn

    return wrap


@_takes(ScoreOptions)
def score(input: str | Path, run_dir: str | Path, *, runtime: Runtime = None, **options: Any):
    """Score every input shard into ``RUN/scores/<scorer_id>/``; finished shards are skipped."""
    from datafilter.stages.score import run_score

    return run_score(input, run_dir, _options(ScoreOptions, options, "score"), _runtime(runtime))


@_takes(ThresholdsOptions)
def thresholds(run_dir: str | Path, **options: Any) -> dict[str, Any]:
    """Percentiles 0..100 of ppl and bpb (globally or per group) and, with ``selector``, its
    plan (``RUN/thresholds/plans/``), which :func:`select` applies."""
    from datafilter.stages.thresholds import run_thresholds

    return run_thresholds(run_dir, _options(ThresholdsOptions, options, "thresholds"))


@_takes(CombineOptions)
def combine(run_dir: str | Path, **options: Any) -> dict[str, Any]:
    """Sum robustly standardised terms of several score ids into a derived score id
    ``RUN/scores/<name>/`` that every later stage reads like a scorer's."""
    from datafilter.stages.combine import run_combine

    return run_combine(run_dir, _options(CombineOptions, options, "combine"))


@_takes(SelectOptions)
def select(
    run_dir: str | Path,
    output: str | Path | None = None,
    *,
    runtime: Runtime = None,
    **options: Any,
) -> dict[str, Any]:
    """Apply the plan made by :func:`thresholds`: one filtered shard per input shard in
    ``output`` and a manifest of every row."""
    from datafilter.stages.select import run_select

    if output is not None:
        options["output"] = str(output)
    return run_select(run_dir, _options(SelectOptions, options, "select"), _runtime(runtime))


@_takes(EvaluateOptions)
def evaluate(run_dir: str | Path, *, runtime: Runtime = None, **options: Any) -> dict[str, Any]:
    """Train small proxy models on equal tokens of each candidate selection and of a random
    control, measure them on the target sets, and say which selection to keep (the table in
    ``RUN/evaluate/table.json``)."""
    from datafilter.stages.evaluate import run_evaluate

    opts = _options(EvaluateOptions, options, "evaluate")
    return run_evaluate(run_dir, opts, _runtime(runtime))


def run(config: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Every stage of a ``datafilter run`` YAML config (or a RunConfig), in order."""
    from datafilter.stages.run import run_config

    return run_config(config, progress=progress)


@_takes(ReportOptions)
def report(run_dir: str | Path, **options: Any) -> dict[str, Any]:
    """Write the self-contained HTML report of a run and its selection."""
    from datafilter.reporting import write_report

    return write_report(run_dir, _options(ReportOptions, options, "report"))


@_takes(TrainKenlmOptions)
def train_kenlm(input: Any, output: str | Path, **options: Any):
    """Train a SentencePiece + KenLM model folder at ``output``; its recipe."""
    from datafilter.kenlm.train import train_kenlm as train

    opts = _options(TrainKenlmOptions, {**options, "input": input, "output": output}, "train-kenlm")
    return train(
        opts.input,
        opts.output,
        text_columns=opts.text_columns,
        options=opts.training(),
        overwrite=opts.overwrite,
        log=log.info,
    )


@_takes(ImportKenlmOptions)
def import_kenlm(kenlm: str | Path, sentencepiece: str | Path, output: str | Path, **options):
    """A model folder from a KenLM binary/ARPA file and its SentencePiece model; its recipe."""
    from datafilter.kenlm.importer import import_kenlm as import_model

    values = {**options, "kenlm": kenlm, "sentencepiece": sentencepiece, "output": output}
    opts = _options(ImportKenlmOptions, values, "import-kenlm")
    return import_model(
        opts.kenlm,
        opts.sentencepiece,
        opts.output,
        recipe=opts.normalization(),
        binary_type=opts.binary_type,
        sample=opts.sample,
        overwrite=opts.overwrite,
        log=log.info,
    )


@_takes(TrainReferenceOptions)
def train_reference(input: Any, output: str | Path, **options: Any) -> dict[str, Any]:
    """Train small reference causal LMs on the corpus itself (k cross-fitted folds)."""
    from datafilter.reference.train import train_reference as train

    values = {**options, "input": input, "output": output}
    return train(_options(TrainReferenceOptions, values, "train-reference"))


def list_plugins(*, summaries: bool = False) -> dict[str, Any]:
    """Registered scorer and selector names (built-ins and entry-point plugins); with
    ``summaries``, each name's one-line summary."""
    from datafilter.plugin_info import plugin_summaries
    from datafilter.scorers import SCORERS
    from datafilter.selectors import SELECTORS

    if summaries:
        return plugin_summaries()
    return {"scorers": SCORERS.names(), "selectors": SELECTORS.names()}


def describe(name: str) -> list[dict[str, Any]]:
    """The scorer or selector ``name`` (both, if both kinds have it): its kind, one-line
    summary and options (name, type, default, meaning), read from its options model."""
    from datafilter.plugin_info import describe as describe_plugin

    return describe_plugin(name)


# Perplexity-correlation data selection (Thrush et al. 2024): datafilter/correlation/.


@_takes(CorrSampleOptions)
def corr_sample(input: str | Path, output: str | Path, **options: Any) -> dict[str, Any]:
    """Write ``per_domain`` documents of every domain (fixed by ``seed`` and the ids) as shards."""
    from datafilter.correlation import steps

    opts = _options(CorrSampleOptions, options, "corr-sample")
    values = opts.model_dump(exclude={"domain_column", "url_column"})
    return steps.sample(input, output, opts.domain(), **values)


@_takes(CorrBpbOptions)
def corr_bpb(run_dir: str | Path, output: str | Path, **options: Any) -> dict[str, Any]:
    """Bits per byte per (model, domain) of a run's scorer ids: a table, one column per model."""
    from datafilter.correlation import steps

    opts = _options(CorrBpbOptions, options, "corr-bpb")
    return steps.bpb(run_dir, output, opts.domain(), models=opts.models, average=opts.average)


@_takes(CorrWeightsOptions)
def corr_weights(
    bpb: str | Path, benchmarks: str | Path, output: str | Path, **options: Any
) -> dict[str, Any]:
    """Domain weights from a bpb table and a benchmark table, capped by the corpus' tokens."""
    from datafilter.correlation import steps

    opts = _options(CorrWeightsOptions, options, "corr-weights")
    domain = opts.domain() if opts.tokens_run else None
    values = opts.model_dump(exclude={"domain_column", "url_column"})
    return steps.weights(bpb, benchmarks, output, domain=domain, **values)


@_takes(CorrDistillOptions)
def corr_distill(
    run_dir: str | Path, weights: str | Path, output: str | Path, **options: Any
) -> dict[str, Any]:
    """Train a fastText include/exclude classifier on the chosen domains; score every document."""
    from datafilter.correlation.distill import distill

    opts = _options(CorrDistillOptions, options, "corr-distill")
    values = opts.model_dump(exclude={"domain_column", "url_column"})
    return distill(run_dir, weights, output, opts.domain(), **values)


def corr_run(config: str | Path, *, progress: bool = False) -> dict[str, Any]:
    """The whole perplexity-correlation flow of a YAML config (``datafilter corr-run``)."""
    from datafilter.correlation.flow import corr_run as run_flow

    return run_flow(config, progress=progress)
