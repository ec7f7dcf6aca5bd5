"""Run one function per shard: in this process, on a pool of local processes, or on Ray.

Executors (``RuntimeOptions.executor``):

- ``local``: in this process, one shard after the other; nothing to start.
- ``process``: a pool of worker processes on this machine, one per core (``process_pool.py``);
  each builds the stage's worker once (loading the model), then takes shards as it finishes.
- ``ray``: an actor pool on Ray: the cluster at ``address``/``RAY_ADDRESS``, else a private
  Ray started for this process (never a cluster started earlier with ``ray start``).
- ``auto`` (the default): ``ray`` when an address is given; ``local`` for one shard or less
  than ``local_below`` bytes of input shards (starting workers would cost more than it
  saves); ``ray`` for a stage that needs GPUs (Ray places one worker per GPU); else
  ``process``. The stage logs one line saying which it chose and why.

Every executor yields :class:`TaskOutcome` s as shards finish. A shard's error is data (the
other shards go on); an :class:`OutputError` sets ``stop`` (nothing else could be written). A
worker process or actor that dies has its shard run once more; a second death fails that
shard alone. This is the only module that imports Ray.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from datafilter import logs, ray_reaper
from datafilter.errors import ConfigError, DatafilterError, MissingDependencyError, OutputError
from datafilter.progress import StageProgress

Executor = Literal["auto", "local", "process", "ray"]
EXECUTORS: tuple[str, ...] = ("auto", "local", "process", "ray")
# A worker factory runs once per worker (loading models) and returns the per-task function.
WorkerFactory = Callable[[], Callable[[Any], dict[str, Any]]]
Log = Callable[[str], None]
LOCAL_BELOW = 8_000_000  # auto: input shards under this many bytes run in this process
RAY_WORKER_NICENESS = "RAY_worker_niceness"  # Ray's config override (case-sensitive)


class RuntimeOptions(BaseModel):
    """Where and how wide the score and select stages run (the ``ray:`` section of a run
    config; the CLI's runtime flags)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    executor: Executor = Field(
        "auto",
        description="auto: ray with an address, local (in this process) below --local-below or "
        "for one shard, ray for GPU scorers, else process (a pool of worker processes)",
    )
    address: str | None = Field(
        None, description="Ray cluster to run on (default: RAY_ADDRESS); implies ray"
    )
    num_actors: int | None = Field(
        None, ge=1, description="worker processes or Ray actors (default: one per CPU)"
    )
    local_below: int = Field(
        LOCAL_BELOW,
        ge=0,
        description="auto: input shards smaller than this in total run in this process "
        "(bytes, or a size such as 8MB)",
        json_schema_extra={"metavar": "SIZE"},
    )

    @field_validator("local_below", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        return parse_size(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class TaskOutcome:
    """What one task returned, or the error that stopped it."""

    task: Any
    result: dict[str, Any] | None
    error: str | None
    stop: bool = False  # the output cannot be written: no other task can succeed either


@dataclass(frozen=True)
class Choice:
    """The executor a stage runs on, its worker count, and why."""

    executor: Literal["local", "process", "ray"]
    workers: int
    reason: str

    def line(self, stage: str) -> str:
        where = {
            "local": "in this process",
            "process": f"{self.workers} worker process{'es' if self.workers != 1 else ''}",
            "ray": f"{self.workers} Ray actor{'s' if self.workers != 1 else ''}",
        }[self.executor]
        return f"{stage}: executor {self.executor}, {where} ({self.reason})"


def parse_size(value: str | int | float) -> int:
    """Bytes from ``8MB``, ``512k``, ``1.5G``, ``2MiB`` or a plain number (MB = 10^6 bytes)."""
    if isinstance(value, int | float):
        if value < 0:
            raise ConfigError(f"size {value} is negative")
        return int(value)
    found = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]?)(i?)[bB]?\s*", value)
    if not found:
        raise ConfigError(f"size {value!r}: expected bytes or a number with k, M, G, e.g. 8MB")
    number, unit, binary = found.groups()
    base = 1024 if binary else 1000
    return int(float(number) * base ** " KMGT".index(unit.upper() or " "))


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.3g} MB"


def cpu_count() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _input_bytes(tasks: list[Any], limit: int) -> int | None:
    """Bytes of the tasks' ``input_path`` files, counted until ``limit`` is reached (so a
    large input on object storage is not listed to the end); None where a size is unknown."""
    total = 0
    for task in tasks:
        path = getattr(task, "input_path", None)
        if path is None:
            return None
        try:
            total += path.stat().st_size
        except (OSError, AttributeError):
            return None
        if total >= limit:
            break
    return total


def choose_executor(
    tasks: list[Any], options: RuntimeOptions, num_cpus: float = 1.0, num_gpus: float = 0.0
) -> Choice:
    """Which executor runs ``tasks``, with how many workers, and why (see the module)."""
    address = options.address or os.environ.get("RAY_ADDRESS")
    cpu_slots = max(1, int(cpu_count() / max(num_cpus, 0.001)))
    n_process = max(1, min(len(tasks), options.num_actors or cpu_slots))
    if options.executor not in EXECUTORS:
        raise ConfigError(f"executor {options.executor!r}: expected one of {', '.join(EXECUTORS)}")
    if options.executor == "local":
        return Choice("local", 1, "--executor local")
    if options.executor == "process":
        if num_gpus:
            raise ConfigError(
                "the process executor runs CPU stages only; this scorer needs GPUs: use "
                "--executor ray (or auto, or local)"
            )
        return Choice("process", n_process, "--executor process")
    if options.executor == "ray":
        return Choice("ray", 0, "--executor ray")
    if address:
        return Choice("ray", 0, "auto: a Ray address is given")
    if len(tasks) == 1:
        return Choice("local", 1, "auto: one shard")
    size = _input_bytes(tasks, options.local_below)
    if size is not None and size < options.local_below:
        limit = _mb(options.local_below)
        return Choice("local", 1, f"auto: {_mb(size)} of input, under --local-below {limit}")
    if num_gpus:
        return Choice("ray", 0, "auto: the scorer needs GPUs, which Ray places")
    if n_process == 1:
        return Choice("local", 1, "auto: one core")
    return Choice(
        "process", n_process, f"auto: over --local-below {_mb(options.local_below)} of input"
    )


def run_tasks(
    tasks: list[Any],
    factory: WorkerFactory,
    options: RuntimeOptions,
    *,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    stage: str = "stage",
    log: Log | None = None,
) -> Iterator[TaskOutcome]:
    """Run ``factory()(task)`` for every task, yielding outcomes as they complete; logs which
    executor runs them, and progress (:class:`~datafilter.progress.StageProgress`)."""
    if not tasks:
        return
    say: Log = log or (lambda _message: None)
    choice = choose_executor(tasks, options, num_cpus, num_gpus)
    if choice.executor == "ray":
        outcomes = _run_on_ray(tasks, factory, options, num_cpus, num_gpus, stage, say)
    else:
        if choice.executor == "process":
            outcomes = _run_in_processes(tasks, factory, choice.workers, num_cpus, stage, say)
        else:
            outcomes = _run_here(tasks, factory)
        say(choice.line(stage))
    with StageProgress(stage, len(tasks), say) as progress:
        for outcome in outcomes:
            progress.shard_done(outcome.result)
            yield outcome


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


def _to_outcome(task: Any, raw: dict[str, Any]) -> TaskOutcome:
    if raw["ok"]:
        return TaskOutcome(task, raw["result"], None)
    return TaskOutcome(task, None, raw["error"], raw.get("stop", False))


def _task_name(task: Any, index: int) -> str:
    return str(getattr(task, "shard_rel", f"task {index}"))


def _worker_setup(
    storage_options: dict[str, dict[str, Any]], verbose: bool, env: dict[str, str]
) -> None:
    """First thing in a worker process or actor: the driver's settings."""
    from datafilter.io import storage

    for key, value in env.items():
        os.environ.setdefault(key, value)
    logs.configure(verbose)
    storage.configure(storage_options)  # the driver's object-storage settings


# --------------------------------------------------------------------------- local, process


def _run_here(tasks: list[Any], factory: WorkerFactory) -> Iterator[TaskOutcome]:
    fn = factory()
    for task in tasks:
        yield _to_outcome(task, _guarded(fn, task))


def _run_in_processes(
    tasks: list[Any], factory: WorkerFactory, workers: int, num_cpus: float, stage: str, log: Log
) -> Iterator[TaskOutcome]:
    from datafilter.io import storage
    from datafilter.process_pool import ProcessPool

    # Each worker's math libraries get its share of the cores, as Ray gives its actors.
    threads = str(max(1, int(num_cpus)))
    env = {name: threads for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    setup = partial(_worker_setup, storage.current_options(), logs.is_verbose(), env)

    def on_retry(index: int, how: str) -> None:
        log(f"{stage}: {_task_name(tasks[index], index)}: its worker process died ({how}); "
            "running it again on a new one")  # fmt: skip

    pool = ProcessPool(factory, workers, guarded=_guarded, setup=setup, on_retry=on_retry)
    for index, raw in pool.run(tasks):
        yield _to_outcome(tasks[index], raw)


# --------------------------------------------------------------------------- Ray

# Ray's own log lines: C++ (``[2026-01-01 10:00:00,123 I 123 123] file.cc:1: ...``) and Python
# (``2026-01-01 10:00:00,123\tWARNING file.py:1 -- ...``).
_RAY_LINE = re.compile(
    r"^(\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [DIWEF] \d+ \d+\]"
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+(DEBUG|INFO|WARNING|ERROR)\s)"
)


@contextlib.contextmanager
def _without_ray_lines(active: bool) -> Iterator[None]:
    """While Ray starts, catch what is written to this process's stderr (file descriptor 2:
    Ray's C++ core prints there directly) and pass on every line but Ray's own log lines."""
    if not active:
        yield
        return
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode("utf-8", "replace").splitlines():
                if line.strip() and not _RAY_LINE.match(line):
                    print(line, file=sys.stderr, flush=True)


def ensure_ray(address: str | None, log: Log | None = None) -> Any:
    """Join ``address``/``RAY_ADDRESS`` (logging the cluster joined), else start a private
    local Ray sized to the machine; quiet unless library logs are on (``-v``)."""
    try:
        import ray
    except ImportError:
        raise MissingDependencyError(
            "Ray is needed for --executor ray: pip install 'datafilter[ray]'"
        ) from None
    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS")
    verbose = logs.is_verbose()
    if not verbose:
        # Ray's C++ core prints its errors and warnings on stderr (the ones that matter come
        # back as exceptions); at "fatal" only a crash is printed.
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    settings: dict[str, Any] = {
        "log_to_driver": verbose,
        "logging_level": logging.INFO if verbose else logging.ERROR,
    }
    with _without_ray_lines(not verbose):
        if address:
            ray.init(address=address, **settings)
        else:
            # Ray starts its workers at niceness 15, behind anything else on the machine; in a
            # private Ray started for this job the workers are the job (override: set it).
            os.environ.setdefault(RAY_WORKER_NICENESS, "0")
            ray.init(address="local", include_dashboard=False, **settings)
            ray_reaper.watch()  # no Ray process outlives this driver, even if it is killed
    if address and log:
        alive = [n for n in ray.nodes() if n["Alive"]]
        cpus = sum(n["Resources"].get("CPU", 0) for n in alive)
        gpus = sum(n["Resources"].get("GPU", 0) for n in alive)
        log(f"ray: joined the cluster at {address}: {len(alive)} node(s), {cpus:g} CPUs, "
            f"{gpus:g} GPUs")  # fmt: skip
    return ray


class _ShardActor:
    """A Ray actor: builds the stage's worker once, then runs one task per call."""

    def __init__(self, factory: WorkerFactory, setup: Callable[[], None]):
        setup()
        self._fn = factory()

    def run(self, task: Any) -> dict[str, Any]:
        return _guarded(self._fn, task)


def _ray_error(exc: BaseException) -> str:
    """The line of a Ray error that names the cause (Ray's messages wrap a traceback)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else "")


def _run_on_ray(
    tasks: list[Any],
    factory: WorkerFactory,
    options: RuntimeOptions,
    num_cpus: float,
    num_gpus: float,
    stage: str,
    log: Log,
) -> Iterator[TaskOutcome]:
    from datafilter.io import storage

    ray = ensure_ray(options.address, log)
    resources = ray.cluster_resources()
    if num_gpus:
        slots = resources.get("GPU", 0) / num_gpus
    else:
        slots = resources.get("CPU", 1) / max(num_cpus, 0.001)
    size = max(1, min(len(tasks), options.num_actors or int(slots) or 1))
    log(Choice("ray", size, _why_ray(options)).line(stage))
    setup = partial(_worker_setup, storage.current_options(), logs.is_verbose(), {})
    # An actor that dies (killed, out of memory, node lost) is restarted; the call it was
    # running is retried once on it, then fails. Its shard's temporary file is removed by the
    # stage; nothing half-written is ever kept under a shard's name.
    actor_class = ray.remote(_ShardActor).options(
        num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=-1, max_task_retries=1
    )
    actors = [actor_class.remote(factory, setup) for _ in range(size)]
    queue = deque(range(len(tasks)))
    running: dict[Any, tuple[int, Any]] = {}

    def submit(actor: Any) -> None:
        if queue:
            index = queue.popleft()
            running[actor.run.remote(tasks[index])] = (index, actor)

    try:
        for actor in actors:
            submit(actor)
        while running:
            [ref], _ = ray.wait(list(running), num_returns=1)
            index, actor = running.pop(ref)
            try:
                raw = ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                if exc.actor_init_failed:  # e.g. a model that does not load: no shard can run
                    raise DatafilterError(f"the Ray stage failed: {_ray_error(exc)}") from exc
                raw = {"ok": False, "error": f"its Ray actor died twice: {_ray_error(exc)}"}
            except ray.exceptions.RayError as exc:
                raise DatafilterError(f"the Ray stage failed: {_ray_error(exc)}") from exc
            submit(actor)
            yield _to_outcome(tasks[index], raw)
    finally:
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)


def _why_ray(options: RuntimeOptions) -> str:
    if options.executor == "ray":
        return "--executor ray"
    if options.address or os.environ.get("RAY_ADDRESS"):
        return "auto: a Ray address is given"
    return "auto: the scorer needs GPUs, which Ray places"
