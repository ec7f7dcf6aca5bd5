"""Driving a stage's shard jobs on the executor: one line per finished shard, failures counted.

A stage builds its jobs (one per shard still to do) and a worker factory, and calls
:func:`drive`; the executor (``runtime.py``) runs them, and a shard's error is data: the other
shards go on. :func:`raise_failures` then ends the stage with one line per failed shard.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from datafilter.errors import DatafilterError, OutputError
from datafilter.runtime import RuntimeOptions, run_tasks

log = logging.getLogger(__name__)


def drive(
    jobs: list[Any],
    factory: Callable[[], Callable[[Any], dict[str, Any]]],
    runtime: RuntimeOptions | None,
    stage: str,
    *,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
) -> dict[str, str]:
    """Run the jobs, log each finished shard, and return the failed ones with their errors.

    An output that cannot be written (read-only, full) stops the stage at once: an OutputError.
    """
    failures: dict[str, str] = {}
    outcomes = run_tasks(
        jobs,
        factory,
        runtime or RuntimeOptions(),
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        stage=stage,
        log=log.info,
    )
    for done, outcome in enumerate(outcomes, start=1):
        rel = outcome.task.shard_rel
        if outcome.error is not None:
            failures[rel] = outcome.error
            log.info(f"{stage}: [{done}/{len(jobs)}] {rel} FAILED: {outcome.error.splitlines()[0]}")
            if outcome.stop:  # the output cannot be written: the other shards would fail too
                outcomes.close()
                raise OutputError(
                    f"{stage}: {outcome.error}; the shards finished before are kept, rerun when "
                    "it can be written again"
                )
        else:
            log.info(f"{stage}: [{done}/{len(jobs)}] {rel} {brief(outcome.result)}")
    return failures


def brief(stats: dict[str, Any]) -> str:
    """A finished shard's counts on one line: ``rows=… scored=… seconds=…``."""
    keys = ("rows", "scored", "read", "kept", "seconds")
    parts = [f"{k}={stats[k]}" for k in keys if k in stats]
    rejected = sum(stats.get("rejected", {}).values())
    return " ".join(parts + ([f"rejected={rejected}"] if rejected else []))


def raise_failures(failures: dict[str, str], total: int, stage: str) -> None:
    """One error naming every failed shard (finished shards are kept; a rerun retries the rest)."""
    if not failures:
        return
    lines = "\n".join(f"  {rel}: {err.splitlines()[0]}" for rel, err in sorted(failures.items()))
    raise DatafilterError(
        f"{stage}: {len(failures)} of {total} shards failed; finished shards are kept and a rerun "
        f"retries only the failed ones:\n{lines}"
    )
