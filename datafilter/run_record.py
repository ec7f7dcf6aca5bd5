"""``run.json``: what a run folder scores (input, columns) and with which scorers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from datafilter.errors import ConfigError
from datafilter.io.atomic import write_json
from datafilter.io.layout import RunLayout
from datafilter.io.markers import file_fingerprint, read_marker
from datafilter.io.shards import Shard, discover_shards


class RunRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: str
    text_column: str
    id_column: str | None = None
    scorers: dict[str, dict[str, Any]] = {}


def load_record(layout: RunLayout) -> RunRecord | None:
    if not layout.record_path.exists():
        return None
    return RunRecord.model_validate(json.loads(layout.record_path.read_text()))


def require_record(layout: RunLayout) -> RunRecord:
    record = load_record(layout)
    if record is None:
        raise ConfigError(f"{layout.root} is not a run folder (no run.json): run datafilter score")
    return record


def save_record(layout: RunLayout, record: RunRecord) -> None:
    write_json(layout.record_path, record.model_dump(mode="json"))


def resolve_scorer_id(record: RunRecord, scorer_id: str | None) -> str:
    """The requested scorer id, or the only one the run has."""
    if scorer_id is not None:
        if scorer_id not in record.scorers:
            known = ", ".join(sorted(record.scorers)) or "none"
            raise ConfigError(f"run has no scores named {scorer_id!r}; it has: {known}")
        return scorer_id
    if len(record.scorers) != 1:
        known = ", ".join(sorted(record.scorers)) or "none"
        raise ConfigError(f"choose a scorer id with --scorer-id; the run has: {known}")
    return next(iter(record.scorers))


def score_marker_fields(record: RunRecord, scorer_id: str, shard: Shard) -> dict[str, Any]:
    """What a score shard's completion record must say for the shard to count as done."""
    return {
        "stage": "score",
        "scorer": record.scorers[scorer_id]["scorer"],
        "settings": record.scorers[scorer_id]["settings"],
        "input": file_fingerprint(shard.path),
    }


def finished_score_shards(
    layout: RunLayout, record: RunRecord, scorer_id: str
) -> list[tuple[Shard, Path]]:
    """Every input shard with its score shard; a ConfigError if any is not scored yet."""
    pairs, missing = [], []
    for shard in discover_shards(record.input):
        marker = read_marker(layout.marker_path("score", scorer_id, shard.rel))
        expected = score_marker_fields(record, scorer_id, shard)
        out = layout.score_path(scorer_id, shard.rel)
        if (
            marker is None
            or not out.exists()
            or any(marker.get(k) != v for k, v in expected.items())
        ):
            missing.append(shard.rel)
        else:
            pairs.append((shard, out))
    if missing:
        listed = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
        raise ConfigError(
            f"{len(missing)} shard(s) have no finished {scorer_id!r} scores ({listed}): "
            "run datafilter score first"
        )
    return pairs
