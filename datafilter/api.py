"""The public API: one function per stage; the CLI calls exactly these."""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from datafilter.aggregate import PERCENTILES, ScoreFiles, ScoreStats, threshold_table
from datafilter.errors import ConfigError, DatafilterError, InputError, ModelError, OutputError
from datafilter.io.atomic import dumps_json, remove_temp_files, write_json, write_table
from datafilter.io.content import identity
from datafilter.io.guard import (
    input_places,
    place,
    refuse_foreign_files,
    refuse_overlaps,
    require_own_folder,
)
from datafilter.io.layout import STATE_DIR, RunLayout
from datafilter.io.lock import run_lock
from datafilter.io.manifest import build_manifest
from datafilter.io.markers import is_complete, read_marker, write_marker
from datafilter.io.owned import MANIFEST, claim, is_select_output
from datafilter.io.record import (
    RunRecord,
    finished_score_markers,
    finished_score_shards,
    load_record,
    require_record,
    resolve_scorer_id,
    save_record,
    score_check,
    score_marker_fields,
)
from datafilter.io.shards import scan_input
from datafilter.io.storage import AnyPath, ObjectPath, is_remote, location, remove_tree
from datafilter.pause_points import pause_point
from datafilter.runtime import RuntimeOptions, run_tasks
from datafilter.scorers import make_scorer
from datafilter.selectors import make_selector
from datafilter.stages.score import ScoreSettings, ShardJob, score_shard
from datafilter.stages.select import SelectJob, SelectSettings, select_shard

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def score(
    input: str | Path,
    run_dir: str | Path,
    *,
    scorer: str = "kenlm",
    options: dict[str, Any] | None = None,
    scorer_id: str | None = None,
    text_column: str = "text",
    id_column: str | None = None,
    batch_rows: int = 512,
    max_doc_bytes: int = 8 * 1024 * 1024,
    overwrite: bool = False,
    verify_inputs: bool = False,
    runtime: RuntimeOptions | None = None,
    log: Log = _stderr,
) -> dict[str, Any]:
    """Score every input shard into ``RUN/scores/<scorer_id>/``; finished shards are skipped.

    ``overwrite`` replaces scores made with other settings under the same scorer id, and lets a
    run folder holding foreign files be used (they are left alone). ``verify_inputs`` hashes
    every input shard to decide whether its scores are still valid, instead of trusting an
    unchanged file signature (size, mtime, ctime, inode)."""
    layout = RunLayout.at(run_dir)
    the_scorer = make_scorer(scorer, options)
    scan = scan_input(input)
    shards = scan.shards
    model = getattr(the_scorer.options, "model", None)
    refuse_overlaps(
        [place("run folder", layout.root)],
        [*input_places(input, scan), *([place("model folder", model)] if model else [])],
    )
    _require_run_folder(layout, overwrite)
    the_scorer.validate()  # the model's recorded checksums are verified here
    sid = scorer_id or scorer
    settings = ScoreSettings(
        text_column=text_column,
        id_column=id_column,
        batch_rows=batch_rows,
        max_doc_bytes=max_doc_bytes,
    )
    entry = {"scorer": the_scorer.describe(), "settings": settings.model_dump(mode="json")}
    with run_lock(layout.lock_path):
        record = _updated_record(layout, str(location(input)), settings)
        if record.scorers.get(sid, entry) != entry and not overwrite:
            raise ConfigError(
                f"{layout.scores_dir(sid)} holds scores made with other settings; use another "
                "--scorer-id to keep both, or --overwrite to replace them"
            )
        record.scorers[sid] = entry
        save_record(layout, record)
        remove_temp_files(layout.root)
        jobs = []
        for shard in shards:
            job = ShardJob(
                shard_rel=shard.rel,
                input_path=shard.path,
                output_path=layout.score_path(sid, shard.rel),
                marker_path=layout.marker_path("score", sid, shard.rel),
                marker_fields=score_marker_fields(record, sid),
                hash_input=verify_inputs or not is_remote(shard.path),
            )
            check = score_check(layout, record, sid, shard, verify_inputs=verify_inputs)
            if check.problem is not None:
                jobs.append(job)
            elif check.fresh is not None:  # same bytes, new signatures: check cheaply next time
                write_marker(job.marker_path, check.fresh)
        log(f"score: {len(jobs)} of {len(shards)} shards to score ({len(shards) - len(jobs)} done)")
        resources = the_scorer.resources()
        factory = partial(
            _score_worker, scorer, the_scorer.options.model_dump(mode="json"), settings
        )
        failures = _drive(
            jobs, factory, runtime, resources.num_cpus, resources.num_gpus, log, "score"
        )
        remove_temp_files(layout.scores_dir(sid))  # left by workers that died mid-shard
        summary = _record_score_summary(layout, sid, shards, failures, log)
    _raise_failures(failures, len(shards), "score")
    return summary


def _record_score_summary(layout: RunLayout, sid: str, shards, failures, log: Log):
    """Count the finished shards and write ``summary.json``. When shards failed (e.g. the
    store became unreachable), a failure here is logged so it does not hide their errors."""
    try:
        summary = _score_summary(layout, sid, shards, failures)
        write_json(layout.root / STATE_DIR / "score" / sid / "summary.json", summary)
    except OSError as exc:
        if not failures:
            raise
        log(f"score: warning: could not count or record the finished shards: {exc}")
        summary = {"scorer_id": sid, "shards": len(shards), "failed_shards": sorted(failures)}
    return summary


def _require_run_folder(layout: RunLayout, overwrite: bool) -> None:
    """A run folder is new, empty or datafilter's (it has run.json); with ``overwrite`` a folder
    of foreign files is used too, if none of them is in the way of the run's own names."""
    ours = layout.record_path.exists()
    require_own_folder(layout.root, "run folder", ours, {STATE_DIR}, overwrite, "--overwrite")
    if not ours:
        refuse_foreign_files(layout.root, "run folder", ["scores", "thresholds", "report.html"])


def _updated_record(layout: RunLayout, input_path: str, settings: ScoreSettings) -> RunRecord:
    record = load_record(layout)
    if record is None:
        return RunRecord(
            input=input_path, text_column=settings.text_column, id_column=settings.id_column
        )
    if record.input != input_path:
        raise ConfigError(
            f"run folder {layout.root} belongs to input {record.input}; use another run folder"
        )
    if (record.text_column, record.id_column) != (settings.text_column, settings.id_column):
        raise ConfigError(
            f"run folder {layout.root} was scored with text column {record.text_column!r} and id "
            f"column {record.id_column!r}; use the same columns or another run folder"
        )
    return record


def _score_worker(name: str, options: dict[str, Any], settings: ScoreSettings):
    """Runs once per actor: load the model, return the per-shard function."""
    scorer = make_scorer(name, options)
    try:
        scorer.setup()
    except DatafilterError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken model file must become one clear error
        raise ModelError(f"loading the {name} model failed: {type(exc).__name__}: {exc}") from exc
    return partial(score_shard, scorer=scorer, settings=settings)


def _drive(jobs, factory, runtime, num_cpus, num_gpus, log: Log, stage: str) -> dict[str, str]:
    """Run the jobs, log each finished shard, and return the failed ones with their errors."""
    failures: dict[str, str] = {}
    outcomes = run_tasks(
        jobs,
        factory,
        runtime or RuntimeOptions(),
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        stage=stage,
        log=log,
    )
    for done, outcome in enumerate(outcomes, start=1):
        rel = outcome.task.shard_rel
        if outcome.error is not None:
            failures[rel] = outcome.error
            log(f"{stage}: [{done}/{len(jobs)}] {rel} FAILED: {outcome.error.splitlines()[0]}")
            if outcome.stop:  # the output cannot be written: the other shards would fail too
                outcomes.close()
                raise OutputError(
                    f"{stage}: {outcome.error}; the shards finished before are kept, rerun when "
                    "it can be written again"
                )
        else:
            log(f"{stage}: [{done}/{len(jobs)}] {rel} {_brief(outcome.result)}")
    return failures


def _brief(stats: dict[str, Any]) -> str:
    keys = ("rows", "scored", "read", "kept", "seconds")
    parts = [f"{k}={stats[k]}" for k in keys if k in stats]
    rejected = sum(stats.get("rejected", {}).values())
    return " ".join(parts + ([f"rejected={rejected}"] if rejected else []))


def _raise_failures(failures: dict[str, str], total: int, stage: str) -> None:
    if not failures:
        return
    lines = "\n".join(f"  {rel}: {err.splitlines()[0]}" for rel, err in sorted(failures.items()))
    raise DatafilterError(
        f"{stage}: {len(failures)} of {total} shards failed; finished shards are kept and a rerun "
        f"retries only the failed ones:\n{lines}"
    )


def _score_summary(layout: RunLayout, sid: str, shards, failures: dict[str, str]) -> dict[str, Any]:
    rows = scored = 0
    rejected: Counter[str] = Counter()
    for shard in shards:
        marker = read_marker(layout.marker_path("score", sid, shard.rel))
        if marker and shard.rel not in failures:
            rows += marker["stats"]["rows"]
            scored += marker["stats"]["scored"]
            rejected.update(marker["stats"]["rejected"])
    return {
        "scorer_id": sid,
        "shards": len(shards),
        "failed_shards": sorted(failures),
        "rows": rows,
        "scored": scored,
        "rejected": dict(sorted(rejected.items())),
    }


def _score_stats(
    pairs: list, group_by: str | None, extra: dict[str, dict[str, Path]] | None = None, **kw
) -> ScoreStats:
    """DuckDB statistics over the score shards of ``pairs`` (input shard, score path), joined
    with other scorers' shards of the same inputs (``extra``: scorer id -> shard rel -> path)."""
    files = ScoreFiles(
        score_files=[str(p) for _, p in pairs],
        input_files=[str(s.path) for s, _ in pairs],
        extra={x: [str(paths[s.rel]) for s, _ in pairs] for x, paths in (extra or {}).items()},
    )
    return ScoreStats(files, group_by, **kw)


def _duckdb_temp(layout: RunLayout) -> str:
    """Where DuckDB may spill: inside a local run folder, else a local temporary folder."""
    if isinstance(layout.root, ObjectPath):
        return str(Path(tempfile.gettempdir()) / "datafilter-duckdb")
    return str(layout.root / STATE_DIR / "duckdb")


def thresholds(
    run_dir: str | Path,
    *,
    scorer_id: str | None = None,
    group_by: str | None = None,
    quantiles: Sequence[float] = (),
    approx: bool = False,
    memory_limit: str | None = None,
    log: Log = _stderr,
) -> dict[str, Any]:
    """Percentiles 0..100 (plus ``quantiles``) of ppl and bpb, globally or per group column."""
    layout = RunLayout.at(run_dir)
    record = require_record(layout)
    sid = resolve_scorer_id(record, scorer_id)
    for q in quantiles:
        if not 0.0 <= q <= 1.0:
            raise ConfigError(f"quantile {q} is outside [0, 1]")
    qs = sorted(set(PERCENTILES) | {float(q) for q in quantiles})
    with run_lock(layout.lock_path, shared=True):  # no score run replaces the scores meanwhile
        refuse_overlaps([place("run folder", layout.root)], input_places(record.input))
        pairs = finished_score_shards(layout, record, sid)
        with _read_errors_named():
            stats = _score_stats(
                pairs, group_by, memory_limit=memory_limit, temp_directory=_duckdb_temp(layout)
            )
            table, summary = threshold_table(stats, sid, qs, approx)
        pause_point("thresholds")  # test-only (datafilter/pause_points.py)
        path = layout.thresholds_path(sid, group_by)
        write_table(path, table)
        write_json(path.with_suffix(".json"), summary)
    log(f"thresholds: {summary['n_docs']} documents, {len(summary['groups'])} group(s) -> {path}")
    return summary


@contextmanager
def _read_errors_named() -> Iterator[None]:
    """A read error of Arrow or DuckDB (which name the file in their messages) becomes one
    InputError line instead of a traceback."""
    import duckdb
    import pyarrow as pa

    try:
        yield
    except (pa.ArrowException, duckdb.IOException, duckdb.InvalidInputException) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read the scores: {first}") from exc


def select(
    run_dir: str | Path,
    output: str | Path,
    *,
    selector: str = "perplexity_band",
    options: dict[str, Any] | None = None,
    scorer_id: str | None = None,
    group_by: str | None = None,
    report_by: str | None = None,
    seed: int = 0,
    with_scores: bool = False,
    memory_limit: str | None = None,
    overwrite: bool = False,
    runtime: RuntimeOptions | None = None,
    log: Log = _stderr,
) -> dict[str, Any]:
    """Write one filtered shard per input shard into ``output`` and a manifest of every row.

    ``memory_limit`` caps DuckDB while it plans the selection (ranking every document: the one
    step whose memory grows with the corpus); past it DuckDB spills to disk. ``overwrite`` lets
    an output folder holding foreign files be used (they are never replaced or deleted)."""
    layout = RunLayout.at(run_dir)
    out = location(output)
    record = require_record(layout)
    sid = resolve_scorer_id(record, scorer_id)
    the_selector = make_selector(selector, options)
    refuse_overlaps(
        [place("output folder", out)],
        [place("run folder", layout.root), *input_places(record.input)],
    )
    owned = is_select_output(out)
    require_own_folder(out, "output folder", owned, {STATE_DIR}, overwrite, "--overwrite")
    # Shared: other selections and thresholds may read the scores too, but no score run can
    # replace them until this selection is written.
    with run_lock(layout.lock_path, shared=True), run_lock(out / STATE_DIR / "lock"):
        remove_temp_files(out)
        checked = finished_score_markers(layout, record, sid)
        pairs = [(shard, path) for shard, path, _ in checked]
        planned = {str(path): marker["output"]["sha256"] for _, path, marker in checked}
        extra: dict[str, dict[str, AnyPath]] = {}
        for x in the_selector.extra_scorers():
            if resolve_scorer_id(record, x):
                found = finished_score_markers(layout, record, x)
                extra[x] = {shard.rel: path for shard, path, _ in found}
                planned.update({str(path): m["output"]["sha256"] for _, path, m in found})
        # No reference to the DuckDB connection outlives the plan: its memory goes with it.
        plan = the_selector.plan(
            _score_stats(
                pairs,
                group_by,
                extra,
                memory_limit=memory_limit,
                temp_directory=f"{_duckdb_temp(layout)}-select-{os.getpid()}",
            )
        )
        for warning in plan.get("warnings", []):
            log(f"select: warning: {warning}")
        for note in plan.get("notes", []):
            log(f"select: {note}")
        context = {
            "input": record.input,
            "run": str(layout.root),
            "scorer_id": sid,
            "scorer": record.scorers[sid],
            "extra_scorers": {x: record.scorers[x] for x in extra},
            "selector": {"name": selector, "options": the_selector.options.model_dump(mode="json")},
            "group_by": group_by,
            "report_by": report_by,
            "seed": seed,
            "with_scores": with_scores,
            "thresholds": plan,
        }
        key = hashlib.sha256(dumps_json(context).encode()).hexdigest()[:16]
        claim(out, {shard.rel for shard, _ in pairs} | {MANIFEST}, log)
        _forget_other_selections(out, key)
        jobs, all_jobs = [], []
        for (shard, score_path), (_, _, marker) in zip(pairs, checked, strict=True):
            job = SelectJob(
                shard_rel=shard.rel,
                input_path=shard.path,
                score_path=score_path,
                output_path=out / shard.rel,
                marker_path=out / STATE_DIR / "select" / key / f"{shard.rel}.done.json",
                marker_fields={
                    "stage": "select",
                    "context": key,
                    "input": identity(marker["input"]),
                    "scores": planned[str(score_path)],
                    "extra_scores": {x: planned[str(p[shard.rel])] for x, p in extra.items()},
                },
                extra_score_paths={x: p[shard.rel] for x, p in extra.items()},
                planned_sha256={
                    str(p): planned[str(p)]
                    for p in [score_path, *(paths[shard.rel] for paths in extra.values())]
                },
            )
            all_jobs.append(job)
            if not is_complete(job.marker_path, job.output_path, job.marker_fields):
                jobs.append(job)
        log(f"select: {len(jobs)} of {len(pairs)} shards to write ({len(pairs) - len(jobs)} done)")
        settings = SelectSettings(
            group_by=group_by, seed=seed, with_scores=with_scores, report_by=report_by
        )
        factory = partial(_select_worker, selector, context["selector"]["options"], plan, settings)
        failures = _drive(jobs, factory, runtime, 1.0, 0.0, log, "select")
        remove_temp_files(out)  # left by workers that died mid-shard
        _raise_failures(failures, len(pairs), "select")
        shard_stats = [read_marker(j.marker_path)["stats"] for j in all_jobs]
        manifest = build_manifest(shard_stats, context)
        write_json(out / "manifest.json", manifest)
        write_json(layout.selection_record_path(out), {"output": str(out), "selector": selector})
    t = manifest["totals"]
    log(
        f"select: read {t['read']}, kept {t['kept']}, dropped {t['dropped']}, "
        f"rejected {t['rejected']} -> {out}"
    )
    return manifest


def _forget_other_selections(out: AnyPath, key: str) -> None:
    """This selection rewrites ``out``: drop the completion records of other selections (their
    shards are about to be replaced; :func:`claim` removed those whose input is gone)."""
    state = out / STATE_DIR / "select"
    for folder in state.glob("*") if state.exists() else []:
        if folder.name != key:
            remove_tree(folder)


def _select_worker(name: str, options: dict[str, Any], plan: dict[str, Any], settings):
    return partial(
        select_shard, selector=make_selector(name, options), plan=plan, settings=settings
    )


def list_plugins() -> dict[str, list[str]]:
    """Registered scorer and selector names (built-ins and entry-point plugins)."""
    from datafilter.scorers import SCORERS
    from datafilter.selectors import SELECTORS

    return {"scorers": SCORERS.names(), "selectors": SELECTORS.names()}


# Perplexity-correlation data selection (Thrush et al. 2024): datafilter/perplexity_correlation/.


def corr_sample(
    input: str | Path,
    output: str | Path,
    *,
    domain_column: str | None = None,
    url_column: str | None = None,
    per_domain: int = 100,
    seed: int = 0,
    id_column: str | None = None,
    log: Log = _stderr,
) -> dict[str, Any]:
    """Write ``per_domain`` documents of every domain (fixed by ``seed`` and the ids) as shards."""
    from datafilter.correlation import steps
    from datafilter.correlation.domains import DomainSpec

    domain = DomainSpec.from_args(domain_column, url_column)
    return steps.sample(
        input, output, domain, per_domain=per_domain, seed=seed, id_column=id_column, log=log
    )


def corr_bpb(
    run_dir: str | Path,
    output: str | Path,
    *,
    domain_column: str | None = None,
    url_column: str | None = None,
    models: Sequence[str] | None = None,
    average: str = "bytes",
    log: Log = _stderr,
) -> dict[str, Any]:
    """Bits per byte per (model, domain) of a run's scorer ids: a table, one column per model."""
    from datafilter.correlation import steps
    from datafilter.correlation.domains import DomainSpec

    domain = DomainSpec.from_args(domain_column, url_column)
    return steps.bpb(run_dir, output, domain, models=list(models or []), average=average, log=log)


def corr_weights(
    bpb: str | Path,
    benchmarks: str | Path,
    output: str | Path,
    *,
    benchmark_columns: Sequence[str] | None = None,
    benchmark_metric: str = "accuracy",
    benchmark_average: str = "mean",
    models: Sequence[str] | None = None,
    min_models: int = 10,
    tokens_run: str | Path | None = None,
    tokens_scorer_id: str | None = None,
    tokens_table: str | Path | None = None,
    domain_column: str | None = None,
    url_column: str | None = None,
    unit: str = "tokens",
    budget: int | None = None,
    keep_ratio: float | None = None,
    estimator: str = "sign_cdf",
    projection: str = "linear",
    log: Log = _stderr,
) -> dict[str, Any]:
    """Domain weights from a bpb table and a benchmark table, capped by the corpus' tokens."""
    from datafilter.correlation import steps
    from datafilter.correlation.domains import DomainSpec

    domain = DomainSpec.from_args(domain_column, url_column) if tokens_run else None
    return steps.weights(
        bpb,
        benchmarks,
        output,
        benchmark_columns=list(benchmark_columns or []) or None,
        benchmark_metric=benchmark_metric,  # type: ignore[arg-type]
        benchmark_average=benchmark_average,  # type: ignore[arg-type]
        models=list(models or []) or None,
        min_models=min_models,
        tokens_run=tokens_run,
        tokens_scorer_id=tokens_scorer_id,
        tokens_table=tokens_table,
        domain=domain,
        unit=unit,  # type: ignore[arg-type]
        budget=budget,
        keep_ratio=keep_ratio,
        estimator=estimator,
        projection=projection,
        log=log,
    )


def corr_distill(
    run_dir: str | Path,
    weights: str | Path,
    output: str | Path,
    *,
    domain_column: str | None = None,
    url_column: str | None = None,
    scorer_id: str | None = None,
    max_per_label: int = 20000,
    holdout: float = 0.1,
    epoch: int = 5,
    dim: int = 32,
    seed: int = 0,
    log: Log = _stderr,
) -> dict[str, Any]:
    """Train a fastText include/exclude classifier on the chosen domains; score every document."""
    from datafilter.correlation.distill import distill
    from datafilter.correlation.domains import DomainSpec

    domain = DomainSpec.from_args(domain_column, url_column)
    return distill(
        run_dir,
        weights,
        output,
        domain,
        scorer_id=scorer_id,
        max_per_label=max_per_label,
        holdout=holdout,
        epoch=epoch,
        dim=dim,
        seed=seed,
        log=log,
    )


def corr_run(config: str | Path, *, progress: bool = False, log: Log = _stderr) -> dict[str, Any]:
    """The whole perplexity-correlation flow of a YAML config (``datafilter corr-run``)."""
    from datafilter.correlation.flow import corr_run as run_flow

    return run_flow(config, progress=progress, log=log)
