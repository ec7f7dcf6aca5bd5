"""A fixed number of documents per domain, the same on every run with the same seed.

Each document's key is a pure function of (seed, id): the documents of a domain with the
``per_domain`` smallest keys are taken (ties, i.e. repeated ids, by shard and row). The sample
keeps the input's schema and shard layout (one output shard per input shard that has sampled
rows, rows in input order), so ``datafilter score`` reads it like any input. A rerun that would
write the same sample leaves the files alone, so the scores of the sample stay valid.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from datafilter.correlation.domains import DomainSpec, domains_of
from datafilter.errors import ConfigError, InputError
from datafilter.io.atomic import remove_temp_files, write_json, write_table
from datafilter.io.guard import input_places, place, refuse_overlaps, require_own_folder
from datafilter.io.markers import file_fingerprint
from datafilter.io.shards import Shard, discover_shards, open_parquet, require_column
from datafilter.scorers.columns import id_hash
from datafilter.selectors.random_keys import uniform

log = logging.getLogger(__name__)

SUMMARY_NAME = "_sample.json"  # a leading _ : readers of the folder skip it


def sample_per_domain(
    input: str | Path,
    output: str | Path,
    domain: DomainSpec,
    *,
    per_domain: int,
    seed: int = 0,
    id_column: str | None = None,
) -> dict[str, Any]:
    """Write the sample to ``output`` (Parquet shards + ``_sample.json``) and return the summary."""
    if per_domain < 1:
        raise ConfigError(f"per_domain must be at least 1, got {per_domain}")
    out = Path(output).expanduser().resolve()
    root = Path(input).expanduser().resolve()
    refuse_overlaps([place("sample folder", out)], input_places(root))
    previous = _previous(out)
    require_own_folder(out, "sample folder", previous is not None, set(), False, "another --output")
    shards = discover_shards(root)
    chosen = _choose(shards, domain, per_domain, seed, id_column)
    rows_of = {
        shard.rel: np.sort(chosen["row"][chosen["shard"] == index])
        for index, shard in enumerate(shards)
    }
    rows_of = {rel: rows for rel, rows in rows_of.items() if len(rows)}
    counts = Counter(chosen["domain_names"])
    picked = hashlib.sha256()
    for rel, rows in rows_of.items():
        picked.update(rel.encode() + b"\0" + rows.astype(np.int64).tobytes())
    summary = {
        "input": str(root),
        "input_shards": {s.rel: file_fingerprint(s.path) for s in shards},
        "domain": domain.describe(),
        "id_column": id_column,
        "per_domain": per_domain,
        "seed": seed,
        "documents": int(len(chosen["row"])),
        "rows_sha256": picked.hexdigest(),
        "shards": list(rows_of),
        "domains": {
            d: {"available": chosen["available"][d], "sampled": counts.get(d, 0)}
            for d in sorted(chosen["available"])
        },
    }
    if _unchanged(out, summary):
        log.info(f"corr-sample: {out} already holds this sample; nothing to do")
        return summary
    remove_temp_files(out)
    # Name every shard about to be written first: a killed run leaves a folder that is ours.
    claimed = set(rows_of) | set((previous or {}).get("shards", []))
    write_json(out / SUMMARY_NAME, {"pending": True, "shards": sorted(claimed)})
    for shard in shards:
        if shard.rel in rows_of:
            table = open_parquet(shard.path).read().take(pa.array(rows_of[shard.rel]))
            write_table(out / shard.rel, table)
    for rel in (previous or {}).get("shards", []):
        if rel not in rows_of and (out / rel).is_file():
            (out / rel).unlink()  # written by an earlier sample with other settings
    write_json(out / SUMMARY_NAME, summary)
    small = [d for d, c in summary["domains"].items() if c["sampled"] < per_domain]
    log.info(
        f"corr-sample: {summary['documents']} documents from {len(summary['domains'])} domains "
        f"-> {out}" + (f" ({len(small)} domain(s) have fewer than {per_domain})" if small else "")
    )
    return summary


def _previous(out: Path) -> dict[str, Any] | None:
    """The summary of the sample ``out`` holds (it names the shards it wrote), if any."""
    try:
        previous = json.loads((out / SUMMARY_NAME).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None
    return previous if isinstance(previous, dict) else None


def _unchanged(out: Path, summary: dict[str, Any]) -> bool:
    """Whether ``out`` already holds exactly this sample (so its scores stay valid)."""
    previous = _previous(out)
    return previous == summary and all((out / rel).is_file() for rel in summary["shards"])


def _choose(
    shards: list[Shard], domain: DomainSpec, per_domain: int, seed: int, id_column: str | None
) -> dict[str, Any]:
    """Per domain, the ``per_domain`` (shard index, row) pairs with the smallest keys."""
    codes: dict[str, int] = {}
    available: Counter[str] = Counter()
    kept = {k: np.empty(0, dtype=t) for k, t in _FIELDS.items()}
    for index, shard in enumerate(shards):
        pf = open_parquet(shard.path)
        columns = [domain.column] + ([id_column] if id_column else [])
        for column in columns:
            require_column(pf, column, shard.path)
        try:
            table = pf.read(columns=columns)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"corrupt Parquet data ({exc})", path=str(shard.path)) from exc
        names = domains_of(table.column(domain.column), domain)
        available.update(names)
        n = table.num_rows
        if id_column:
            ids = table.column(id_column).cast(pa.string()).to_pylist()
        else:
            ids = [f"{shard.rel}:{r}" for r in range(n)]
        valid = np.array([i is not None for i in ids], dtype=bool)
        hashes = np.array([id_hash(i) if i is not None else 0 for i in ids], dtype=np.uint64)
        part = {
            "code": np.array([codes.setdefault(d, len(codes)) for d in names], dtype=np.int64),
            "key": uniform(hashes, seed),
            "shard": np.full(n, index, dtype=np.int64),
            "row": np.arange(n, dtype=np.int64),
        }
        merged = {k: np.concatenate([kept[k], part[k][valid]]) for k in kept}
        kept = _smallest_per_code(merged, per_domain)
    names_by_code = {c: d for d, c in codes.items()}
    return {
        **kept,
        "domain_names": [names_by_code[int(c)] for c in kept["code"]],
        "available": dict(available),
    }


_FIELDS = {"code": np.int64, "key": np.float64, "shard": np.int64, "row": np.int64}


def _smallest_per_code(items: dict[str, np.ndarray], k: int) -> dict[str, np.ndarray]:
    order = np.lexsort((items["row"], items["shard"], items["key"], items["code"]))
    code = items["code"][order]
    starts = np.r_[0, np.flatnonzero(np.diff(code)) + 1]
    rank = np.arange(len(code)) - np.repeat(starts, np.diff(np.r_[starts, len(code)]))
    pick = order[rank < k] if len(code) else order
    return {name: values[pick] for name, values in items.items()}
