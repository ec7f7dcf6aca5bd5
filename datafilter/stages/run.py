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
    check_paths(cfg)
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
        from datafilter.kenlm.train import train_kenlm

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
        overwrite=s.overwrite,
        verify_inputs=s.verify_inputs,
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
        overwrite=sel.overwrite,
        runtime=runtime,
        log=log,
    )
