"""``datafilter run``: every stage of a config in order, each one resumable.

demo corpus and KenLM training (optional) -> score -> combine (optional) -> thresholds (the
percentile tables, and the ``select:`` section's plan) -> select (applies that plan) -> evaluate
(optional: proxy models on candidate selections). Each step is the stage's own function with the
config's section as its options.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from datafilter.config import RunConfig, load_config
from datafilter.errors import ConfigError
from datafilter.io import storage
from datafilter.io.layout import RunLayout
from datafilter.io.owned import MANIFEST
from datafilter.progress import progress_state, set_enabled
from datafilter.runtime import RuntimeOptions
from datafilter.stages.score import run_score
from datafilter.stages.select import run_select
from datafilter.stages.thresholds import ThresholdsOptions, run_thresholds

log = logging.getLogger(__name__)


def run_config(config: str | Path | RunConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run the optional demo-corpus and KenLM-training steps, then score, thresholds, select.

    ``progress=False`` turns the progress bars and lines off for this call."""
    cfg = config if isinstance(config, RunConfig) else load_config(config)
    if progress:
        return _run(cfg)
    previous = progress_state()
    set_enabled(False)
    try:
        return _run(cfg)
    finally:
        set_enabled(previous)


def _run(cfg: RunConfig) -> dict[str, Any]:
    """The steps in order; a labelled result: each step's counts, ``seconds`` per step and
    ``outputs`` (the paths each step wrote)."""
    results: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    outputs: dict[str, Any] = {}
    started = time.monotonic()
    if cfg.storage:
        storage.configure(cfg.storage)
    if not cfg.demo_corpus:  # else the input is made by the first step
        check_config_columns(cfg)
    check_paths(cfg)
    if cfg.demo_corpus:
        from datafilter.demo_corpus import build_demo_corpus

        with _timed(seconds, "demo_corpus"):
            step = cfg.demo_corpus
            corpus = build_demo_corpus(Path(step.output), seed=step.seed, n_shards=step.n_shards)
        results["demo_corpus"] = outputs["demo_corpus"] = str(corpus.root)
        check_config_columns(cfg)
    if cfg.train_kenlm:
        from datafilter.kenlm.train import train_kenlm

        with _timed(seconds, "train_kenlm"):
            step = cfg.train_kenlm
            recipe = train_kenlm(
                step.input,
                step.output,
                text_columns=step.text_columns,
                options=step.training(),
                overwrite=step.overwrite,
                log=log.info,
            )
        results["train_kenlm"] = recipe.training
        outputs["model"] = str(step.output)
    with _timed(seconds, "score"):
        results["score"] = score_step(cfg, cfg.ray)
    layout = RunLayout.at(cfg.run_dir)
    outputs["scores"] = str(layout.scores_dir(results["score"]["scorer_id"]))
    if cfg.combine:
        from datafilter.stages.combine import run_combine

        with _timed(seconds, "combine"):
            combined = run_combine(cfg.run_dir, cfg.combine)
        results["combine"] = {k: combined[k] for k in ("scorer_id", "scored", "rejected")}
        outputs["combined_scores"] = str(layout.scores_dir(combined["scorer_id"]))
    with _timed(seconds, "thresholds"):
        summaries, plan = thresholds_step(cfg)
    results["thresholds"] = [
        {
            "group_by": s.get("group_by"),
            "documents": s.get("n_docs"),
            "table": str(layout.thresholds_path(s["scorer"], s.get("group_by"))),
        }
        for s in summaries
    ]
    outputs["thresholds"] = [t["table"] for t in results["thresholds"]]
    outputs["plan"] = plan or cfg.select.plan
    with _timed(seconds, "select"):
        manifest = select_step(cfg, cfg.ray, plan)
    results["select"] = manifest["totals"]
    results["groups"] = {
        g: {"read": c["read"], "kept": c["kept"]} for g, c in manifest["groups"].items()
    }
    outputs["selection"] = str(storage.location(cfg.select.output))
    outputs["manifest"] = str(storage.location(cfg.select.output) / MANIFEST)
    if cfg.evaluate:
        from datafilter.stages.evaluate import run_evaluate

        with _timed(seconds, "evaluate"):
            table = run_evaluate(cfg.run_dir, cfg.evaluate, cfg.ray)
        results["evaluate"] = [r["statement"] for r in table["recommendations"]]
        outputs["evaluation"] = str(layout.root / "evaluate" / "table.json")
    seconds["total"] = round(time.monotonic() - started, 3)
    return {**results, "seconds": seconds, "outputs": outputs}


@contextmanager
def _timed(seconds: dict[str, float], step: str) -> Iterator[None]:
    """Record the block's wall-clock seconds under ``step``."""
    started = time.monotonic()
    yield
    seconds[step] = round(time.monotonic() - started, 3)


def check_paths(cfg: RunConfig) -> None:
    """Before any step runs: no folder the config writes is, contains or lies inside a path it
    reads or another folder it writes, and the run and output folders hold no foreign files
    (unless ``score.overwrite`` / ``select.overwrite``). Each stage checks again when it runs,
    with the input's shards and linked folders as found then."""
    from datafilter.errors import DatafilterError
    from datafilter.io.guard import input_places, place, refuse_overlaps, require_own_folder
    from datafilter.io.layout import STATE_DIR, RunLayout
    from datafilter.io.owned import is_select_output

    try:
        reads = input_places(cfg.input)
    except DatafilterError:  # not there yet (a demo corpus step makes it): its path as given
        reads = [place("input", cfg.input)]
    writes = [place("run folder", cfg.run_dir), place("output folder", cfg.select.output)]
    if cfg.train_kenlm:
        writes.append(place("model folder", cfg.train_kenlm.output))
        reads += [place("training input", path) for path in cfg.train_kenlm.input]
    elif cfg.score.options.get("model"):
        reads.append(place("model folder", str(cfg.score.options["model"])))
    refuse_overlaps(writes, reads)
    if cfg.demo_corpus:
        refuse_overlaps([place("demo corpus folder", cfg.demo_corpus.output)], writes)
    layout = RunLayout.at(cfg.run_dir)
    require_own_folder(
        layout.root,
        "run folder",
        layout.record_path.exists(),
        {STATE_DIR},
        cfg.score.overwrite,
        "score.overwrite: true",
    )
    out = storage.location(cfg.select.output)
    require_own_folder(
        out,
        "output folder",
        is_select_output(out),
        {STATE_DIR},
        cfg.select.overwrite,
        "select.overwrite: true",
    )


def check_config_columns(cfg: RunConfig) -> None:
    """Before any step runs: every column the config names is in the first input shard."""
    from datafilter.aggregate import JSONL_GROUPS
    from datafilter.io.jsonl import is_jsonl
    from datafilter.validation import check_columns, first_shard

    columns: dict[str, str | None] = {
        "score.text_column": cfg.score.text_column,
        "score.id_column": cfg.score.id_column,
        "select.report_by": cfg.select.report_by,
    }
    groups: dict[str, str | None] = {"select.group_by": cfg.select.group_by}
    for i, group_by in enumerate(cfg.thresholds.group_by):
        groups[f"thresholds.group_by[{i}]"] = group_by
    if cfg.combine:
        groups["combine.group_by"] = cfg.combine.group_by
    if cfg.evaluate:
        for i, candidate in enumerate(cfg.evaluate.candidates):
            groups[f"evaluate.candidates[{i}].group_by"] = candidate.group_by
    check_columns(cfg.input, {**columns, **groups})
    used = sorted(key for key, column in groups.items() if column is not None)
    shard = first_shard(cfg.input)
    if used and shard is not None and is_jsonl(shard.name):
        raise ConfigError(f"{used[0]}: {JSONL_GROUPS} ({shard})")


def score_step(cfg: RunConfig, runtime: RuntimeOptions | None = None) -> dict[str, Any]:
    """The config's score stage (finished shards are skipped); the stage's summary."""
    return run_score(cfg.input, cfg.run_dir, cfg.score, runtime or cfg.ray)


def thresholds_step(cfg: RunConfig) -> tuple[list[dict[str, Any]], str | None]:
    """One percentile table per ``thresholds.group_by`` entry, and the plan of the ``select:``
    section (made with the table of its group column, or alone when no table is asked for by
    that column); the tables' summaries and the plan's path (None: ``select.plan`` is given)."""
    t, sel = cfg.thresholds, cfg.select
    common = {
        "scorer_id": sel.scorer_id or cfg.scorer_id,
        "quantiles": t.quantiles,
        "approx": t.approx,
        "memory_limit": t.memory_limit,
    }
    plan_request = {"selector": sel.selector, "options": sel.options}
    wanted = sel.plan is None
    summaries, plan = [], None
    for group_by in t.group_by:
        mine = wanted and group_by == sel.group_by and plan is None
        opts = ThresholdsOptions(**common, group_by=group_by, **(plan_request if mine else {}))
        summary = run_thresholds(cfg.run_dir, opts)
        plan = summary.pop("plan", plan)
        summaries.append(summary)
    if wanted and plan is None:
        opts = ThresholdsOptions(**common, group_by=sel.group_by, **plan_request, table=False)
        plan = run_thresholds(cfg.run_dir, opts)["plan"]
    return summaries, plan


def select_step(
    cfg: RunConfig, runtime: RuntimeOptions | None = None, plan: str | None = None
) -> dict[str, Any]:
    """The config's select stage applying ``plan`` (default: ``select.plan``, else the run's
    plan of the select section; finished shards are skipped); the manifest."""
    sel = cfg.select
    if sel.scorer_id is None:
        sel = sel.model_copy(update={"scorer_id": cfg.scorer_id})
    if plan is not None:
        sel = sel.model_copy(update={"plan": plan})
    return run_select(cfg.run_dir, sel, runtime or cfg.ray)
