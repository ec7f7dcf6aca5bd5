"""The files of a select output folder that datafilter wrote: the only ones it replaces or deletes.

``OUT/_state/owned.json`` lists them (paths relative to the folder). A selection adds the names
it is about to write before writing any, after checking that none of them exists unless it is
listed already. Folders written before this ledger existed count the shards named by their
completion records (``_state/select/<key>/<rel>.done.json``) and ``manifest.json``.

A shard whose input shard is gone is deleted only when a completion record describes its bytes
(size and sha256, :mod:`datafilter.io.content`); otherwise it is left where it is, with a
warning, and no longer counted as datafilter's.
"""

from __future__ import annotations

import json
import logging

from datafilter.io.atomic import write_json
from datafilter.io.content import current_record
from datafilter.io.guard import refuse_foreign_files
from datafilter.io.layout import STATE_DIR
from datafilter.io.markers import read_marker
from datafilter.io.storage import AnyPath

log = logging.getLogger(__name__)

LEDGER = "owned.json"
MANIFEST = "manifest.json"
SUFFIX = ".done.json"


def ledger_path(out: AnyPath) -> AnyPath:
    return out / STATE_DIR / LEDGER


def select_state(out: AnyPath) -> AnyPath:
    return out / STATE_DIR / "select"


def is_select_output(out: AnyPath) -> bool:
    """Whether ``out`` holds a selection's bookkeeping (it is datafilter's)."""
    return ledger_path(out).exists() or select_state(out).exists()


def _records(out: AnyPath) -> dict[str, list[dict]]:
    """Shard name -> the completion records of it, from every selection in ``out``."""
    found: dict[str, list[dict]] = {}
    state = select_state(out)
    for marker in state.rglob(f"*{SUFFIX}") if state.exists() else []:
        rel = marker.relative_to(state).as_posix().split("/", 1)[-1].removesuffix(SUFFIX)
        found.setdefault(rel, []).append(read_marker(marker) or {})
    return found


def owned_files(out: AnyPath) -> set[str]:
    """Names in ``out`` that datafilter wrote (or is writing)."""
    try:
        listed = set(json.loads(ledger_path(out).read_text())["files"])
    except FileNotFoundError:
        listed = set()
    except (ValueError, KeyError, TypeError):
        listed = set()
    if select_state(out).exists():
        listed |= set(_records(out)) | {MANIFEST}
    return listed


def claim(out: AnyPath, names: set[str]) -> None:
    """Make ``out`` hold only ``names`` of datafilter's: refuse if one of them is a foreign
    file, delete the earlier selections' files that are not among them (when they still hold
    the bytes recorded), and list ``names`` in the ledger before anything is written."""
    owned = owned_files(out)
    refuse_foreign_files(out, "output folder", sorted(names - owned))
    records = _records(out)
    for rel in sorted(owned - names - {MANIFEST}):
        path = out / rel
        if not path.exists():
            continue
        if any(current_record(path, r.get("output")) is not None for r in records.get(rel, [])):
            log.info(f"select: removing {rel}: its input shard is gone")
            path.unlink()
        else:
            log.warning(
                f"select: warning: leaving {rel}: its input shard is gone but it does not hold "
                "the bytes a selection wrote there (changed since, or unfinished); delete it "
                "yourself if it is not needed"
            )
    write_json(ledger_path(out), {"files": sorted(names)})
