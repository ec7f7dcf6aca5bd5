"""``datafilter corr-run CONFIG.yaml``: the whole perplexity-correlation flow from one file.

sample per domain -> every model scores the sample -> bpb per (model, domain) -> one model scores
the corpus (tokens per domain) -> weights from the benchmark table -> [fastText] -> select.
Relative paths are relative to the directory the command runs from.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from datafilter.config import load_yaml_model
from datafilter.errors import ConfigError
from datafilter.runtime import RuntimeOptions


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(_Strict):
    scorer: str = "kenlm"
    options: dict[str, Any] = {}


class SampleStep(_Strict):
    per_domain: int = Field(100, ge=1)
    seed: int = 0


class BenchmarkStep(_Strict):
    table: str
    columns: list[str] | None = None
    metric: Literal["accuracy", "error"] = "accuracy"
    average: Literal["mean", "median"] = "mean"


class WeightsStep(_Strict):
    estimator: Literal["sign_cdf", "spearmanr", "sign_sign", "sign", "product"] = "sign_cdf"
    projection: Literal["linear", "l2"] = "linear"
    budget: int | None = Field(None, ge=1)
    keep_ratio: float | None = Field(None, gt=0, le=1)
    unit: Literal["tokens", "bytes"] = "tokens"
    min_models: int = Field(10, ge=2)
    average: Literal["bytes", "documents"] = "bytes"


class DistillStep(_Strict):
    max_per_label: int = Field(20000, ge=1)
    holdout: float = Field(0.1, ge=0, lt=1)
    epoch: int = Field(5, ge=1)
    dim: int = Field(32, ge=1)
    seed: int = 0


class SelectStep(_Strict):
    output: str
    seed: int = 0


class CorrConfig(_Strict):
    """The corpus, where work files go, the domains, the models, the benchmarks, the budget."""

    input: str
    work_dir: str
    domain_column: str | None = None
    url_column: str | None = None
    text_column: str = "text"
    id_column: str | None = None
    sample: SampleStep = SampleStep()
    models: dict[str, ModelSpec] = {}
    model_dirs: str | None = Field(None, description="glob of KenLM model folders, id = name")
    corpus_scorer: str = Field(description="the model id that scores the whole corpus")
    benchmarks: BenchmarkStep
    weights: WeightsStep = WeightsStep()
    distill: DistillStep | None = None
    select: SelectStep
    ray: RuntimeOptions = RuntimeOptions()

    @model_validator(mode="after")
    def _one_domain_source(self) -> CorrConfig:
        if bool(self.domain_column) == bool(self.url_column):
            raise ValueError("give exactly one of domain_column and url_column")
        if (self.weights.budget is None) == (self.weights.keep_ratio is None):
            raise ValueError("weights: give exactly one of budget and keep_ratio")
        return self

    def all_models(self) -> dict[str, ModelSpec]:
        """``models`` plus every KenLM folder matched by ``model_dirs`` (sorted by name)."""
        found = dict(self.models)
        if self.model_dirs:
            folders = sorted(Path(p) for p in glob.glob(self.model_dirs) if Path(p).is_dir())
            for folder in folders:
                found.setdefault(folder.name, ModelSpec(options={"model": str(folder)}))
        if not found:
            raise ConfigError("no models: list them under models: or give model_dirs:")
        if self.corpus_scorer not in found:
            raise ConfigError(
                f"corpus_scorer {self.corpus_scorer!r} is not one of the models: "
                + ", ".join(sorted(found))
            )
        return found


def load_corr_config(path: str | Path) -> CorrConfig:
    return load_yaml_model(path, CorrConfig)


def corr_run(config: str | Path | CorrConfig, *, progress: bool = False) -> dict[str, Any]:
    """Every step of the flow in order; each one resumes or reuses finished work.

    ``progress=False`` turns the progress bars and lines off for this call."""
    from datafilter.progress import progress_state, set_enabled

    cfg = config if isinstance(config, CorrConfig) else load_corr_config(config)
    if progress:
        return _corr_run(cfg)
    previous = progress_state()
    set_enabled(False)
    try:
        return _corr_run(cfg)
    finally:
        set_enabled(previous)


def _corr_run(cfg: CorrConfig) -> dict[str, Any]:
    from datafilter.correlation import steps
    from datafilter.correlation.domains import DomainSpec
    from datafilter.stages.score import ScoreOptions, run_score
    from datafilter.stages.select import SelectOptions, run_select
    from datafilter.stages.thresholds import ThresholdsOptions, run_thresholds

    spec = DomainSpec.from_args(cfg.domain_column, cfg.url_column)
    models = cfg.all_models()
    work = Path(cfg.work_dir)
    runtime = cfg.ray
    results: dict[str, Any] = {}
    summary = steps.sample(
        cfg.input,
        work / "sample",
        spec,
        per_domain=cfg.sample.per_domain,
        seed=cfg.sample.seed,
        id_column=cfg.id_column,
    )
    results["sample"] = {"documents": summary["documents"], "domains": len(summary["domains"])}

    def score(input_path: str | Path, run: Path, model_id: str) -> None:
        spec_ = models[model_id]
        opts = ScoreOptions(
            scorer=spec_.scorer,
            options=spec_.options,
            scorer_id=model_id,
            text_column=cfg.text_column,
            id_column=cfg.id_column,
        )
        run_score(input_path, run, opts, runtime)

    for model_id in models:
        score(work / "sample", work / "sample-run", model_id)
    bpb = steps.bpb(
        work / "sample-run",
        work / "bpb.parquet",
        spec,
        models=list(models),
        average=cfg.weights.average,
    )
    results["bpb"] = {"models": len(bpb["models"]), "domains": len(bpb["domains"])}
    score(cfg.input, work / "run", cfg.corpus_scorer)
    w = steps.weights(
        work / "bpb.parquet",
        cfg.benchmarks.table,
        work / "weights.parquet",
        benchmark_columns=cfg.benchmarks.columns,
        benchmark_metric=cfg.benchmarks.metric,
        benchmark_average=cfg.benchmarks.average,
        min_models=cfg.weights.min_models,
        tokens_run=work / "run",
        tokens_scorer_id=cfg.corpus_scorer,
        domain=spec,
        unit=cfg.weights.unit,
        budget=cfg.weights.budget,
        keep_ratio=cfg.weights.keep_ratio,
        estimator=cfg.weights.estimator,
        projection=cfg.weights.projection,
    )
    results["weights"] = {k: w[k] for k in ("budget", "selected", "domains", "top")}
    options: dict[str, Any] = {"weights": str(work / "weights.parquet"), "domain_from": spec.kind}
    if cfg.distill is not None:
        from datafilter.correlation.distill import distill

        d = cfg.distill
        result = distill(
            work / "run",
            work / "weights.parquet",
            work / "classifier",
            spec,
            scorer_id=cfg.corpus_scorer,
            max_per_label=d.max_per_label,
            holdout=d.holdout,
            epoch=d.epoch,
            dim=d.dim,
            seed=d.seed,
        )
        results["distill"] = {"train": result["train"], "test": result["test"]}
        options["distill"] = str(work / "classifier")
    selection = {
        "selector": "perplexity_correlation",
        "options": options,
        "scorer_id": cfg.corpus_scorer,
        "group_by": spec.column,
    }
    made = run_thresholds(work / "run", ThresholdsOptions(**selection, table=False))
    manifest = run_select(
        work / "run",
        SelectOptions(
            output=cfg.select.output,
            **selection,
            report_by=spec.column if spec.kind == "column" else None,
            seed=cfg.select.seed,
            plan=made["plan"],
        ),
        runtime,
    )
    results["select"] = manifest["totals"]
    return results
