"""The evaluate stage: which selection is best, measured by training small proxy models on each.

``datafilter evaluate --run RUN`` takes candidate selections (selector + options, optionally the
scores of another scorer id), always adds a random control (a seeded random sample of every
scored document), and for each one:

1. writes the selection with the normal stages: the thresholds stage's plan, then select, into
   ``RUN/evaluate/<name>/selection/`` (a finished selection is reused by its completion records);
2. trains a proxy model per seed (the ``train-reference`` presets: ``tiny`` on a CPU, ``125m``
   on a GPU) on exactly ``tokens`` tokens of it (default: the smallest candidate's tokens), the
   documents drawn in a seeded order, for the same number of steps;
3. measures each model's loss on every target set (nats per token, bits per byte).

Targets are Parquet files with a text column; by default a held-out random sample of the pool
(``RUN/evaluate/targets/heldout.parquet``). Every document whose text hash is a target's is
removed from every training set and from the tokenizer's sample.

Each (candidate, seed) runs as a task on the executor (Ray with one GPU each when there are
GPUs) and ends with a completion record ``RUN/evaluate/<name>/seed-<s>.json``; a rerun (after a
kill too) trains only what has no record for the same settings. The result,
``RUN/evaluate/table.json`` and ``table.parquet``, compares every candidate with the control
(:mod:`datafilter.proxy.compare`) and says which selection to keep, or that the differences are
within noise.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, field_validator

from datafilter.errors import ConfigError, DatafilterError
from datafilter.io.atomic import dumps_json, write_json, write_table
from datafilter.io.layout import STATE_DIR, RunLayout
from datafilter.io.lock import run_lock
from datafilter.io.record import require_record
from datafilter.io.storage import AnyPath
from datafilter.pause_points import pause_point
from datafilter.proxy.compare import compare, recommend
from datafilter.proxy.texts import (
    budget_rows,
    count_tokens,
    encode,
    enough,
    heldout_sample,
    order_key,
    target_table,
    training_texts,
)
from datafilter.reference.presets import PRESETS
from datafilter.runtime import RuntimeOptions, run_tasks

log = logging.getLogger(__name__)

EVALUATE_DIR = "evaluate"
CONTROL = "random"
HELDOUT = "heldout"
# The control: every scored document (its plan and selection are made like any candidate's);
# training then draws a seeded random sample of the same number of tokens from it.
CONTROL_SELECTOR = {"selector": "perplexity_band", "options": {"criterion": "low", "keep": 1.0}}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]*$")


class Candidate(BaseModel):
    """A selection to evaluate: a selector and its options (and which scores it reads)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="folder name (default: from selector and options)")
    selector: str = Field("perplexity_band", description="registered selector")
    options: dict[str, Any] = Field({}, description="the selector's options")
    scorer_id: str | None = Field(None, description="scores to use (default: the run's only one)")
    group_by: str | None = Field(None, description="select within each value of this column")

    @property
    def label(self) -> str:
        """The name, or ``<selector>-<key>=<value>-...`` of the options given."""
        if self.name:
            return self.name
        parts = [self.selector.replace("perplexity_", "")]
        parts += [f"{k}={v}" for k, v in sorted(self.options.items())]
        if self.scorer_id:
            parts.append(f"scorer={self.scorer_id}")
        if self.group_by:
            parts.append(f"by={self.group_by}")
        return re.sub(r"[^A-Za-z0-9._=-]", "_", "-".join(parts))


def parse_candidate(text: str) -> dict[str, Any]:
    """``[NAME=]SELECTOR[:KEY=VALUE,...]`` (values read as YAML scalars) as a candidate;
    ``scorer_id=`` and ``group_by=`` are the candidate's, every other key the selector's."""
    import yaml

    head, _, rest = text.partition(":")
    name, eq, selector = head.partition("=")
    if not eq:
        name, selector = "", head
    options = {}
    for pair in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"candidate {text!r}: expected KEY=VALUE, got {pair!r}")
        try:
            options[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"candidate {text!r}: {value!r} is not a YAML value") from None
    out: dict[str, Any] = {"selector": selector.strip(), "options": options}
    for key in ("scorer_id", "group_by"):  # the candidate's own fields, not the selector's
        if key in options:
            out[key] = str(options.pop(key))
    if name:
        out["name"] = name.strip()
    return out


class EvaluateOptions(BaseModel):
    """``datafilter evaluate``, and the ``evaluate:`` section of a run config."""

    model_config = ConfigDict(extra="forbid")

    candidates: list[Candidate] = Field(
        description="selections to compare with a random control of the same size: "
        "[NAME=]SELECTOR[:KEY=VALUE,...], e.g. low=perplexity_band:criterion=low,keep=0.5 "
        "(scorer_id= and group_by= are the candidate's: which scores, which groups)",
        json_schema_extra={"flag": "--candidate", "metavar": "CANDIDATE"},
    )
    targets: dict[str, str] = Field(
        {},
        description="target sets NAME=PATH (Parquet or JSONL shards with the text column); "
        "default: a held-out sample of the pool",
        json_schema_extra={"flag": "--target", "metavar": "NAME=PATH"},
    )
    tokens: int | None = Field(
        None, ge=1, description="training tokens per model (default: the smallest candidate's)"
    )
    steps: int | None = Field(
        None, ge=1, description="optimiser steps per model (default: one pass over the tokens)"
    )
    seeds: int = Field(3, ge=1, description="proxy models per candidate (seeds 0..N-1)")
    preset: str = Field(
        "tiny",
        description="proxy model size: tiny (CPU) or 125m (GPU)",
        json_schema_extra={"choices": sorted(PRESETS)},
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where to train")
    heldout: bool | None = Field(
        None,
        description="measure on a held-out sample of the pool too (default: only when no "
        "targets are given)",
    )
    holdout: float = Field(
        0.05, gt=0, le=0.5, description="share of the pool held out as the default target"
    )
    holdout_max_docs: int = Field(500, ge=1, description="at most this many held-out documents")
    target_max_docs: int = Field(2000, ge=1, description="at most this many documents per target")
    target_text_column: str = Field("text", description="the target files' text column")
    confidence: float = Field(0.95, gt=0, lt=1, description="level of the intervals")

    @field_validator("candidates", mode="before")
    @classmethod
    def _candidate_strings(cls, value: Any) -> Any:
        if isinstance(value, str | dict):
            value = [value]
        if isinstance(value, list):
            return [parse_candidate(v) if isinstance(v, str) else v for v in value]
        return value


@dataclass(frozen=True)
class ProxyTask:
    """One proxy model to train: a candidate's selection and a seed."""

    shard_rel: str  # "<candidate>/seed-<s>": the name the executor's lines give
    candidate: str
    seed: int
    selection: str
    record: str
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProxySettings:
    """What every task shares."""

    preset: str
    tokens: int
    steps: int
    device: str
    text_column: str
    tokenizer: str
    targets: dict[str, str]  # name -> Parquet file (text, text_hash)
    excluded: frozenset[int]


def run_evaluate(
    run_dir: str | AnyPath, opts: EvaluateOptions, runtime: RuntimeOptions | None = None
) -> dict[str, Any]:
    """Write each candidate's selection, train ``seeds`` proxy models on equal tokens of each
    and of the random control, and write the comparison table (see the module docstring)."""
    import torch

    layout = RunLayout.at(run_dir)
    record = require_record(layout)
    if opts.preset not in PRESETS:
        raise ConfigError(f"unknown preset {opts.preset!r}; choose from {sorted(PRESETS)}")
    if not opts.candidates:
        raise ConfigError("evaluate needs at least one candidate (--candidate SELECTOR:K=V,...)")
    candidates = _with_control(opts.candidates)
    root = layout.root / EVALUATE_DIR
    device = opts.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    with run_lock(root / STATE_DIR / "lock"):
        targets = _write_targets(layout, record.input, record.text_column, opts)
        excluded = frozenset(h for t in targets.values() for h in _hashes(t))
        selections = {c.label: _select(layout, c, runtime) for c in candidates}
        tokenizer_dir, tokenizer = _tokenizer(
            root, selections[CONTROL][0], record.text_column, excluded, opts.preset
        )
        sizes = {
            name: _size(path, record.text_column, excluded, tokenizer, opts.tokens)
            for name, (path, _) in selections.items()
        }
        for name, size in sizes.items():
            tokens = f"{size['tokens']} tokens"
            if size.get("counted_up_to"):
                tokens = f"at least {size['counted_up_to']} tokens"
            log.info(
                f"evaluate: {name}: {size['documents']} documents, {tokens} "
                f"({size['excluded']} target documents left out)"
            )
        budget = _budget(opts.tokens, sizes)
        p = PRESETS[opts.preset]
        steps = opts.steps or max(1, budget // p.tokens_per_step)
        settings = ProxySettings(
            preset=opts.preset,
            tokens=budget,
            steps=steps,
            device=device,
            text_column=record.text_column,
            tokenizer=str(tokenizer_dir),
            targets={n: str(path) for n, path in targets.items()},
            excluded=excluded,
        )
        shared = {
            "preset": opts.preset,
            "tokens": budget,
            "steps": steps,
            "tokenizer": _digest_file(tokenizer_dir / "tokenizer.json"),
            "targets": {n: _digest_file(path) for n, path in targets.items()},
        }
        tasks, todo = [], []
        for name, (path, digest) in selections.items():
            for seed in range(opts.seeds):
                context = {**shared, "candidate": name, "seed": seed, "selection": digest}
                task = ProxyTask(
                    shard_rel=f"{name}/seed-{seed}",
                    candidate=name,
                    seed=seed,
                    selection=str(path),
                    record=str(root / name / f"seed-{seed}.json"),
                    context=context,
                )
                tasks.append(task)
                if _record_of(task) is None:
                    todo.append(task)
        log.info(
            f"evaluate: {len(todo)} of {len(tasks)} proxy models to train "
            f"({len(tasks) - len(todo)} done): preset {opts.preset}, {budget} tokens, "
            f"{steps} steps each, on {device}"
        )
        _train_all(todo, settings, runtime)
        results = {t.shard_rel: _record_of(t) for t in tasks}
        table = _table(candidates, selections, sizes, settings, opts, results)
        write_json(root / "table.json", table)
        write_table(root / "table.parquet", pa.Table.from_pylist(table["rows"]))
    for rec in table["recommendations"]:
        log.info(f"evaluate: {rec['statement']}")
    log.info(f"evaluate: table -> {root / 'table.json'}")
    return table


def _with_control(given: list[Candidate]) -> list[Candidate]:
    """The candidates (names checked, unique) and the random control last."""
    out, seen = [], set()
    for c in given:
        name = c.label
        if not _NAME.match(name):
            raise ConfigError(f"candidate name {name!r}: use letters, digits, '.', '_', '=', '-'")
        if name == CONTROL:
            raise ConfigError(f"{CONTROL!r} is the random control's name; name the candidate else")
        if name in seen:
            raise ConfigError(f"two candidates are named {name!r}; give them names (NAME=...)")
        seen.add(name)
        out.append(c)
    # The control keeps every scored document; its score id decides only which are rejected:
    # the candidates' (the first one's where they differ), else the run's only one.
    ids = [c.scorer_id for c in out if c.scorer_id is not None]
    control = Candidate(name=CONTROL, scorer_id=ids[0] if ids else None, **CONTROL_SELECTOR)
    return [*out, control]


def _write_targets(
    layout: RunLayout, pool: str, text_column: str, opts: EvaluateOptions
) -> dict[str, AnyPath]:
    """The target sets as ``RUN/evaluate/targets/<name>.parquet`` (text, text_hash)."""
    folder = layout.root / EVALUATE_DIR / "targets"
    tables = {
        n: target_table(p, opts.target_text_column, opts.target_max_docs)
        for n, p in opts.targets.items()
    }
    if opts.heldout or (opts.heldout is None and not opts.targets):
        if HELDOUT in tables:
            raise ConfigError(f"target name {HELDOUT!r} is the held-out sample's; use another")
        tables[HELDOUT] = heldout_sample(
            pool, text_column, opts.holdout, opts.holdout_max_docs, 0
        )
    out = {}
    for name, table in tables.items():
        if not _NAME.match(name):
            raise ConfigError(f"target name {name!r}: use letters, digits, '.', '_', '=', '-'")
        path = folder / f"{name}.parquet"
        if not (path.exists() and pq.read_table(path).equals(table)):
            write_table(path, table)
        out[name] = path
        log.info(f"evaluate: target {name}: {table.num_rows} documents -> {path}")
    return out


def _hashes(path: AnyPath) -> list[int]:
    return pq.read_table(path, columns=["text_hash"]).column(0).to_pylist()


def _select(
    layout: RunLayout, c: Candidate, runtime: RuntimeOptions | None
) -> tuple[AnyPath, str]:
    """The candidate's plan (thresholds stage) and selection (select stage), reused when done;
    the selection folder and a digest of what it holds."""
    from datafilter.stages.select import SelectOptions, run_select
    from datafilter.stages.thresholds import ThresholdsOptions, run_thresholds

    request = {
        "selector": c.selector,
        "options": c.options,
        "scorer_id": c.scorer_id,
        "group_by": c.group_by,
    }
    run_thresholds(layout.root, ThresholdsOptions(**request, table=False))
    out = layout.root / EVALUATE_DIR / c.label / "selection"
    manifest = run_select(layout.root, SelectOptions(output=str(out), **request), runtime)
    digest = hashlib.sha256(
        dumps_json({"plan": manifest.get("plan"), "totals": manifest["totals"]}).encode()
    ).hexdigest()
    return out, digest


def _tokenizer(root: AnyPath, control: AnyPath, text_column: str, excluded, preset: str):
    """The BPE tokenizer every proxy model shares, trained once on the control's documents
    (every scored document) minus the targets; reused while its sample is the same."""
    from transformers import PreTrainedTokenizerFast

    from datafilter.reference.crossfit import sample_key
    from datafilter.reference.data import Doc, train_tokenizer

    p = PRESETS[preset]
    folder = root / "tokenizer"
    texts, hashes, _ = training_texts(control, text_column, set(excluded))
    meta = {
        "vocab": p.vocab,
        "context": p.context,
        "sample": hashlib.sha256(dumps_json(sorted(hashes)).encode()).hexdigest(),
    }
    meta_path = folder / "sample.json"
    if meta_path.exists() and json.loads(meta_path.read_text()) == meta:
        return folder, PreTrainedTokenizerFast.from_pretrained(str(folder))
    docs = [Doc(h, sample_key(t, 0), None, t) for t, h in zip(texts, hashes, strict=True)]
    tokenizer = train_tokenizer(docs, p.vocab, p.context)
    tokenizer.save_pretrained(str(folder))
    write_json(meta_path, meta)
    log.info(f"evaluate: BPE tokenizer of {len(tokenizer)} tokens on {len(docs)} documents")
    return folder, tokenizer


def _size(
    path: AnyPath, text_column: str, excluded, tokenizer, cap: int | None
) -> dict[str, int]:
    """Documents and tokens of a selection without the targets (tokens counted up to ``cap``
    only, when given: enough to know the selection holds the budget)."""
    texts, _, dropped = training_texts(path, text_column, set(excluded))
    n_docs = len(texts)
    if cap is not None:
        texts = texts[: enough(tokenizer, texts, cap)]
    size = {"documents": n_docs, "tokens": count_tokens(encode(tokenizer, texts))}
    return {**size, "excluded": dropped, **({"counted_up_to": cap} if cap else {})}


def _budget(tokens: int | None, sizes: dict[str, dict[str, int]]) -> int:
    """The tokens every proxy model trains on: ``tokens``, else the smallest candidate's."""
    smallest = min(sizes, key=lambda n: sizes[n]["tokens"])
    if tokens is None:
        if sizes[smallest]["tokens"] == 0:
            raise ConfigError(f"candidate {smallest!r} selected no documents to train on")
        return sizes[smallest]["tokens"]
    short = [n for n, s in sizes.items() if s["tokens"] < tokens]
    if short:
        have = ", ".join(f"{n} ({sizes[n]['tokens']})" for n in short)
        raise ConfigError(
            f"--tokens {tokens} is more than these candidates hold: {have}; lower --tokens"
        )
    return tokens


def _digest_file(path: AnyPath) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _record_of(task: ProxyTask) -> dict[str, Any] | None:
    """The task's completion record when it was made with the same settings, else None."""
    from datafilter.io.storage import location

    path = location(task.record)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("context") != task.context:
        return None
    return data


def _train_all(tasks: list[ProxyTask], settings: ProxySettings, runtime) -> None:
    """Run the tasks on the executor (one GPU each on a GPU); an error names every failed one
    (finished ones keep their records)."""
    if not tasks:
        return
    failures = {}
    outcomes = run_tasks(
        tasks,
        partial(_proxy_worker, settings),
        runtime or RuntimeOptions(),
        num_cpus=1.0,
        num_gpus=1.0 if settings.device == "cuda" else 0.0,
        stage="evaluate",
        log=log.info,
    )
    for done, outcome in enumerate(outcomes, start=1):
        name = outcome.task.shard_rel
        if outcome.error is not None:
            failures[name] = outcome.error
            log.info(f"evaluate: [{done}/{len(tasks)}] {name} FAILED: {outcome.error}")
            continue
        losses = ", ".join(
            f"{t} {v['bits_per_byte']:.4f} bits/byte" for t, v in outcome.result["losses"].items()
        )
        log.info(f"evaluate: [{done}/{len(tasks)}] {name}: {losses}")
    if failures:
        lines = "\n".join(f"  {n}: {e.splitlines()[0]}" for n, e in sorted(failures.items()))
        raise DatafilterError(
            f"evaluate: {len(failures)} of {len(tasks)} proxy models failed; finished ones are "
            f"kept and a rerun trains only the rest:\n{lines}"
        )


def _proxy_worker(settings: ProxySettings):
    """The per-process worker: the shared tokenizer and targets loaded once."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(settings.tokenizer)
    targets = {}
    for name, path in settings.targets.items():
        texts = pq.read_table(path, columns=["text"]).column(0).to_pylist()
        targets[name] = (texts, encode(tokenizer, texts))
    return partial(train_and_measure, settings=settings, tokenizer=tokenizer, targets=targets)


def train_and_measure(
    task: ProxyTask, settings: ProxySettings, tokenizer, targets: dict[str, tuple[list, list]]
) -> dict[str, Any]:
    """Train one proxy model on ``settings.tokens`` tokens of the task's selection (targets
    left out), measure it on every target, write the hashes of the documents it trained on and
    then its completion record; the record."""
    from datafilter.io.storage import location
    from datafilter.proxy.train import target_loss, train_proxy

    started = time.perf_counter()
    p = PRESETS[settings.preset]
    texts, hashes, dropped = training_texts(
        task.selection, settings.text_column, set(settings.excluded)
    )
    order = sorted(range(len(texts)), key=lambda i: order_key(texts[i], task.candidate, task.seed))
    first = enough(tokenizer, [texts[i] for i in order], settings.tokens)
    ids = encode(tokenizer, [texts[i] for i in order[:first]])
    rows, used = budget_rows(
        ids, range(first), settings.tokens, tokenizer.bos_token_id, tokenizer.eos_token_id,
        p.context,
    )  # fmt: skip
    used = [order[i] for i in used]
    model = train_proxy(rows, p, tokenizer, settings.steps, task.seed, settings.device)
    losses = {
        name: target_loss(model, tokenizer, t_texts, t_ids, p.context, settings.device)
        for name, (t_texts, t_ids) in targets.items()
    }
    pause_point("evaluate:task")  # test-only (datafilter/pause_points.py)
    record_path = location(task.record)
    trained = record_path.with_name(record_path.name.replace(".json", ".trained.parquet"))
    write_table(
        trained, pa.table({"text_hash": pa.array(sorted(hashes[i] for i in used), pa.uint64())})
    )
    result = {
        "context": task.context,
        "candidate": task.candidate,
        "seed": task.seed,
        "documents": len(used),
        "tokens_trained": settings.steps * p.tokens_per_step,
        "distinct_tokens": int(rows.size),
        "excluded_target_documents": dropped,
        "losses": losses,
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_json(record_path, result)
    return result


def _table(candidates, selections, sizes, settings: ProxySettings, opts, results) -> dict:
    """The comparison (rows per candidate and target) and the recommendation per target."""
    losses = {
        c.label: {s: results[f"{c.label}/seed-{s}"]["losses"] for s in range(opts.seeds)}
        for c in candidates
    }
    names = list(settings.targets)
    rows = compare(losses, CONTROL, names, opts.confidence)
    for row in rows:
        c = next(c for c in candidates if c.label == row["candidate"])
        row["selector"] = c.selector
        row["options"] = json.dumps(c.options, sort_keys=True)
        row["scorer_id"] = c.scorer_id
        row["documents"] = sizes[c.label]["documents"]
        row["tokens_available"] = sizes[c.label]["tokens"]
    return {
        "control": CONTROL,
        "control_is": "a seeded random sample of every scored document, the same tokens",
        "preset": settings.preset,
        "device": settings.device,
        "tokens": settings.tokens,
        "steps": settings.steps,
        "seeds": opts.seeds,
        "confidence": opts.confidence,
        "targets": names,
        "candidates": {
            c.label: {
                "selector": c.selector,
                "options": c.options,
                "scorer_id": c.scorer_id,
                "group_by": c.group_by,
                "selection": str(selections[c.label][0]),
                **sizes[c.label],
            }
            for c in candidates
        },
        "rows": rows,
        "losses": {n: {str(s): v for s, v in by.items()} for n, by in losses.items()},
        "recommendations": [
            recommend(rows, losses, CONTROL, t, opts.confidence) for t in names
        ],
    }
