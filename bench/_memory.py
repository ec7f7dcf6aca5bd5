"""Memory of the Ray actors a bench run starts: RSS, PSS, shared and private, and the model file.

Linux only (reads ``/proc``). A background thread finds this process's descendants titled
``ray::MapWorker`` (Ray Data's actors) and samples each one's ``smaps`` every ``interval``
seconds, keeping the largest values seen per actor.
"""

from __future__ import annotations

import collections
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

KB = 1024
_HEADER = re.compile(r"[0-9a-f]+-[0-9a-f]+ ")


@dataclass
class ActorSample:
    """Largest values seen for one actor process, in bytes."""

    rss: int = 0
    pss: int = 0
    shared: int = 0  # Shared_Clean + Shared_Dirty: pages another process maps too
    private: int = 0  # Private_Clean + Private_Dirty: pages only this process maps
    model_rss: int = 0  # resident pages of the model file's mapping
    model_pss: int = 0
    model_private: int = 0


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            kids[int(stat.rsplit(")", 1)[1].split()[1])].append(int(entry.name))
    return kids


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (one pass over /proc)."""
    kids = _children()
    out, todo = [], [pid]
    while todo:
        found = kids.get(todo.pop(), [])
        out += found
        todo += found
    return out


def read_smaps(pid: int, model_file: str) -> ActorSample | None:
    """Totals of one process's mappings, and of the mappings of ``model_file``."""
    try:
        text = Path(f"/proc/{pid}/smaps").read_text()
    except OSError:
        return None
    sample = ActorSample()
    in_model = False
    for line in text.splitlines():
        if _HEADER.match(line):  # "start-end perms offset dev inode [path]"
            parts = line.split(None, 5)
            in_model = len(parts) > 5 and parts[5] == model_file
            continue
        head, _, rest = line.partition(":")
        if not rest.endswith("kB"):
            continue
        value = int(rest.split()[0]) * KB
        if head == "Rss":
            sample.rss += value
            if in_model:
                sample.model_rss += value
        elif head == "Pss":
            sample.pss += value
            if in_model:
                sample.model_pss += value
        elif head in ("Shared_Clean", "Shared_Dirty"):
            sample.shared += value
        elif head in ("Private_Clean", "Private_Dirty"):
            sample.private += value
            if in_model:
                sample.model_private += value
    return sample


class ActorMemory:
    """Samples every ``ray::MapWorker`` below this process that maps the model, until exit.

    ``snapshot``: the last sample taken while ``expected`` actors had the model mapped at once
    (how memory is shared while they all run); ``peak_rss``: each actor's largest RSS seen.
    """

    def __init__(self, model_file: Path, expected: int, interval: float = 0.5):
        self.model_file = str(Path(model_file).resolve())
        self.expected = expected
        self.interval = interval
        self.snapshot: dict[int, ActorSample] = {}
        self.peak_rss: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> ActorMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while True:
            now: dict[int, ActorSample] = {}
            for pid in descendants(os.getpid()):
                try:
                    title = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if not title.startswith(b"ray::MapWorker"):
                    continue
                sample = read_smaps(pid, self.model_file)
                if sample is not None and sample.model_rss > 0:
                    now[pid] = sample
                    self.peak_rss[pid] = max(self.peak_rss.get(pid, 0), sample.rss)
            if len(now) >= self.expected:
                self.snapshot = now
            if self._stop.wait(self.interval):
                return
