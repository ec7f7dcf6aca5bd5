"""sha256 of local files (model weights), remembered across runs so large files are hashed once.

The cache is one JSON file under the user cache folder (``$DATAFILTER_CACHE_DIR``, else
``$XDG_CACHE_HOME/datafilter``, else ``~/.cache/datafilter``): real path -> signature (size,
mtime, ctime, inode; see :mod:`datafilter.io.content`) and sha256. An entry is used only while
the file's signature is unchanged; anything that may have changed the bytes changes the ctime,
so the file is hashed again. A cache that cannot be written only costs hashing again.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from datafilter.io.content import sha256_of, signature

CACHE_NAME = "verified-sha256.json"
MAX_ENTRIES = 4096


def cache_path() -> Path:
    base = os.environ.get("DATAFILTER_CACHE_DIR")
    if base:
        return Path(base).expanduser() / CACHE_NAME
    xdg = os.environ.get("XDG_CACHE_HOME")
    root = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return root / "datafilter" / CACHE_NAME


def _load(path: Path) -> dict[str, dict]:
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _save(path: Path, entries: dict[str, dict]) -> None:
    from datafilter.errors import DatafilterError
    from datafilter.io.atomic import write_json

    if len(entries) > MAX_ENTRIES:  # forget the files that are gone, then the oldest
        entries = {k: v for k, v in entries.items() if os.path.exists(k)}
        entries = dict(list(entries.items())[-MAX_ENTRIES:])
    with contextlib.suppress(OSError, DatafilterError):
        write_json(path, entries)


def cached_sha256(path: str | Path) -> str:
    """The sha256 of a local file, from the cache while its signature is unchanged."""
    real = os.path.realpath(path)
    sig = signature(Path(real))
    cache = cache_path()
    entries = _load(cache)
    hit = entries.get(real)
    if isinstance(hit, dict) and hit.get("signature") == sig and "sha256" in hit:
        return str(hit["sha256"])
    digest = sha256_of(Path(real))
    entries.pop(real, None)
    entries[real] = {"signature": sig, "sha256": digest}
    _save(cache, entries)
    return digest


def folder_sha256(folder: Path, names: list[str] | None = None) -> dict[str, str]:
    """sha256 of each file directly in ``folder`` (or of ``names`` in it), by name."""
    if names is None:
        names = sorted(p.name for p in folder.iterdir() if p.is_file())
    return {name: cached_sha256(folder / name) for name in names}
