"""A data-prep DAG on Luigi: score -> thresholds -> select, each task one stage of the library.

    python pipelines/dag_luigi.py configs/demo.yaml            # the three tasks, local scheduler
    PYTHONPATH=pipelines luigi --module dag_luigi Select --config configs/demo.yaml \
        --local-scheduler                                       # the same through luigi's CLI

Parameters come from a ``datafilter run`` config: its ``input``, ``run_dir`` and ``score``,
``thresholds``, ``select`` and ``ray`` sections. The config's ``demo_corpus`` and
``train_kenlm`` steps are not tasks here (build the corpus and the model first).

The edge thresholds -> select carries a file: ``Thresholds`` makes the percentile tables and the
plan of the config's ``select:`` section (``RUN_DIR/thresholds/plans/...json``), and ``Select``
applies the plan named in ``Thresholds``' result, never another.

Idempotent per task. Each task writes a small JSON result (the stage's summary and a
fingerprint of what it was computed from) under ``RUN_DIR/_dag/`` when its stage has finished.
Luigi counts a task as done when that file exists and its fingerprint matches the task's
inputs now (its config section, the input shards' sizes and mtimes for ``Score``, the
upstream task's fingerprint otherwise), so running the DAG again after success runs nothing. A task
that failed or was killed half way has no result: running it again (by hand, or by Luigi's
retry) calls the stage again, which skips every shard that has a completion record, redoes the
rest and writes the same bytes; calling a finished stage again is a no-op with the same result.
The plain functions ``score_task``, ``thresholds_task`` and ``select_task`` are the task
bodies, usable from any other orchestrator.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import luigi

from datafilter.config import RunConfig, load_config
from datafilter.io.markers import file_fingerprint
from datafilter.io.shards import discover_shards
from datafilter.stages.run import score_step, select_step, thresholds_step

STATE_DIR = "_dag"  # under the run folder; names starting with '_' are never read as input


def score_task(cfg: RunConfig) -> dict[str, Any]:
    """Score every input shard (finished shards are skipped); the stage's summary."""
    return score_step(cfg)


def thresholds_task(cfg: RunConfig) -> dict[str, Any]:
    """Percentile tables for each ``thresholds.group_by`` entry, and the select section's plan;
    documents per table and the plan's path."""
    summaries, plan = thresholds_step(cfg)
    return {
        "n_docs": {
            group_by or "(global)": summary["n_docs"]
            for group_by, summary in zip(cfg.thresholds.group_by, summaries, strict=True)
        },
        "plan": plan,
    }


def select_task(cfg: RunConfig, plan: str | None = None) -> dict[str, Any]:
    """Apply ``plan`` (the thresholds task's): the filtered shards and the manifest (finished
    shards are skipped); its totals."""
    manifest = select_step(cfg, plan=plan)
    return {
        "totals": manifest["totals"],
        "output": str(Path(cfg.select.output).resolve()),
        "plan": manifest["plan"],
    }


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class _StageTask(luigi.Task):
    """A stage as a Luigi task: done when its result file matches its current inputs."""

    config = luigi.Parameter(description="a `datafilter run` YAML config")
    state_dir = luigi.Parameter(default="", description="result files (default RUN_DIR/_dag)")

    def cfg(self) -> RunConfig:
        return load_config(self.config)

    def output(self) -> luigi.LocalTarget:
        folder = Path(self.state_dir) if self.state_dir else Path(self.cfg().run_dir) / STATE_DIR
        return luigi.LocalTarget(str(folder / f"{self.task_family.lower()}.json"))

    def fingerprint(self) -> str:
        raise NotImplementedError

    def body(self, cfg: RunConfig) -> dict[str, Any]:
        raise NotImplementedError

    def stored(self) -> dict[str, Any] | None:
        """This task's result file, or None if missing or torn."""
        try:
            with self.output().open("r") as f:
                return json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def complete(self) -> bool:
        record = self.stored()
        return record is not None and record["fingerprint"] == self.fingerprint()

    def run(self) -> None:
        fingerprint = self.fingerprint()  # before the stage: what it was asked to compute
        result = self.body(self.cfg())
        with self.output().open("w") as f:  # atomic: a temporary file, then a rename
            json.dump({"fingerprint": fingerprint, "result": result}, f, indent=1, sort_keys=True)

    def upstream(self) -> str:
        """The upstream task's fingerprint, computed afresh: it chains every input before it
        (not its result file, which a retried upstream task may not have written yet)."""
        return self.requires().fingerprint()


class Score(_StageTask):
    """``datafilter score``: the run folder's score shards."""

    def fingerprint(self) -> str:
        cfg = self.cfg()
        shards = [(s.rel, file_fingerprint(s.path)) for s in discover_shards(cfg.input)]
        return _digest(cfg.input, cfg.run_dir, cfg.score.model_dump(mode="json"), shards)

    def body(self, cfg: RunConfig) -> dict[str, Any]:
        return score_task(cfg)


class Thresholds(_StageTask):
    """``datafilter thresholds``: percentile tables, once per ``group_by`` entry."""

    def requires(self) -> Score:
        return Score(config=self.config, state_dir=self.state_dir)

    def fingerprint(self) -> str:
        return _digest(self.cfg().thresholds.model_dump(mode="json"), self.upstream())

    def body(self, cfg: RunConfig) -> dict[str, Any]:
        return thresholds_task(cfg)


class Select(_StageTask):
    """``datafilter select``: the filtered shards and their manifest."""

    def requires(self) -> Thresholds:
        return Thresholds(config=self.config, state_dir=self.state_dir)

    def fingerprint(self) -> str:
        return _digest(self.cfg().select.model_dump(mode="json"), self.upstream())

    def body(self, cfg: RunConfig) -> dict[str, Any]:
        upstream = self.requires().stored()  # the edge: the plan file Thresholds made
        return select_task(cfg, upstream["result"]["plan"] if upstream else None)


def build(config: str | Path, *, state_dir: str = "", workers: int = 1) -> luigi.LuigiStatusCode:
    """Run the DAG up to ``Select`` with Luigi's local scheduler; Luigi's status code."""
    result = luigi.build(
        [Select(config=str(config), state_dir=state_dir)],
        local_scheduler=True,
        workers=workers,
        detailed_summary=True,
        log_level="WARNING",
    )
    return result.status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="a `datafilter run` YAML config")
    parser.add_argument("--state-dir", default="", help="result files (default RUN_DIR/_dag)")
    args = parser.parse_args(argv)
    status = build(args.config, state_dir=args.state_dir)
    print(f"dag: {status.name}: {status.value[1]}", file=sys.stderr)
    ok = (luigi.LuigiStatusCode.SUCCESS, luigi.LuigiStatusCode.SUCCESS_WITH_RETRY)
    return 0 if status in ok else 1


if __name__ == "__main__":
    sys.exit(main())
