"""``datafilter run``: every stage of a config in order, each one resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datafilter import api
from datafilter.config import RunConfig, load_config
from datafilter.io import storage
from datafilter.progress import progress_state, set_enabled
from datafilter.runtime import RuntimeOptions, parse_size


def run(config: str | Path | RunConfig, *, progress: bool = True, log: api.Log = api._stderr):
    """Run the optional demo-corpus and KenLM-training steps, then score, thresholds, select.

    ``progress=False`` turns off Ray's progress bars and the local ones for this call."""
    cfg = config if isinstance(config, RunConfig) else load_config(config)
    if progress:
        return _run(cfg, progress, log)
    previous = progress_state()
    set_enabled(False)
    try:
        return _run(cfg, progress, log)
    finally:
        set_enabled(previous)


def _run(cfg: RunConfig, progress: bool, log: api.Log) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if cfg.storage:
        storage.configure(cfg.storage)
    if cfg.demo_corpus:
        from datafilter.demo_corpus import build_demo_corpus

        corpus = build_demo_corpus(
            Path(cfg.demo_corpus.output),
            seed=cfg.demo_corpus.seed,
            n_shards=cfg.demo_corpus.n_shards,
            log=log,
        )
        results["demo_corpus"] = str(corpus.root)
    if cfg.train_kenlm:
        from datafilter.kenlm_train import train_kenlm

        step = cfg.train_kenlm
        recipe = train_kenlm(
            step.input, step.output, text_columns=step.text_columns, options=step.options, log=log
        )
        results["train_kenlm"] = recipe.training
    runtime = runtime_options(cfg, progress)
    results["score"] = score_step(cfg, runtime, log)
    results["thresholds"] = [summary["n_docs"] for summary in thresholds_step(cfg, log)]
    manifest = select_step(cfg, runtime, log)
    results["select"] = manifest["totals"]
    results["groups_read_kept"] = {g: [c["read"], c["kept"]] for g, c in manifest["groups"].items()}
    return results


def runtime_options(cfg: RunConfig, progress: bool = True) -> RuntimeOptions:
    """The executor settings of a run config's ``ray`` section."""
    r = cfg.ray
    return RuntimeOptions(
        executor=r.executor,
        address=r.address,
        num_actors=r.num_actors,
        progress=progress,
        local_below=parse_size(r.local_below),
    )


def score_step(
    cfg: RunConfig, runtime: RuntimeOptions, log: api.Log = api._stderr
) -> dict[str, Any]:
    """The config's score stage (finished shards are skipped); the stage's summary."""
    s = cfg.score
    return api.score(
        cfg.input,
        cfg.run_dir,
        scorer=s.scorer,
        options=s.options,
        scorer_id=s.scorer_id,
        text_column=s.text_column,
        id_column=s.id_column,
        batch_rows=s.batch_rows,
        max_doc_bytes=s.max_doc_bytes,
        runtime=runtime,
        log=log,
    )


def thresholds_step(cfg: RunConfig, log: api.Log = api._stderr) -> list[dict[str, Any]]:
    """One percentile table per ``thresholds.group_by`` entry; their summaries."""
    t = cfg.thresholds
    return [
        api.thresholds(
            cfg.run_dir,
            scorer_id=cfg.score.scorer_id or cfg.score.scorer,
            group_by=group_by,
            quantiles=t.quantiles,
            approx=t.approx,
            memory_limit=t.memory_limit,
            log=log,
        )
        for group_by in t.group_by
    ]


def select_step(
    cfg: RunConfig, runtime: RuntimeOptions, log: api.Log = api._stderr
) -> dict[str, Any]:
    """The config's select stage (finished shards are skipped); the manifest."""
    sel = cfg.select
    return api.select(
        cfg.run_dir,
        sel.output,
        selector=sel.selector,
        options=sel.options,
        scorer_id=cfg.score.scorer_id or cfg.score.scorer,
        group_by=sel.group_by,
        report_by=sel.report_by,
        seed=sel.seed,
        with_scores=sel.with_scores,
        memory_limit=sel.memory_limit,
        runtime=runtime,
        log=log,
    )
