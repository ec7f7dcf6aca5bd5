"""A pool of local worker processes for one stage: one per core, the worker built once each.

Each worker is a fresh interpreter (``python -c``, not ``multiprocessing``'s spawn, so the
caller's main module is never run again in it): it runs the stage's worker factory once
(loading the model), then one task at a time, sent by the driver over a pipe. The driver hands
the next task to whichever worker is free and yields results as they come.

- A worker that dies (killed, out of memory) loses only its task: that task is run again once on
  a new worker; if that worker dies too, the task fails with an error saying how the process
  ended. Results already received are kept; the other workers go on.
- A worker that fails to build (say, a model that does not load) stops the stage with that
  error, as the in-process executor would.
- No worker outlives the driver: workers ignore Ctrl-C (the driver stops them), are killed
  when the stage ends or is abandoned, and on Linux die with the driver even when it is killed
  (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, Pipe, wait
from typing import Any

from datafilter.errors import DatafilterError

# The per-task wrapper the worker applies: ``(fn, task) -> raw outcome`` (``runtime._guarded``).
Guarded = Callable[[Callable[[Any], dict[str, Any]], Any], dict[str, Any]]


def _die_with_parent(parent_pid: int) -> None:
    """Linux: have the kernel SIGKILL this process when its parent dies."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)


@contextlib.contextmanager
def _woken_by_signals() -> Iterator[socket.socket | None]:
    """A socket that becomes readable when a signal arrives, whichever thread the kernel gave
    it to: waiting on it too, the driver's main thread wakes up and runs the signal's handler
    (Ctrl-C's KeyboardInterrupt) instead of sleeping on while every worker is busy. None
    outside the main thread (only it may set the wakeup file descriptor)."""
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    read, write = socket.socketpair()
    read.setblocking(False)
    write.setblocking(False)
    previous = signal.set_wakeup_fd(write.fileno(), warn_on_full_buffer=False)
    try:
        yield read
    finally:
        with contextlib.suppress(ValueError):  # closed from another thread: leave it set
            signal.set_wakeup_fd(previous)
        read.close()
        write.close()


def worker_main(fd: int) -> None:
    """A worker process (``python -c``): build the task function once, then run tasks until
    the driver is gone (it kills its workers when the stage ends)."""
    conn = Connection(fd)
    sys_path, parent_pid = conn.recv()
    _die_with_parent(parent_pid)
    sys.path[:] = sys_path  # the driver's, so the factory's modules import here too
    try:
        factory, guarded, setup = pickle.loads(conn.recv_bytes())
        setup()
        fn = factory()
    except BaseException as exc:  # noqa: BLE001 - reported to the driver, which raises it
        conn.send(("failed", _portable(exc)))
        return
    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the driver is gone
            return
        index, task = message
        conn.send(("done", index, guarded(fn, task)))


def _portable(exc: BaseException) -> DatafilterError:
    """``exc`` as an error the driver can unpickle and show in one line."""
    if isinstance(exc, DatafilterError):
        try:
            pickle.loads(pickle.dumps(exc))
            return exc
        except Exception:  # noqa: BLE001 - an error type whose arguments do not round-trip
            pass
    return DatafilterError(f"{type(exc).__name__}: {exc}")


def describe_exit(returncode: int | None) -> str:
    """How a process ended: ``killed by SIGKILL (out of memory, or killed)``, ``exit code 3``."""
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (out of memory, or killed)" if -returncode == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exit code {returncode}"


@dataclass
class _Worker:
    process: subprocess.Popen
    conn: Connection
    ready: bool = False
    ended: bool = False  # its end of the pipe is closed: it has exited (or is exiting)
    task: int | None = None  # the index of the task it runs


class ProcessPool:
    """``size`` worker processes running ``factory()`` once each (see the module)."""

    def __init__(
        self,
        factory: Callable[[], Callable[[Any], dict[str, Any]]],
        size: int,
        *,
        guarded: Guarded,
        setup: Callable[[], None],
        on_retry: Callable[[int, str], None] = lambda _index, _how: None,
    ):
        self._payload = pickle.dumps((factory, guarded, setup))
        self._size = size
        self._on_retry = on_retry
        self._workers: list[_Worker] = []

    def _start_worker(self) -> None:
        mine, theirs = Pipe(duplex=True)
        fd = theirs.fileno()
        # Ctrl-C reaches the driver, which stops the workers: they ignore it from the start.
        code = (
            "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
            f"from datafilter.process_pool import worker_main; worker_main({fd})"
        )
        process = subprocess.Popen([sys.executable, "-c", code], pass_fds=[fd])
        theirs.close()
        mine.send((sys.path, os.getpid()))
        mine.send_bytes(self._payload)
        self._workers.append(_Worker(process, mine))

    def run(self, tasks: list[Any], retries: int = 1) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yield ``(index, raw outcome)`` for every task, in the order they finish."""
        with _woken_by_signals() as wake:
            yield from self._run(tasks, retries, wake)

    def _run(
        self, tasks: list[Any], retries: int, wake: socket.socket | None
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        queue = deque(range(len(tasks)))
        deaths: dict[int, int] = {}
        try:
            for _ in range(min(self._size, len(tasks))):
                self._start_worker()
            remaining = len(tasks)
            while remaining:
                for worker in self._workers:
                    if worker.ready and worker.task is None and queue:
                        worker.task = queue.popleft()
                        worker.conn.send((worker.task, tasks[worker.task]))
                ready = wait([w.conn for w in self._workers] + ([wake] if wake else []))
                if wake is not None and wake in ready:
                    with contextlib.suppress(OSError):
                        wake.recv(64)  # the signal's own handler runs now, in this thread
                for worker in list(self._workers):
                    for index, raw in self._collect(worker):
                        remaining -= 1
                        yield index, raw
                    if not worker.ended:
                        continue
                    # It has exited, and everything it sent before has been read.
                    self._workers.remove(worker)
                    worker.conn.close()
                    how = describe_exit(worker.process.wait())
                    if not worker.ready:
                        raise DatafilterError(f"a worker process died while starting ({how})")
                    if worker.task is not None:
                        index = worker.task
                        deaths[index] = deaths.get(index, 0) + 1
                        if deaths[index] <= retries:
                            self._on_retry(index, how)
                            queue.appendleft(index)
                        else:
                            remaining -= 1
                            error = (
                                f"the worker process running it died ({how}), "
                                f"{deaths[index]} times"
                            )
                            yield index, {"ok": False, "error": error}
                    if queue and len(self._workers) < self._size:
                        self._start_worker()
        finally:
            self.close()

    def _collect(self, worker: _Worker) -> Iterator[tuple[int, dict[str, Any]]]:
        """What ``worker`` has sent; raises the error of a worker that failed to build."""
        while not worker.ended:
            try:
                if not worker.conn.poll():
                    return
                message = worker.conn.recv()
            except (EOFError, OSError):
                worker.ended = True
                return
            kind = message[0]
            if kind == "ready":
                worker.ready = True
            elif kind == "failed":
                raise message[1]
            else:
                _, index, raw = message
                worker.task = None
                yield index, raw

    def close(self) -> None:
        """Stop every worker with SIGKILL: an idle one holds nothing (its shards are written and
        recorded), a busy one's temporary file is removed by the stage; an interpreter's orderly
        exit would cost ~0.2-0.5 s per worker for nothing."""
        workers, self._workers = self._workers, []
        for worker in workers:
            with contextlib.suppress(OSError):
                worker.process.kill()
        for worker in workers:
            worker.process.wait()
            worker.conn.close()
