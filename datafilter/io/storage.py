"""Object storage (``s3://``, ``gs://``, any fsspec scheme) behind a small pathlib-like class.

A local folder stays a :class:`pathlib.Path`. A URI with a scheme becomes an :class:`ObjectPath`
with the subset of the pathlib API the stages use (``/``, ``name``, ``exists``, ``read_text``,
``stat``, ``rglob`` ...), backed by a :mod:`pyarrow.fs` filesystem. Writes never go through it
directly: :func:`datafilter.io.atomic.atomic_path` writes a complete local file and then uploads it,
so an object appears only once its upload has completed.

Filesystem options (endpoint, region, credentials) come from the environment (``AWS_*`` variables
for S3, as pyarrow reads them) or from :func:`configure`, which a run config's ``storage:`` section
calls; Ray actors receive the same options.
"""

from __future__ import annotations

import fnmatch
import json
import os
import posixpath
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from datafilter.errors import ConfigError

# Options per scheme, e.g. {"s3": {"endpoint_override": "http://127.0.0.1:9000", "region": "x"}}.
_OPTIONS: dict[str, dict[str, Any]] = {}


def configure(options: dict[str, dict[str, Any]] | None) -> None:
    """Set filesystem options per scheme (kept for this process and passed to Ray actors)."""
    _OPTIONS.clear()
    for scheme, values in (options or {}).items():
        if not isinstance(values, dict):
            raise ConfigError(f"storage options for {scheme!r} must be a mapping")
        _OPTIONS[scheme] = dict(values)
    _filesystem.cache_clear()


def current_options() -> dict[str, dict[str, Any]]:
    return {k: dict(v) for k, v in _OPTIONS.items()}


def is_remote(location: str | Path | ObjectPath) -> bool:
    """Whether ``location`` names object storage rather than a local path."""
    if isinstance(location, ObjectPath):
        return True
    if isinstance(location, Path):
        return False
    scheme = urlsplit(str(location)).scheme
    return len(scheme) > 1 and scheme != "file"


def location(value: str | Path | ObjectPath) -> Path | ObjectPath:
    """A local absolute Path, or an ObjectPath for a URI with a scheme."""
    if isinstance(value, ObjectPath):
        return value
    if is_remote(value):
        parts = urlsplit(str(value))
        if parts.query or parts.fragment:
            raise ConfigError(
                f"{value}: put storage options in the config's storage: section or the "
                "environment, not in the URI"
            )
        key = posixpath.normpath("/" + parts.path).lstrip("/") if parts.path.strip("/") else ""
        return ObjectPath(parts.scheme, parts.netloc, key)
    text = str(value)
    if text.startswith("file://"):
        text = text[len("file://") :]
    return Path(text).expanduser().resolve()


@lru_cache(maxsize=16)
def _filesystem(scheme: str, options_json: str):
    import pyarrow.fs as pafs

    options = json.loads(options_json)
    try:
        if scheme == "s3":
            endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            if endpoint and "endpoint_override" not in options:
                options["endpoint_override"] = endpoint
            return pafs.S3FileSystem(**options)
        if scheme in ("gs", "gcs"):
            return pafs.GcsFileSystem(**options)
    except (TypeError, ValueError, OSError) as exc:
        raise ConfigError(f"cannot open {scheme}:// storage: {exc}") from None
    return _fsspec_filesystem(scheme, options)


def _fsspec_filesystem(scheme: str, options: dict[str, Any]):
    """Any other scheme through fsspec (``hdfs``, ``abfs``, ``memory`` ...), wrapped for pyarrow."""
    import pyarrow.fs as pafs

    try:
        import fsspec

        filesystem = fsspec.filesystem(scheme, **options)
    except ImportError as exc:
        raise ConfigError(f"{scheme}:// storage needs a package: {exc}") from None
    except (TypeError, ValueError, OSError) as exc:
        raise ConfigError(f"cannot open {scheme}:// storage: {exc}") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(filesystem))


@dataclass(frozen=True)
class StatResult:
    st_size: int
    st_mtime_ns: int


@dataclass(frozen=True)
class ObjectPath:
    """A file or prefix in object storage: ``scheme://bucket/key``."""

    scheme: str
    bucket: str
    key: str = ""

    # -- naming ------------------------------------------------------------------------------
    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.key}".rstrip("/")

    def __truediv__(self, other: str | PurePosixPath) -> ObjectPath:
        joined = posixpath.join(self.key, str(other)) if self.key else str(other)
        return ObjectPath(self.scheme, self.bucket, posixpath.normpath(joined).lstrip("/"))

    @property
    def name(self) -> str:
        return posixpath.basename(self.key)

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.key).suffix

    @property
    def parent(self) -> ObjectPath:
        return ObjectPath(self.scheme, self.bucket, posixpath.dirname(self.key))

    def with_name(self, name: str) -> ObjectPath:
        return self.parent / name

    def with_suffix(self, suffix: str) -> ObjectPath:
        return self.with_name(PurePosixPath(self.name).with_suffix(suffix).name)

    def relative_to(self, other: ObjectPath) -> PurePosixPath:
        if not self.is_relative_to(other):
            raise ValueError(f"{self} is not under {other}")
        return PurePosixPath(self.key[len(other.key) :].lstrip("/"))

    def is_relative_to(self, other: object) -> bool:
        if not isinstance(other, ObjectPath):
            return False
        same = (self.scheme, self.bucket) == (other.scheme, other.bucket)
        under = not other.key or self.key == other.key or self.key.startswith(other.key + "/")
        return same and under

    def as_posix(self) -> str:
        return str(self)

    def expanduser(self) -> ObjectPath:
        return self

    def resolve(self) -> ObjectPath:
        return self

    # -- filesystem --------------------------------------------------------------------------
    @property
    def filesystem(self):
        """The pyarrow filesystem for this scheme, built from the configured options."""
        options = json.dumps(_OPTIONS.get(self.scheme, {}), sort_keys=True)
        return _filesystem(self.scheme, options)

    @property
    def fs_path(self) -> str:
        """The path as the pyarrow filesystem names it: ``bucket/key``."""
        return f"{self.bucket}/{self.key}".rstrip("/")

    def _info(self):
        return self.filesystem.get_file_info(self.fs_path)

    def exists(self) -> bool:
        import pyarrow.fs as pafs

        return self._info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        import pyarrow.fs as pafs

        return self._info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        """A prefix with at least one object under it (object stores have no empty folders)."""
        import pyarrow.fs as pafs

        if self._info().type == pafs.FileType.Directory:
            return True
        return bool(self._list(recursive=False))

    def stat(self) -> StatResult:
        info = self._info()
        if info.size is None:
            raise FileNotFoundError(str(self))
        return StatResult(st_size=int(info.size), st_mtime_ns=int(info.mtime_ns or 0))

    def read_bytes(self) -> bytes:
        try:
            with self.filesystem.open_input_stream(self.fs_path) as stream:
                return stream.read()
        except FileNotFoundError:
            raise
        except OSError as exc:
            if "not found" in str(exc).lower() or "does not exist" in str(exc).lower():
                raise FileNotFoundError(str(self)) from exc
            raise

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def open_input_file(self):
        """A seekable pyarrow file, e.g. for :class:`pyarrow.parquet.ParquetFile`."""
        return self.filesystem.open_input_file(self.fs_path)

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to do: object stores create prefixes with their first object."""

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.filesystem.delete_file(self.fs_path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def remove_tree(self) -> None:
        """Delete every object under this prefix."""
        for path in self.rglob("*"):
            path.unlink(missing_ok=True)

    def _list(self, recursive: bool) -> list:
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(self.fs_path, recursive=recursive, allow_not_found=True)
        return self.filesystem.get_file_info(selector)

    def iterdir(self) -> list[ObjectPath]:
        return [self._child(info.path) for info in self._list(recursive=False)]

    def rglob(self, pattern: str) -> list[ObjectPath]:
        """Every object (not prefix) under this one whose name matches ``pattern``."""
        import pyarrow.fs as pafs

        return [
            self._child(info.path)
            for info in self._list(recursive=True)
            if info.type == pafs.FileType.File and fnmatch.fnmatch(info.base_name, pattern)
        ]

    def glob(self, pattern: str) -> list[ObjectPath]:
        """Direct children matching ``pattern`` (files and prefixes)."""
        return [p for p in self.iterdir() if fnmatch.fnmatch(p.name, pattern)]

    def _child(self, fs_path: str) -> ObjectPath:
        bucket, _, key = fs_path.lstrip("/").partition("/")
        return ObjectPath(self.scheme, bucket, key)

    def upload(self, local: Path) -> None:
        """Copy a complete local file to this object; check the stored size afterwards."""
        size = local.stat().st_size
        try:
            stream = self.filesystem.open_output_stream(self.fs_path)
            with local.open("rb") as source, stream as out:
                while chunk := source.read(8 * 1024 * 1024):
                    out.write(chunk)
            stored = self.stat().st_size
        except OSError as exc:
            raise OSError(f"{self}: upload failed: {exc}") from exc
        if stored != size:
            self.unlink(missing_ok=True)
            raise OSError(f"{self}: uploaded {size} bytes but the store holds {stored}")


AnyPath = Path | ObjectPath


def is_within(inner: AnyPath, outer: AnyPath) -> bool:
    """Whether ``inner`` is ``outer`` or lies under it (False across local and remote)."""
    if isinstance(inner, ObjectPath) or isinstance(outer, ObjectPath):
        return isinstance(inner, ObjectPath) and inner.is_relative_to(outer)
    return inner == outer or inner.is_relative_to(outer)


def remove_tree(path: AnyPath) -> None:
    """Delete a folder (or every object under a prefix)."""
    if isinstance(path, ObjectPath):
        path.remove_tree()
    else:
        import shutil

        shutil.rmtree(path)
