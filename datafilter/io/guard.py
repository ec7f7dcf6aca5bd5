"""Where a command may write: never over data it reads, never into a folder of foreign files.

Every command that writes checks, before any work, each folder it writes against every path it
reads and every other folder it writes: none may be, contain, or lie inside another. Local
paths are compared by their real paths (symbolic links resolved), object-storage URIs by their
normalised ``scheme://bucket/key``; both folders and single files count.

A folder datafilter writes must be new, empty, or already datafilter's (a run folder with its
``run.json``, an output folder with its ``_state/``). A folder holding anything else is refused
unless the caller passes ``overwrite``; even then datafilter writes only its own names beside
the foreign files, refuses to replace any of them, and never deletes one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from datafilter.errors import ConfigError
from datafilter.io.storage import AnyPath, ObjectPath, location

if TYPE_CHECKING:
    from datafilter.io.shards import InputScan


@dataclass(frozen=True)
class Place:
    """A path a command reads or writes, with the role the messages call it by."""

    role: str
    path: AnyPath

    @property
    def key(self) -> str:
        """The normalised name compared: real path, or ``scheme://bucket/key``."""
        if isinstance(self.path, ObjectPath):
            return str(self.path)
        return os.path.realpath(self.path)

    def relation(self, other: Place) -> str | None:
        """How this place sits relative to ``other``: 'is', 'contains', 'is inside' or None."""
        a, b = self.key.rstrip("/"), other.key.rstrip("/")
        if a == b:
            return "is"
        if b.startswith(a + "/"):
            return "contains"
        if a.startswith(b + "/"):
            return "is inside"
        return None


def place(role: str, path: str | AnyPath) -> Place:
    return Place(role, location(path))


def input_places(
    input_path: str | AnyPath, scan: InputScan | None = None, role: str = "input"
) -> list[Place]:
    """The input as given, every shard file of it (real paths) and every folder its shards were
    found in (the input folder and the targets of symbolic links); ``scan`` if already made."""
    from datafilter.io.shards import glob_base, has_glob, scan_input

    root = location(input_path)
    scan = scan or scan_input(input_path)
    if has_glob(input_path) and not root.exists():
        places = [Place(f"{role} pattern's folder", glob_base(root))]
    else:
        places = [Place(f"{role} {'folder' if root.is_dir() else 'file'}", root)]
    places += [Place(f"{role} folder", folder) for folder in scan.folders]
    places += [Place(f"{role} shard", shard.path) for shard in scan.shards]
    return places


def refuse_overlaps(
    writes: Sequence[Place],
    reads: Iterable[Place],
    allowed: set[tuple[str, str]] = frozenset(),  # type: ignore[assignment]
) -> None:
    """A ConfigError when a written place is, contains or lies inside a place read or another
    place written (pairs of roles in ``allowed`` excepted)."""
    reads = list(reads)
    for i, written in enumerate(writes):
        others = [*reads, *writes[i + 1 :]]
        for other in others:
            if (written.role, other.role) in allowed or (other.role, written.role) in allowed:
                continue
            relation = written.relation(other)
            if relation is None:
                continue
            raise ConfigError(
                f"{written.role} {written.path} {relation} the {other.role} {other.path}: "
                f"writing there could replace or delete it, or be read back as input; put the "
                f"{written.role} elsewhere"
            )


def foreign_entries(folder: AnyPath, own: Iterable[str]) -> list[str]:
    """Top-level names in ``folder`` other than ``own`` (empty when it does not exist)."""
    own = set(own)
    try:
        if isinstance(folder, ObjectPath) or folder.is_dir():
            names = [p.name for p in folder.iterdir()]
        elif folder.exists():
            raise ConfigError(f"{folder} is a file; a folder is needed here")
        else:
            return []
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n not in own)


def require_own_folder(
    folder: AnyPath, role: str, is_ours: bool, own: Iterable[str], overwrite: bool, flag: str
) -> None:
    """Refuse a folder that holds files datafilter did not write, unless ``overwrite``."""
    if is_ours or overwrite:
        return
    foreign = foreign_entries(folder, own)
    if foreign:
        shown = ", ".join(foreign[:3]) + (" …" if len(foreign) > 3 else "")
        raise ConfigError(
            f"{role} {folder} already holds files datafilter did not write ({shown}); choose "
            f"a new or empty folder, or use {flag} to write beside them (they are never "
            "replaced or deleted)"
        )


def refuse_foreign_files(folder: AnyPath, role: str, names: Iterable[str]) -> None:
    """Refuse when any of ``names`` (relative to ``folder``) exists: it is not datafilter's."""
    if isinstance(folder, ObjectPath):  # one listing, not a request per name
        present = {p.relative_to(folder).as_posix() for p in folder.rglob("*")}
        clash = sorted(set(names) & present)
    else:
        clash = [n for n in names if (folder / n).exists()]
    if clash:
        shown = ", ".join(clash[:3]) + (" …" if len(clash) > 3 else "")
        raise ConfigError(
            f"{role} {folder} already holds {shown}, which datafilter did not write and would "
            "replace; move them away or choose another folder"
        )
