"""Stop a local Ray's processes when the driver that started it dies, however it dies.

Ray ties its GCS server and raylet to the driver that started them, and workers follow the
raylet within seconds; but the dashboard and runtime-env agents, told that their raylet died
unexpectedly, first try to report it to the (dead) GCS and wait out a 60 s timeout: a driver
killed with SIGKILL left about 220 MB of agents running for a minute.

:func:`watch` starts a small watcher process in its own session, connected to the driver by a
pipe. While the driver lives, the watcher notes the driver's descendant processes every second;
when the pipe reaches end-of-file (the driver exited or was killed), it sends SIGTERM to those
still running, and SIGKILL to any left 3 s later. Processes are identified by pid and start
time, so a reused pid is never signalled.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys

POLL_S = 1.0
GRACE_S = 3.0

_watcher: subprocess.Popen | None = None


def watch() -> None:
    """Start the watcher for this process's descendants (once per process)."""
    global _watcher
    if _watcher is not None and _watcher.poll() is None:
        return
    try:
        import psutil  # noqa: F401 - installed with Ray's default extras; without it, no watcher
    except ImportError:
        return
    _watcher = subprocess.Popen(
        [sys.executable, "-m", "datafilter.ray_reaper", str(os.getpid())],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a signal to the driver's process group does not reach it
    )


def _descendants(pid: int, known: dict[tuple[int, float], object]) -> None:
    import psutil

    try:
        for child in psutil.Process(pid).children(recursive=True):
            if child.pid == os.getpid():  # the watcher is the driver's child too
                continue
            try:
                known.setdefault((child.pid, child.create_time()), child)
            except psutil.Error:
                continue
    except psutil.Error:
        return


def _stop(known: dict[tuple[int, float], object]) -> None:
    import psutil

    alive = []
    for proc in known.values():
        try:
            if proc.is_running():  # psutil compares the start time: no reused pid
                proc.terminate()
                alive.append(proc)
        except psutil.Error:
            continue
    _, still = psutil.wait_procs(alive, timeout=GRACE_S)
    for proc in still:
        try:
            proc.kill()
        except psutil.Error:
            continue


def main(driver: int) -> None:
    known: dict[tuple[int, float], object] = {}
    stdin = sys.stdin.fileno()
    while True:
        _descendants(driver, known)
        ready, _, _ = select.select([stdin], [], [], POLL_S)
        if ready and not os.read(stdin, 4096):  # end-of-file: the driver is gone
            break
    _stop(known)


if __name__ == "__main__":
    main(int(sys.argv[1]))
