"""Logging: datafilter's own lines through :mod:`logging`, third-party logs quiet unless asked.

The library logs to the logger ``datafilter`` and its children (one per module: ``logging.
getLogger(__name__)``) and configures nothing: a program using the Python API decides where
the lines go. The command line calls :func:`setup_cli` once: datafilter's lines on stderr,
printed without breaking a progress bar; ``-q`` keeps warnings only, ``-v`` adds debug lines.

Third-party logs (Ray, DuckDB, transformers, vLLM) are quiet unless asked for (``-v``).
:func:`configure` sets environment variables (read by the libraries when they start, also in
worker processes, which inherit them) and the level of their Python loggers; values the user
set in the environment are kept. Ray's own start-up lines are filtered in ``runtime.py``, where
Ray is started.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

# Environment variables read by the libraries themselves: quiet values.
QUIET_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "VLLM_LOGGING_LEVEL": "ERROR",
    "VLLM_CONFIGURE_LOGGING": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_DEDUP_LOGS": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
}
QUIET_LOGGERS = ("ray", "duckdb", "transformers", "vllm", "torch", "filelock", "urllib3", "fsspec")
VERBOSE_ENV = "DATAFILTER_VERBOSE"
LOGGER = "datafilter"

_verbose = False


class _EchoHandler(logging.Handler):
    """Prints each record's message on stderr, clearing and redrawing a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        from datafilter.progress import echo

        try:
            echo(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def setup_cli(*, quiet: bool = False, verbose: bool = False) -> None:
    """The command line's logging: datafilter's lines on stderr (warnings only with ``quiet``,
    debug lines too with ``verbose``); third-party logs quiet unless ``verbose``."""
    configure(verbose)
    logger = logging.getLogger(LOGGER)
    for handler in [h for h in logger.handlers if isinstance(h, _EchoHandler)]:
        logger.removeHandler(handler)
    handler = _EchoHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)


def configure(verbose: bool) -> None:
    """Quiet the libraries (``verbose=False``) or leave their defaults (``verbose=True``)."""
    global _verbose
    _verbose = verbose
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"  # worker processes read it
    if verbose:
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    # Libraries' deprecation and future warnings: nothing a user of the command can act on.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def quiet_duckdb(con: Any) -> Any:
    """A new DuckDB connection, its progress bar off (on with ``-v``)."""
    con.execute(f"SET enable_progress_bar = {'true' if is_verbose() else 'false'}")
    return con


def is_verbose() -> bool:
    """Whether library logs are shown: ``configure(True)`` here, or in the process that
    started this one."""
    return _verbose or os.environ.get(VERBOSE_ENV) == "1"
