"""What a file holds: the sha256 of its bytes, and a stat signature that says when those bytes
can be trusted unchanged without reading them again.

A local file's signature is its size, mtime, ctime and inode. Tools can set an mtime back
(``touch -d``, ``cp -p``, ``rsync -t``), but not a ctime: any write, rename or copy changes it. So
a file whose signature is unchanged holds the bytes it held; when the signature differs (a copied
folder, a ``chmod``, an edit that kept the size and mtime) the file is hashed again and its
sha256 decides. On object storage the signature is size and mtime, which the store sets on every
upload and nobody can set back.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from datafilter.io.storage import AnyPath, ObjectPath

CHUNK_BYTES = 8 << 20


def sha256_of(path: AnyPath) -> str:
    """The sha256 of a file's bytes (local or on object storage), read in 8 MiB chunks."""
    digest = hashlib.sha256()
    if isinstance(path, ObjectPath):
        with path.filesystem.open_input_stream(path.fs_path) as stream:
            while chunk := stream.read(CHUNK_BYTES):
                digest.update(chunk)
    else:
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                digest.update(chunk)
    return digest.hexdigest()


def signature(path: AnyPath) -> dict[str, int]:
    """Size and the stat fields that change whenever a file's bytes may have changed."""
    if isinstance(path, ObjectPath):
        st = path.stat()
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    st = os.stat(path)
    return {
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "ino": st.st_ino,
    }


def content_record(path: AnyPath, sha256: str | None = None) -> dict[str, Any]:
    """A file's signature and sha256 (hashed here unless ``sha256`` is given)."""
    sig = signature(path)
    return {**sig, "sha256": sha256 or sha256_of(path)}


def current_record(
    path: AnyPath, recorded: dict[str, Any] | None, *, verify: bool = False
) -> dict[str, Any] | None:
    """``path``'s record when it still holds the bytes ``recorded`` describes, else None.

    Same size and signature: unchanged, nothing is read (unless ``verify``). Same size, other
    signature: the file is hashed and its sha256 decides; the returned record then carries the
    new signature. A record without a sha256 (written before content hashes) only matches a file
    with the same signature."""
    if not recorded:
        return None
    try:
        sig = signature(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if sig["size"] != recorded.get("size"):
        return None
    same_sig = all(recorded.get(k) == v for k, v in sig.items())
    if same_sig and not verify:
        return {**recorded}
    if "sha256" not in recorded:
        return None
    try:
        digest = sha256_of(path)
    except (FileNotFoundError, IsADirectoryError):
        return None
    return {**sig, "sha256": digest} if digest == recorded["sha256"] else None


def identity(record: dict[str, Any]) -> Any:
    """The part of a record that names the content: its sha256, else size and mtime."""
    if "sha256" in record:
        return record["sha256"]
    return {"size": record.get("size"), "mtime_ns": record.get("mtime_ns")}
