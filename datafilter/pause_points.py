"""Test-only pause points: let a test hold a running stage at a named place, then kill it there.

Not for users. The fault tests set two environment variables on the command they start:

- ``DATAFILTER_TEST_PAUSE_AT``: comma-separated point names, e.g. ``score:shard``;
- ``DATAFILTER_TEST_PAUSE_DIR``: a folder both sides can see.

A process that reaches a named point writes ``<point>.<pid>.<n>.here`` into the folder (``n``
counts that point's visits in the process, from 1) and waits until ``<point>.<pid>.<n>.go`` or
``<point>.go`` exists there (the latter releases every visit), or the folder is gone. The test
sees the ``.here`` file appear, and either kills the process, which is then certainly inside
the stage, or releases it. Points: ``score:shard`` and ``select:shard`` (inside a shard, its
temporary output file open, after the first batch), ``thresholds`` (percentiles computed, the
table not yet written), ``evaluate:task`` (a proxy model trained and measured, its completion
record not yet written).

When ``DATAFILTER_TEST_PAUSE_AT`` is unset (always, outside tests) a point costs one
environment lookup.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

PAUSE_AT = "DATAFILTER_TEST_PAUSE_AT"
PAUSE_DIR = "DATAFILTER_TEST_PAUSE_DIR"
_POLL_SECONDS = 0.005
_visits: Counter[str] = Counter()


def pause_point(name: str) -> None:
    """Wait here if a test named this point (see the module's docstring); else return at once."""
    names = os.environ.get(PAUSE_AT)
    if not names or name not in names.split(","):
        return
    folder = Path(os.environ[PAUSE_DIR])
    _visits[name] += 1
    stem = f"{name}.{os.getpid()}.{_visits[name]}"
    go, go_all = folder / f"{stem}.go", folder / f"{name}.go"
    here = folder / f"{stem}.here"
    tmp = folder / f".{stem}.here.tmp"
    tmp.write_text("")
    os.replace(tmp, here)  # appears complete: the test may act on it at once
    while folder.is_dir() and not (go.exists() or go_all.exists()):
        time.sleep(_POLL_SECONDS)
