"""The manifest: every input row accounted for as kept, dropped (by reason) or rejected."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from datafilter.errors import DatafilterError


def build_manifest(shard_stats: list[dict[str, Any]], context: dict[str, Any]) -> dict[str, Any]:
    """Totals, per-group before/after shares and per-shard counts; checks the row balance."""
    dropped: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    groups: dict[str, Counter[str]] = defaultdict(Counter)
    read = kept = 0
    for stats in shard_stats:
        _check_balance(stats)
        read += stats["read"]
        kept += stats["kept"]
        dropped.update(stats["dropped"])
        rejected.update(stats["rejected"])
        for g, counts in stats["groups"].items():
            groups[g].update(counts)
    totals = {
        "read": read,
        "kept": kept,
        "dropped": sum(dropped.values()),
        "rejected": sum(rejected.values()),
        "dropped_by_reason": dict(sorted(dropped.items())),
        "rejected_by_reason": dict(sorted(rejected.items())),
    }
    _check_balance({"read": read, "kept": kept, "dropped": dropped, "rejected": rejected})
    return {
        **context,
        "totals": totals,
        "groups": _group_shares(groups),
        "shards": sorted(shard_stats, key=lambda s: s["shard"]),
    }


def _check_balance(stats: dict[str, Any]) -> None:
    total = stats["kept"] + sum(stats["dropped"].values()) + sum(stats["rejected"].values())
    if total != stats["read"]:
        where = stats.get("shard", "all shards")
        raise DatafilterError(
            f"row accounting broken for {where}: "
            f"kept+dropped+rejected={total} != read={stats['read']}"
        )


def _group_shares(groups: dict[str, Counter[str]]) -> dict[str, dict[str, Any]]:
    """Per group: counts plus its share of documents and tokens before and after selection."""
    read_docs = sum(c["read"] for c in groups.values()) or 1
    kept_docs = sum(c["kept"] for c in groups.values()) or 1
    read_tokens = sum(c["read_tokens"] for c in groups.values()) or 1
    kept_tokens = sum(c["kept_tokens"] for c in groups.values()) or 1
    out = {}
    for g, c in sorted(groups.items()):
        out[g] = {
            **dict(sorted(c.items())),
            "share_docs_before": round(c["read"] / read_docs, 6),
            "share_docs_after": round(c["kept"] / kept_docs, 6),
            "share_tokens_before": round(c["read_tokens"] / read_tokens, 6),
            "share_tokens_after": round(c["kept_tokens"] / kept_tokens, 6),
        }
    return out
