"""Quiet third-party logs: Ray's, DuckDB's, transformers' and vLLM's, unless asked for (``-v``).

A plain run prints only datafilter's own lines. :func:`configure` sets environment variables
(read by the libraries when they start, also in worker processes, which inherit them) and the
level of their Python loggers; values the user set in the environment are kept. Ray's own
start-up lines are filtered in ``runtime.py``, where Ray is started.
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

_verbose = False


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
