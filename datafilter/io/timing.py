"""When a stage ran, for how long, by which datafilter and command: recorded with its results
(the score stage's ``summary.json``, a selection's record) for the report's run metadata."""

from __future__ import annotations

import os
import shlex
import sys
import time
from datetime import UTC, datetime
from typing import Any


def command_line() -> str:
    """The command that runs this process, as a user would type it (``datafilter score ...``)."""
    argv = list(sys.argv)
    if argv and os.path.basename(argv[0]) in ("datafilter", "cli.py", "__main__.py"):
        argv = ["datafilter", *argv[1:]]
    return shlex.join(argv)


class StageClock:
    """Started when a stage starts; :meth:`record` is its timing."""

    def __init__(self) -> None:
        self.started = datetime.now(UTC)
        self._start = time.monotonic()

    def record(self) -> dict[str, Any]:
        from datafilter import __version__

        return {
            "started": self.started.isoformat(timespec="seconds"),
            "seconds": round(time.monotonic() - self._start, 3),
            "datafilter": __version__,
            "command": command_line(),
        }
