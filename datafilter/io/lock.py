"""One run at a time per folder: an exclusive lock file holding the owner's host and pid."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from datafilter.errors import RunLockedError


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_stale(owner: dict) -> bool:
    return owner.get("host") == socket.gethostname() and not _pid_alive(int(owner.get("pid", 0)))


@contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """Hold ``path`` exclusively; a lock left by a dead process on this host is taken over."""
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"host": socket.gethostname(), "pid": os.getpid()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = json.loads(path.read_text() or "{}")
            except (OSError, json.JSONDecodeError):
                owner = {}
            if owner and _is_stale(owner):
                path.unlink(missing_ok=True)
                continue
            raise RunLockedError(
                f"{path.parent.parent} is in use by another run "
                f"(host {owner.get('host', '?')}, pid {owner.get('pid', '?')}); "
                f"wait for it, or remove {path} if that process is gone"
            ) from None
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        break
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
