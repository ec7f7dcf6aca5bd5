"""The library's own exception types; the CLI turns each into one clear line and exit code."""

from __future__ import annotations


class DatafilterError(Exception):
    """Base class for every error the library raises on purpose."""

    exit_code = 2


class ConfigError(DatafilterError):
    """Invalid options, config file or command-line arguments."""


class InputError(DatafilterError):
    """Bad input data: names the file, the row where known, and the problem."""

    def __init__(self, problem: str, path: str | None = None, row: int | None = None):
        self.problem = problem
        self.path = path
        self.row = row
        where = ""
        if path is not None:
            where = f"{path}"
            if row is not None:
                where += f", row {row}"
            where += ": "
        super().__init__(f"{where}{problem}")


class MissingDependencyError(DatafilterError):
    """An optional dependency or external tool is missing; the message says how to install it."""

    exit_code = 3


class ModelError(DatafilterError):
    """A model folder is missing, incomplete, or does not match what the caller asked for."""


class OutputError(DatafilterError):
    """An output folder takes no more writes (read-only, full, over quota, no permission): the
    stage stops, since no other shard could be written either."""


class RunLockedError(DatafilterError):
    """Another run holds the lock on this output folder."""
