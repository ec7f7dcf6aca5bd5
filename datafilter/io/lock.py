"""One run at a time per folder: an exclusive ``flock`` on a lock file naming its holder.

The kernel releases the lock when its process dies, so a killed run never blocks the next one,
and there is no check-then-delete race. The file itself stays; it only names the last holder.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from datafilter.errors import RunLockedError


def is_locked(path: Path) -> bool:
    """Whether some process holds the lock at ``path`` now."""
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """Hold ``path`` exclusively for the block; a RunLockedError names the current holder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = _read_owner(fd)
        os.close(fd)
        raise RunLockedError(
            f"{path.parent.parent} is in use by another run "
            f"(host {owner.get('host', '?')}, pid {owner.get('pid', '?')}); wait for it to finish"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid()}).encode(), 0)
        yield
    finally:
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _read_owner(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}
