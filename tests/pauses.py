"""The test side of ``datafilter/pause_points.py``: hold a command at a named point, then kill it
there or let it go on. Every wait here is for a state that, once reached, stays until the test
acts (the paused process cannot move on by itself), so no machine is too fast for it."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from datafilter.pause_points import PAUSE_AT, PAUSE_DIR


class Pauses:
    """Pause points for the processes started with :meth:`env`, in ``folder``."""

    def __init__(self, folder: Path, *points: str):
        self.folder = folder
        self.points = points
        folder.mkdir(parents=True, exist_ok=True)
        self._seen: set[str] = set()

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a command whose points should pause."""
        return {**os.environ, PAUSE_AT: ",".join(self.points), PAUSE_DIR: str(self.folder), **extra}

    def wait(
        self, point: str, proc: subprocess.Popen | None = None, timeout: float = 300
    ) -> tuple[int, Path]:
        """The next visit of ``point`` (its process id, its ``.here`` file); an AssertionError
        if ``proc`` ends first, or after ``timeout`` seconds (a safety net, never reached by a
        working run)."""
        deadline = time.monotonic() + timeout
        while True:
            for here in sorted(self.folder.glob(f"{point}.*.here")):
                if here.name not in self._seen:
                    self._seen.add(here.name)
                    return int(here.name.split(".")[-3]), here
            if proc is not None and proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"the command ended (rc {proc.returncode}) before {point}:\n"
                                     f"{err}")  # fmt: skip
            assert time.monotonic() < deadline, f"{point} not reached in {timeout} s"
            time.sleep(0.005)

    def release(self, here: Path) -> None:
        """Let the visit of ``here`` go on."""
        here.with_name(here.name.removesuffix(".here") + ".go").touch()

    def release_all(self, point: str) -> None:
        """Let every visit of ``point``, now and later, go on."""
        (self.folder / f"{point}.go").touch()
