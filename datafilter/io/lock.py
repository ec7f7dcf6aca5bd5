"""One writer at a time per folder: a ``flock`` on a lock file naming its holder.

``score`` holds its run folder exclusively; ``thresholds`` and ``select`` hold it shared (they
only read the scores), so several of them may run together but no ``score`` while they do.
The kernel releases the lock when its process dies, so a killed run never blocks the next one,
and there is no check-then-delete race. The file itself stays; it only names the last holder.

Object storage has no locks. There the lock is an object naming its holder, always exclusive
(shared holders exclude each other too), created when absent and deleted at the end; a lock
left by a dead process on the same host is taken over, any other is refused with the holder's
name and the object to delete. Two runs started within the same
second on different hosts could both pass the check: do not point two clusters at one prefix.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from datafilter.errors import RunLockedError
from datafilter.io.storage import AnyPath, ObjectPath


def is_locked(path: AnyPath) -> bool:
    """Whether some process holds the lock at ``path`` now."""
    if isinstance(path, ObjectPath):
        return _live_object_owner(path) is not None
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
def run_lock(path: AnyPath, *, shared: bool = False) -> Iterator[None]:
    """Hold ``path`` for the block, exclusively or ``shared`` with other shared holders; a
    RunLockedError names the current holder."""
    if isinstance(path, ObjectPath):
        with _object_lock(path):
            yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = _read_owner(fd)
        os.close(fd)
        raise RunLockedError(
            f"{path.parent.parent} is in use by another run "
            f"(host {owner.get('host', '?')}, pid {owner.get('pid', '?')}); wait for it to finish"
        ) from None
    try:
        os.ftruncate(fd, 0)  # a shared holder names itself too: the last one to start
        os.pwrite(fd, json.dumps(_owner()).encode(), 0)
        yield
    finally:
        if not shared:  # other shared holders may still hold it under the name written
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _read_owner(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}


def _owner() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid()}


# Lock objects this process holds now: one it wrote earlier but failed to delete is stale.
_HELD: set[str] = set()


def _live_object_owner(path: ObjectPath) -> dict | None:
    """The holder named by a lock object, unless it is a dead process on this host (or this
    process, from a run that ended without deleting it)."""
    try:
        owner = json.loads(path.read_text() or "{}")
    except FileNotFoundError:
        return None
    except ValueError:
        owner = {}
    if owner.get("host") == socket.gethostname():
        pid = owner.get("pid")
        if not _pid_alive(pid) or (pid == os.getpid() and str(path) not in _HELD):
            return None
    return owner


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def _object_lock(path: ObjectPath) -> Iterator[None]:
    from datafilter.io.atomic import write_bytes

    owner = _live_object_owner(path)
    if owner is not None:
        raise RunLockedError(
            f"{path.parent.parent} is in use by another run (host {owner.get('host', '?')}, "
            f"pid {owner.get('pid', '?')}); wait for it to finish, or delete {path} if that "
            "run is dead"
        )
    write_bytes(path, json.dumps(_owner()).encode())
    _HELD.add(str(path))
    try:
        yield
    finally:
        _HELD.discard(str(path))
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:  # the store is unreachable: say so, keep the real error
            print(
                f"datafilter: warning: could not delete the lock {path} ({exc}); a rerun on this "
                "host takes it over, elsewhere delete it by hand",
                file=sys.stderr,
            )
