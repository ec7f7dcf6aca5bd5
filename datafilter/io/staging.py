"""Local copies of remote score shards (and group columns) for DuckDB to read.

DuckDB reads local Parquet files; score shards on object storage are small (a few numbers per
document), so they are downloaded once, and of a remote input shard only the group column is
read (a column projection, not the text). Local files are used where they are.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from datafilter.io.shards import open_parquet
from datafilter.io.storage import ObjectPath, is_remote, location


class LocalCopies:
    """Downloads into a private temporary folder, deleted with this object."""

    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="datafilter-stage-")
        self._count = 0
        self.original: dict[str, str] = {}  # local name -> the name it was copied from

    def _new_path(self) -> Path:
        self._count += 1
        return Path(self._folder.name) / f"{self._count:06d}.parquet"

    def file(self, name: str) -> str:
        """A local name for a whole file: itself if local, else a downloaded copy."""
        if not is_remote(name):
            return name
        source = location(name)
        assert isinstance(source, ObjectPath)
        target = self._new_path()
        with source.open_input_file() as remote, target.open("wb") as out:
            while chunk := remote.read(8 * 1024 * 1024):
                out.write(chunk)
        self.original[str(target)] = name
        return str(target)

    def column(self, name: str, column: str) -> str:
        """A local file holding only ``column`` of a Parquet file, in the same row order."""
        if not is_remote(name):
            return name
        table = open_parquet(location(name)).read(columns=[column])
        target = self._new_path()
        pq.write_table(table, target)
        self.original[str(target)] = name
        return str(target)

    def name_of(self, local_name: str) -> str:
        """The original name of a file copied here (or the name itself)."""
        return self.original.get(local_name, local_name)
