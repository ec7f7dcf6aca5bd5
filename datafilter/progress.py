"""Progress on stderr: tqdm bars on a terminal, a plain line every ~10 s off one (batch logs).

The rules, in order:

- nothing after :func:`set_enabled(False) <set_enabled>` (the CLI's ``-q``) or with
  ``DATAFILTER_PROGRESS=0``;
- a bar when stderr is a terminal, or when forced (``DATAFILTER_PROGRESS=1``,
  :func:`set_enabled(True) <set_enabled>`);
- otherwise (stderr is a file or a pipe): no bars; a stage that runs longer than
  :func:`line_seconds` logs one line every :func:`line_seconds`: shards done/total, documents,
  MB/s of text, time left; a local loop (KenLM training) logs its count, rate and time left.
  ``DATAFILTER_PROGRESS_SECONDS`` sets the interval (default :data:`LINE_SECONDS`).

Local loops (KenLM training, demo data) use :func:`progress_bar` and :func:`track`; the stages'
shards use :class:`StageProgress` (``runtime.py`` drives it). :func:`echo` prints a line on
stderr without breaking a bar being drawn.

    with progress_bar(total=len(files), desc="reading", unit="files") as bar:
        for path in files:
            ...
            bar.update()

    for line in track(lines, total=n, desc="encoding", unit="lines"):
        ...
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Literal, TypeVar

from tqdm import tqdm

T = TypeVar("T")
Mode = Literal["bar", "lines"] | None

LINE_SECONDS = 10.0  # off a terminal: one progress line this often on a long stage
INTERVAL_ENV = "DATAFILTER_PROGRESS_SECONDS"
_enabled: bool | None = None  # None: decide from the environment and the terminal


def set_enabled(enabled: bool | None) -> None:
    """Force progress on (a bar even off a terminal) or off for this process; ``None``
    restores the default."""
    global _enabled
    _enabled = enabled


def progress_state() -> bool | None:
    """What :func:`set_enabled` last set (``None``: the default), to restore it later."""
    return _enabled


def mode() -> Mode:
    """``"bar"``, ``"lines"`` (periodic lines, no bar) or ``None`` (no progress at all)."""
    if _enabled is False:
        return None
    env = os.environ.get("DATAFILTER_PROGRESS", "").strip().lower()
    if env in {"0", "false", "no", "off"} and _enabled is None:
        return None
    if _enabled or env in {"1", "true", "yes", "on"}:
        return "bar"
    stream = sys.stderr
    on_terminal = stream is not None and hasattr(stream, "isatty") and stream.isatty()
    return "bar" if on_terminal else "lines"


def line_seconds() -> float:
    """Seconds between two progress lines off a terminal: ``DATAFILTER_PROGRESS_SECONDS``, else
    :data:`LINE_SECONDS`."""
    try:
        return max(0.0, float(os.environ[INTERVAL_ENV]))
    except (KeyError, ValueError):
        return LINE_SECONDS


class _LogLines:
    """A file for tqdm that logs each finished line of text it is given (no bar characters)."""

    def write(self, text: str) -> None:
        line = text.strip("\r\n ")
        if line:
            import logging

            logging.getLogger("datafilter.progress").info(line)

    def flush(self) -> None:
        pass


def is_enabled() -> bool:
    """Whether a bar would be drawn now."""
    return mode() == "bar"


def echo(message: str) -> None:
    """Print one line on stderr; a bar being drawn is cleared first and drawn again after."""
    tqdm.write(message, file=sys.stderr)
    sys.stderr.flush()


def _width() -> dict[str, Any]:
    """tqdm's size: the terminal's, followed as it changes; 100 x 20 where it has none (a pipe,
    a file, a terminal of unknown size 0 x 0, on which tqdm would draw nothing)."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
        known = size.columns > 0 and size.lines > 0
    except (AttributeError, OSError, ValueError):
        known = False
    return {"dynamic_ncols": True} if known else {"ncols": 100, "nrows": 20}


def progress_bar(total: int | None = None, desc: str = "", unit: str = "it") -> tqdm:
    """A tqdm bar to ``update()`` by hand (drawn only where :func:`is_enabled`; off a terminal a
    log line every :func:`line_seconds` with the count, rate and time left); use it as a
    context manager so the line is ended."""
    if mode() == "lines":
        interval = line_seconds()
        known = "/{total_fmt}" if total and total > 0 else ""
        return tqdm(
            total=total if total and total > 0 else None,
            desc=desc or None,
            unit=unit,
            unit_scale=True,
            file=_LogLines(),  # type: ignore[arg-type]
            mininterval=interval,
            maxinterval=max(interval, 1.0),
            delay=interval,
            bar_format="{desc}: {n_fmt}" + known + " {unit}, {rate_fmt}, {elapsed} elapsed"
            + (", about {remaining} left" if known else ""),
        )
    return tqdm(
        total=total if total and total > 0 else None,
        desc=desc or None,
        unit=unit,
        unit_scale=True,
        file=sys.stderr,
        disable=not is_enabled(),
        **_width(),
    )


def track(
    items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it"
) -> Iterator[T]:
    """Yield ``items``, advancing a bar by one for each (``total`` defaults to ``len(items)``)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress_bar(total, desc, unit) as bar:
        for item in items:
            yield item
            bar.update()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def shard_counts(stats: dict[str, Any] | None) -> tuple[int, int]:
    """Documents and text bytes of one finished shard, from its stage's stats (score: ``rows``,
    ``n_bytes``; select: ``read`` and its groups' ``read_bytes``)."""
    if not stats:
        return 0, 0
    docs = int(stats.get("rows", stats.get("read", 0)) or 0)
    n_bytes = stats.get("n_bytes")
    if n_bytes is None:
        n_bytes = sum(g.get("read_bytes", 0) for g in (stats.get("groups") or {}).values())
    return docs, int(n_bytes or 0)


class heartbeat:  # noqa: N801 - used as a context manager, like a function
    """Off a terminal, a line every :func:`line_seconds` while a step with no countable units
    runs (the thresholds' scans): ``thresholds: working, 0:40 elapsed``. Nothing on a terminal
    or with progress off, and nothing for a step shorter than one interval."""

    def __init__(self, stage: str, log: Callable[[str], None]):
        self.stage = stage
        self._log = log
        self._stop = threading.Event()
        self._start = time.monotonic()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> heartbeat:
        if mode() == "lines":
            self._thread = threading.Thread(target=self._lines, daemon=True)
            self._thread.start()
        return self

    def _lines(self) -> None:
        while not self._stop.wait(line_seconds()):
            self._log(f"{self.stage}: working, {_clock(time.monotonic() - self._start)} elapsed")

    def __exit__(self, *exc: object) -> None:
        self._stop.set()


class StageProgress:
    """A stage's shards: a bar on a terminal, else a line every :data:`LINE_SECONDS` through
    ``log`` while the stage runs. ``enabled=False`` (or progress off) shows nothing."""

    def __init__(
        self, stage: str, total: int, log: Callable[[str], None], *, enabled: bool = True
    ):
        self.stage = stage
        self.total = total
        self.done = self.failed = self.docs = self.n_bytes = 0
        self._log = log
        self._start = time.monotonic()
        self._mode = mode() if enabled else None
        self._bar: tqdm | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self._mode == "bar":
            self._bar = tqdm(total=total, desc=stage, unit="shard", file=sys.stderr, **_width())
        elif self._mode == "lines":
            self._thread = threading.Thread(target=self._lines, daemon=True)
            self._thread.start()

    def shard_done(self, stats: dict[str, Any] | None) -> None:
        """One shard finished (``stats``) or failed (``None``)."""
        docs, n_bytes = shard_counts(stats)
        self.done += 1
        self.failed += stats is None
        self.docs += docs
        self.n_bytes += n_bytes
        if self._bar is not None:
            self._bar.set_postfix_str(f"{self.docs:,} docs, {self._rate():.1f} MB/s", False)
            self._bar.update()

    def _rate(self) -> float:
        elapsed = time.monotonic() - self._start
        return self.n_bytes / 1e6 / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        """The periodic line: ``score: 5/16 shards, 20,044 documents, 12.3 MB/s, 0:41 elapsed,
        about 1:30 left``."""
        elapsed = time.monotonic() - self._start
        parts = [f"{self.stage}: {self.done}/{self.total} shards"]
        if self.failed:
            parts[0] += f" ({self.failed} failed)"
        parts.append(f"{self.docs:,} documents")
        if self.n_bytes:
            parts.append(f"{self._rate():.1f} MB/s")
        parts.append(f"{_clock(elapsed)} elapsed")
        if self.done:
            parts.append(f"about {_clock(elapsed / self.done * (self.total - self.done))} left")
        return ", ".join(parts)

    def _lines(self) -> None:
        while not self._stop.wait(line_seconds()):
            if self.done < self.total:
                self._log(self.line())

    def close(self) -> None:
        self._stop.set()
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> StageProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
