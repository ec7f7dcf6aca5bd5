"""The selector's plan as a file: ``RUN/thresholds/plans/<selector>-<hash>.json``.

The thresholds stage writes it (:func:`write_plan`); the select stage reads it and applies it
shard by shard, never computing one itself. A plan file holds what it was asked for (the
:class:`PlanRequest`: selector, its validated options, scorer id, extra scorer ids, group
column), the sha256 of every score shard it was computed from and their fingerprint, the
datafilter version, when it was made, and the plan itself (``plan``: every cut per group).

``<hash>`` is a digest of the request, so the same request finds its plan; a plan made from
other scores (the fingerprint differs) is refused, and so is one made for another request.
A plan may be copied and edited by hand and given to select with ``--plan``.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from datafilter import __version__
from datafilter.errors import ConfigError
from datafilter.io.atomic import dumps_json, write_json
from datafilter.io.layout import RunLayout
from datafilter.io.storage import AnyPath, location

PLAN_FORMAT = 1
PLANS_DIR = "plans"


@dataclass(frozen=True)
class PlanRequest:
    """What a plan is made for; its digest names the plan file."""

    selector: str
    options: dict[str, Any]  # validated: every option, defaults included
    scorer_id: str
    group_by: str | None
    extra_scorers: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return hashlib.sha256(dumps_json(asdict(self)).encode()).hexdigest()[:16]

    @property
    def file_name(self) -> str:
        return f"{self.selector}-{self.key}.json"

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PlanRequest:
        return cls(
            selector=raw["selector"],
            options=raw["options"],
            scorer_id=raw["scorer_id"],
            group_by=raw["group_by"],
            extra_scorers=list(raw.get("extra_scorers", [])),
        )


def plan_path(layout: RunLayout, request: PlanRequest) -> AnyPath:
    """Where the thresholds stage writes the plan of ``request``."""
    return layout.root / "thresholds" / PLANS_DIR / request.file_name


def fingerprint(shards: dict[str, dict[str, str]]) -> str:
    """A digest of every score shard's sha256 (scorer id -> shard -> sha256)."""
    return hashlib.sha256(dumps_json(shards).encode()).hexdigest()


def write_plan(
    path: AnyPath,
    request: PlanRequest,
    shards: dict[str, dict[str, str]],
    scorers: dict[str, Any],
    body: dict[str, Any],
) -> None:
    """Write the plan file (atomically); an existing file with the same plan is kept as it is
    (a rerun on the same scores leaves the same bytes)."""
    data = {
        "format": PLAN_FORMAT,
        "request": asdict(request),
        "scores": {"fingerprint": fingerprint(shards), "shards": shards},
        "scorers": scorers,
        "datafilter_version": __version__,
        "plan": body,
    }
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = None
    if isinstance(old, dict) and json.loads(dumps_json(data)) == {
        k: v for k, v in old.items() if k != "created"
    }:
        return
    data["created"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    write_json(path, data)


def body_digest(data: dict[str, Any]) -> str:
    """The sha256 of a plan file's ``plan`` (what select applies), as stable JSON."""
    return hashlib.sha256(dumps_json(data["plan"]).encode()).hexdigest()


def read_plan(path: str | AnyPath) -> dict[str, Any]:
    """A plan file, checked to be one; a ConfigError naming the file otherwise."""
    where = location(path)
    try:
        data = json.loads(where.read_text())
    except FileNotFoundError:
        raise ConfigError(f"plan {where} not found") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"plan {where} cannot be read: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
        raise ConfigError(f"{where} is not a datafilter plan (format {PLAN_FORMAT})")
    for key in ("request", "scores", "plan"):
        if not isinstance(data.get(key), dict):
            raise ConfigError(f"plan {where} has no {key!r} object")
    return data


def thresholds_command(run_dir: AnyPath, request: PlanRequest) -> str:
    """The command that makes the plan of ``request`` (options that differ from the default)."""
    from datafilter.selectors import make_selector

    options = make_selector(request.selector, request.options).options
    words = ["datafilter", "thresholds", "--run", str(run_dir)]
    words += ["--scorer-id", request.scorer_id, "--selector", request.selector]
    for key, value in options.model_dump(mode="json", exclude_defaults=True).items():
        text = value if isinstance(value, str) else json.dumps(value)
        words += ["--set", f"{key}={text}"]
    if request.group_by is not None:
        words += ["--group-by", request.group_by]
    return " ".join(shlex.quote(w) for w in words)
