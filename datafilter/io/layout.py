"""Where each stage's artifacts live inside a run folder."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from datafilter.io.storage import AnyPath, location

STATE_DIR = "_state"


@dataclass(frozen=True)
class RunLayout:
    """Paths of a run folder: ``scores/``, ``thresholds/`` and the ``_state/`` bookkeeping."""

    root: AnyPath

    @classmethod
    def at(cls, root: str | AnyPath) -> RunLayout:
        return cls(location(root))

    @property
    def record_path(self) -> AnyPath:
        """The run record: input, columns and scorer settings shared by later stages."""
        return self.root / "run.json"

    def scores_dir(self, scorer_id: str) -> AnyPath:
        return self.root / "scores" / scorer_id

    def score_path(self, scorer_id: str, shard_rel: str) -> AnyPath:
        """A Parquet file named as the input shard (``.parquet`` added to a JSONL shard's name)."""
        name = shard_rel if shard_rel.endswith(".parquet") else f"{shard_rel}.parquet"
        return self.scores_dir(scorer_id) / name

    def thresholds_path(self, scorer_id: str, group_by: str | None) -> AnyPath:
        suffix = f".by-{group_by}" if group_by else ""
        return self.root / "thresholds" / f"{scorer_id}{suffix}.parquet"

    def marker_path(self, stage: str, key: str, shard_rel: str) -> AnyPath:
        return self.root / STATE_DIR / stage / key / f"{shard_rel}.done.json"

    def selection_record_path(self, output: AnyPath) -> AnyPath:
        """Where a selection made from this run notes its output folder (one file per output)."""
        key = hashlib.sha256(str(output).encode()).hexdigest()[:16]
        return self.root / STATE_DIR / "selections" / f"{key}.json"

    def selection_outputs(self) -> list[AnyPath]:
        """Output folders of the selections made from this run, most recent first."""
        records = sorted(
            (self.root / STATE_DIR / "selections").glob("*.json"),
            key=lambda p: p.stat().st_mtime_ns,
            reverse=True,
        )
        return [location(json.loads(p.read_text())["output"]) for p in records]

    @property
    def lock_path(self) -> AnyPath:
        return self.root / STATE_DIR / "lock"
