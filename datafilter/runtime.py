"""The only module that talks to Ray: run one function per shard on an actor pool."""

from __future__ import annotations

import json
import logging
import os
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from datafilter import ray_reaper
from datafilter.errors import DatafilterError, MissingDependencyError, OutputError

Executor = Literal["ray", "local"]
# A worker factory runs once per actor (loading models) and returns the per-task function.
WorkerFactory = Callable[[], Callable[[Any], dict[str, Any]]]


@dataclass(frozen=True)
class RuntimeOptions:
    """Where and how wide to run: Ray address (or a local Ray), actors, and progress display."""

    executor: Executor = "ray"
    address: str | None = None
    num_actors: int | None = None
    progress: bool = True


@dataclass(frozen=True)
class TaskOutcome:
    """What one task returned, or the error that stopped it."""

    task: Any
    result: dict[str, Any] | None
    error: str | None
    stop: bool = False  # the output cannot be written: no other task can succeed either


def _guarded(fn: Callable[[Any], dict[str, Any]], task: Any) -> dict[str, Any]:
    """Run one task; an error becomes data so the other shards keep going."""
    try:
        return {"ok": True, "result": fn(task)}
    except OutputError as exc:
        return {"ok": False, "error": str(exc), "stop": True}
    except DatafilterError as exc:
        return {"ok": False, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - any failure of one shard must not lose the others
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return {"ok": False, "error": f"{detail}\n{traceback.format_exc(limit=-3)}"}


class _ShardActor:
    """Ray Data callable class: builds the worker once, then handles one task per row."""

    def __init__(self, factory: WorkerFactory, storage_options: dict[str, dict[str, Any]]):
        from datafilter.io import storage

        storage.configure(storage_options)  # the driver's object-storage settings
        self._fn = factory()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import pickle

        import numpy as np

        outcomes = [_guarded(self._fn, pickle.loads(blob)) for blob in batch["task"]]
        return {
            "index": np.asarray(batch["index"]),
            "outcome": np.array([json.dumps(o) for o in outcomes], dtype=object),
        }


def run_tasks(
    tasks: list[Any],
    factory: WorkerFactory,
    options: RuntimeOptions,
    *,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
) -> Iterator[TaskOutcome]:
    """Run ``factory()(task)`` for every task, yielding outcomes as they complete."""
    if not tasks:
        return
    if options.executor == "local":
        fn = factory()
        for task in tasks:
            yield _to_outcome(task, _guarded(fn, task))
        return
    yield from _run_on_ray(tasks, factory, options, num_cpus, num_gpus)


def _to_outcome(task: Any, raw: dict[str, Any]) -> TaskOutcome:
    if raw["ok"]:
        return TaskOutcome(task, raw["result"], None)
    return TaskOutcome(task, None, raw["error"], raw.get("stop", False))


RAY_WORKER_NICENESS = "RAY_worker_niceness"  # Ray's config override (case-sensitive)


def ensure_ray(address: str | None) -> Any:
    """Join ``address``/``RAY_ADDRESS`` if given, else start a local Ray sized to the machine."""
    try:
        import ray
    except ImportError:
        raise MissingDependencyError(
            "Ray is needed to run stages: pip install 'datafilter[ray]'"
        ) from None
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            # Ray starts its workers at niceness 15, behind anything else on the machine; in a
            # local Ray started for this job the workers are the job (override: set it).
            os.environ.setdefault(RAY_WORKER_NICENESS, "0")
            ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
            ray_reaper.watch()  # no Ray process outlives this driver, even if it is killed
    return ray


def _run_on_ray(
    tasks: list[Any],
    factory: WorkerFactory,
    options: RuntimeOptions,
    num_cpus: float,
    num_gpus: float,
) -> Iterator[TaskOutcome]:
    import pickle

    from datafilter.io import storage

    ray = ensure_ray(options.address)
    from ray.data import DataContext

    logging.getLogger("ray.data").setLevel(logging.WARNING)

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = options.progress
    ctx.verbose_progress = False
    if num_gpus:
        slots = ray.cluster_resources().get("GPU", 0) / num_gpus
    else:
        slots = ray.cluster_resources().get("CPU", 1) / max(num_cpus, 0.001)
    actors = max(1, min(len(tasks), options.num_actors or int(slots) or 1))
    items = [{"index": i, "task": pickle.dumps(t)} for i, t in enumerate(tasks)]
    ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        _ShardActor,
        fn_constructor_args=(factory, storage.current_options()),
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        # An actor process that dies (killed, out of memory, node lost) is restarted and its
        # shard redone from the start: Ray Data's defaults for actor pools (max_restarts=-1,
        # max_task_retries=-1 in 2.60; map_batches' remote args are deprecated, so not set here).
        # A shard writes under a temporary name, so nothing half-written is ever kept.
    )
    try:
        for row in ds.iter_rows():
            yield _to_outcome(tasks[int(row["index"])], json.loads(row["outcome"]))
    except ray.exceptions.RayError as exc:  # e.g. an actor whose model failed to load
        cause = str(exc).strip().splitlines()
        detail = next(
            (line for line in reversed(cause) if "Error" in line), cause[-1] if cause else ""
        )
        raise DatafilterError(f"the Ray stage failed: {detail.strip()}") from exc
