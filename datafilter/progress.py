"""A small progress bar for local loops (KenLM training, demo data), drawn on stderr.

It is drawn only when stderr is a terminal, and never after :func:`set_enabled(False)
<set_enabled>` (the CLI's ``--quiet``) or with ``DATAFILTER_PROGRESS=0`` in the environment
(``=1`` draws it even when stderr is not a terminal). Distributed stages use Ray Data's own
progress bars instead (see ``runtime.py``).

    with progress_bar(total=len(files), desc="reading", unit="files") as bar:
        for path in files:
            ...
            bar.update()

    for line in track(lines, total=n, desc="encoding", unit="lines"):
        ...
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import TypeVar

T = TypeVar("T")

_enabled: bool | None = None  # None: decide from the environment and the terminal
_REFRESH_SECONDS = 0.1
_BAR_WIDTH = 24


def set_enabled(enabled: bool | None) -> None:
    """Force progress bars on or off for this process; ``None`` restores the default."""
    global _enabled
    _enabled = enabled


def progress_state() -> bool | None:
    """What :func:`set_enabled` last set (``None``: the default), to restore it later."""
    return _enabled


def is_enabled() -> bool:
    """Whether a bar would be drawn now."""
    if _enabled is not None:
        return _enabled
    env = os.environ.get("DATAFILTER_PROGRESS", "").strip().lower()
    if env in {"0", "false", "no", "off"}:
        return False
    if env in {"1", "true", "yes", "on"}:
        return True
    stream = sys.stderr
    return stream is not None and hasattr(stream, "isatty") and stream.isatty()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


def _count(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size * 10:
            return f"{n / size:.0f}{unit}"
    return f"{n:.0f}"


class ProgressBar:
    """One line on stderr, redrawn at most every 0.1 s: ``desc 42% [####  ] 420/1000 lines``.

    Does nothing when progress is disabled; safe to use unconditionally.
    """

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "it"):
        self.total = total if total and total > 0 else None
        self.desc = desc
        self.unit = unit
        self.n = 0
        self.enabled = is_enabled()
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._width = 0
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last_draw >= _REFRESH_SECONDS:
            self._last_draw = now
            self._draw(now)

    def render(self, now: float | None = None) -> str:
        """The bar's current text (without the carriage return)."""
        elapsed = (now if now is not None else time.monotonic()) - self._start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        head = f"{self.desc}: " if self.desc else ""
        if self.total:
            frac = min(1.0, self.n / self.total)
            filled = int(frac * _BAR_WIDTH)
            bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
            eta = (self.total - self.n) / rate if rate > 0 and self.n < self.total else 0.0
            return (
                f"{head}{frac:4.0%} [{bar}] {_count(self.n)}/{_count(self.total)} {self.unit} "
                f"{_duration(elapsed)}<{_duration(eta)} {_count(rate)} {self.unit}/s"
            )
        return (
            f"{head}{_count(self.n)} {self.unit} {_duration(elapsed)} {_count(rate)} {self.unit}/s"
        )

    def _draw(self, now: float) -> None:
        columns = shutil.get_terminal_size((100, 20)).columns
        text = self.render(now)[: max(10, columns - 1)]
        pad = " " * max(0, self._width - len(text))
        self._width = len(text)
        stream = sys.stderr
        stream.write("\r" + text + pad)
        stream.flush()

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self._closed:
            return
        self._closed = True
        if self.enabled:
            self._draw(time.monotonic())
            sys.stderr.write("\n")
            sys.stderr.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def progress_bar(total: int | None = None, desc: str = "", unit: str = "it") -> ProgressBar:
    """A bar to ``update()`` by hand; use it as a context manager so the line is ended."""
    return ProgressBar(total, desc, unit)


def track(
    items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it"
) -> Iterator[T]:
    """Yield ``items``, advancing a bar by one for each (``total`` defaults to ``len(items)``)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with ProgressBar(total, desc, unit) as bar:
        for item in items:
            yield item
            bar.update()
