"""``run.json``: what a run folder scores (input, columns) and with which scorers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from datafilter.errors import ConfigError
from datafilter.io.atomic import write_json
from datafilter.io.content import current_record
from datafilter.io.layout import RunLayout
from datafilter.io.markers import read_marker
from datafilter.io.shards import Shard, discover_shards
from datafilter.io.storage import AnyPath


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


def score_marker_fields(record: RunRecord, scorer_id: str) -> dict[str, Any]:
    """The settings a score shard's completion record must name for the shard to count as done
    (its input and output are checked by content: :func:`score_check`)."""
    return {
        "stage": "score",
        "scorer": record.scorers[scorer_id]["scorer"],
        "settings": record.scorers[scorer_id]["settings"],
    }


@dataclass(frozen=True)
class ScoreCheck:
    """Whether a shard's scores are finished and valid: ``problem`` says why not. ``fresh`` is
    the completion record with today's file signatures when they changed but the bytes did not
    (the caller holding the run folder exclusively writes it back, so the next check is free)."""

    problem: str | None
    marker: dict[str, Any] | None = None
    fresh: dict[str, Any] | None = None


def score_check(
    layout: RunLayout, record: RunRecord, scorer_id: str, shard: Shard, *, verify_inputs=False
) -> ScoreCheck:
    """Check a shard's completion record: settings, input bytes, score shard bytes."""
    marker = read_marker(layout.marker_path("score", scorer_id, shard.rel))
    if marker is None:
        return ScoreCheck("not scored")
    if any(marker.get(k) != v for k, v in score_marker_fields(record, scorer_id).items()):
        return ScoreCheck("scored with other settings", marker)
    source = current_record(shard.path, marker.get("input"), verify=verify_inputs)
    if source is None:
        return ScoreCheck("the input shard changed since it was scored", marker)
    output = current_record(layout.score_path(scorer_id, shard.rel), marker.get("output"))
    if output is None:
        return ScoreCheck("its score shard is missing, damaged or changed", marker)
    if source == marker["input"] and output == marker["output"]:
        return ScoreCheck(None, marker)
    return ScoreCheck(None, marker, {**marker, "input": source, "output": output})


def finished_score_shards(
    layout: RunLayout, record: RunRecord, scorer_id: str
) -> list[tuple[Shard, Path]]:
    """Every input shard with its score shard; a ConfigError if any is not scored yet."""
    return [(shard, path) for shard, path, _ in finished_score_markers(layout, record, scorer_id)]


def finished_score_markers(
    layout: RunLayout, record: RunRecord, scorer_id: str
) -> list[tuple[Shard, AnyPath, dict[str, Any]]]:
    """Every input shard with its score shard and completion record, each checked (settings,
    input and score shard bytes); a ConfigError naming the shards that are not finished."""
    found, missing = [], []
    for shard in discover_shards(record.input):
        check = score_check(layout, record, scorer_id, shard)
        if check.problem is not None:
            missing.append(f"{shard.rel}: {check.problem}")
        else:
            found.append((shard, layout.score_path(scorer_id, shard.rel), check.marker))
    if missing:
        listed = "; ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
        raise ConfigError(
            f"{len(missing)} shard(s) have no finished {scorer_id!r} scores ({listed}): "
            "run datafilter score first"
        )
    return found
