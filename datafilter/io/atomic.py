"""Write every file under a temporary name in the same folder, then rename it into place.

On object storage the file is written completely to a local temporary file and then uploaded:
an object becomes visible only when its upload completes, so readers never see a partial one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from datafilter.errors import OutputError
from datafilter.io.content import sha256_of
from datafilter.io.storage import ObjectPath

PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "write_statistics": True}
TMP_MARK = ".tmp-"
_TEMP_NAME = re.compile(r"\..+\.tmp-\d+-[0-9a-f]{8}")
# errno values meaning a folder takes no more writes: read-only, full, over quota, file too large,
# no permission.
UNWRITABLE = {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM}


def temp_path_for(path: Path) -> Path:
    """A unique hidden sibling of ``path``: same folder, so the final rename is atomic."""
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")


@contextmanager
def atomic_path(path: Path | ObjectPath, content: dict[str, Any] | None = None) -> Iterator[Path]:
    """Yield a temporary path; rename (or upload) it onto ``path`` only if the block succeeds.

    With ``content``, the sha256 of the complete file is stored in it (key ``sha256``) before
    it is renamed or uploaded."""
    if isinstance(path, ObjectPath):
        with _staged_upload(path, content) as tmp:
            yield tmp
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path_for(path)
        try:
            yield tmp
            if content is not None:
                content["sha256"] = sha256_of(tmp)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(OSError):  # read-only: it stays, the next run removes it
                tmp.unlink(missing_ok=True)
    except OSError as exc:
        if exc.errno not in UNWRITABLE:
            raise
        raise OutputError(f"cannot write {path}: {os.strerror(exc.errno)}") from exc


@contextmanager
def _staged_upload(target: ObjectPath, content: dict[str, Any] | None) -> Iterator[Path]:
    """A local file that is uploaded to ``target`` when the block succeeds."""
    with tempfile.TemporaryDirectory(prefix="datafilter-upload-") as folder:
        tmp = Path(folder) / target.name
        yield tmp
        if content is not None:
            content["sha256"] = sha256_of(tmp)
        target.upload(tmp)


def remove_temp_files(folder: Path | ObjectPath) -> int:
    """Delete temporary files left under ``folder`` by a killed writer; call holding the lock.

    Only names of the exact form :func:`temp_path_for` gives are removed. Object storage has
    none: uploads that did not complete leave no object."""
    if isinstance(folder, ObjectPath) or not folder.exists():
        return 0
    stale = [
        p
        for p in folder.rglob(f".*{TMP_MARK}*")
        if _TEMP_NAME.fullmatch(p.name) and p.is_file() and not p.is_symlink()
    ]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def dumps_json(obj: Any) -> str:
    """Stable JSON: sorted keys, two-space indent, trailing newline."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"


def write_json(path: Path, obj: Any) -> None:
    write_bytes(path, dumps_json(obj).encode())


def write_table(path: Path, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **PARQUET_OPTIONS)


@contextmanager
def parquet_writer(
    path: Path, schema: pa.Schema, content: dict[str, Any] | None = None
) -> Iterator[pq.ParquetWriter]:
    """A streaming Parquet writer whose file appears at ``path`` only when complete (its sha256
    stored in ``content`` when given)."""
    with atomic_path(path, content) as tmp:
        writer = pq.ParquetWriter(tmp, schema, **PARQUET_OPTIONS)
        try:
            yield writer
        finally:
            writer.close()
