"""Quota fills in bounded memory against a straightforward full sort.

Random score shards with rejected rows, null groups, repeated id hashes (copies of a document),
zero and null amounts, an empty shard and input shards cut into other row groups; quotas of 0,
within and beyond a group's amount, and groups without a quota. Budgets from ample down to a few
bytes force every path: collect at once, narrow over many passes, collect a window that no
longer narrows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datafilter.order_stats import ScoreShards
from datafilter.order_stats.quotas import fill_quotas
from datafilter.scorers.columns import SCORE_SCHEMA

GROUPS = np.array(["news", "web", "wiki", None], dtype=object)


def write_shards(root: Path, seed: int, sizes=(700, 0, 1300, 40, 2000)):
    """Score and input shards; and every valid row (group, id_hash, file, row, tokens with
    nulls as 0, bytes)."""
    rng = np.random.default_rng(seed)
    (root / "scores").mkdir(parents=True)
    (root / "input").mkdir(parents=True)
    scores, inputs, parts = [], [], []
    for i, n in enumerate(sizes):
        ids = rng.integers(0, 2**64, n, dtype=np.uint64)
        copies = rng.random(n) < 0.3
        ids[copies] = rng.integers(0, 6, int(copies.sum())).astype(np.uint64) << np.uint64(61)
        tokens = rng.integers(0, 50, n)
        null_tokens = rng.random(n) < 0.02
        rejected = rng.random(n) < 0.1
        rows = rng.permutation(n).astype(np.int64)
        group = rng.choice(GROUPS, n)
        table = pa.table(
            {
                "doc_id": [f"d{i}-{r}" for r in range(n)],
                "row": rows,
                "id_hash": pa.array(ids, pa.uint64()),
                "logprob_sum": np.zeros(n),
                "n_tokens": pa.array(tokens, pa.int64(), mask=null_tokens),
                "n_bytes": tokens * 3,
                "ppl": np.where(rejected, np.nan, 10.0),
                "bpb": np.where(rejected, np.nan, 1.0),
                "reject_reason": pa.array(np.where(rejected, "empty_text", None), pa.string()),
            },
            schema=SCORE_SCHEMA,
        )
        score = root / "scores" / f"part-{i:02d}.parquet"
        pq.write_table(table, score, row_group_size=256)
        source = root / "input" / f"part-{i:02d}.parquet"
        pq.write_table(pa.table({"domain": pa.array(group, pa.string())}), source,
                       row_group_size=170)
        scores.append(str(score))
        inputs.append(str(source))
        keep = ~rejected
        names = np.array(["__null__" if g is None else g for g in group], dtype=object)
        parts.append((names[keep], ids[keep], np.full(int(keep.sum()), str(score), object),
                      rows[keep], np.where(null_tokens, 0, tokens)[keep], tokens[keep] * 3))
    rows = [np.concatenate([p[k] for p in parts]) for k in range(6)]
    return ScoreShards(scores, inputs, "domain"), rows


def reference(rows, quotas: dict[str, int] | None) -> dict[str, tuple]:
    """Per group: documents, amount, and with quotas the documents taken in (id_hash, file,
    row) order while the running total stays within the quota, their amount, the last key."""
    group, ids, files, row, amount = rows[:5]
    out = {}
    for g in sorted(set(group.tolist())):
        mine = np.flatnonzero(group == g)
        entry = (len(mine), int(amount[mine].sum()))
        if quotas is not None:
            order = mine[np.lexsort((row[mine], files[mine], ids[mine]))]
            running = np.cumsum(amount[order])
            taken = int((running <= quotas.get(g, 0)).sum())
            last = None
            if 0 < taken < len(mine):
                at = order[taken - 1]
                last = {"id_hash": int(ids[at]), "shard": files[at], "row": int(row[at])}
            kept_amount = int(running[taken - 1]) if taken else 0
            entry += (taken, kept_amount, last)
        out[g] = entry
    return out


def found(result, quotas) -> dict[str, tuple]:
    out = {}
    for g, fill in result.items():
        entry = (fill.documents, fill.amount)
        if quotas is not None:
            last = fill.last if 0 < fill.kept_documents < fill.documents else None
            entry += (fill.kept_documents, fill.kept_amount, last)
        out[g] = entry
    return out


@pytest.mark.parametrize("budget", [1 << 30, 4000, 64], ids=["ample", "small", "tiny"])
@pytest.mark.parametrize("seed", [0, 1])
def test_quota_fills_equal_a_full_sort(tmp_path, budget, seed) -> None:
    shards, rows = write_shards(tmp_path, seed)
    totals = reference(rows, None)
    quotas = {"news": totals["news"][1] // 3, "web": 0, "__null__": totals["__null__"][1] + 5,
              "wiki": totals["wiki"][1] - 1}
    for wanted in (None, quotas):
        got = fill_quotas(shards, "n_tokens", wanted, memory_budget=budget, batch_rows=300)
        assert found(got, wanted) == reference(rows, wanted)
    cut = found(fill_quotas(shards, "n_tokens", quotas, memory_budget=budget), quotas)
    assert cut["news"][2] not in (0, totals["news"][0])  # a real cut inside the group
    assert cut["web"][2] < totals["web"][0] and cut["__null__"][2] == totals["__null__"][0]


def test_every_quota_from_none_to_all_of_one_group(tmp_path) -> None:
    shards, rows = write_shards(tmp_path, 2, sizes=(300, 250))
    by_bytes = (*rows[:4], rows[5])
    total = reference(by_bytes, None)["web"][1]
    for quota in sorted({0, 1, 2, total // 7, total // 2, total - 1, total, total + 1}):
        wanted = {"web": quota}
        got = fill_quotas(shards, "n_bytes", wanted, memory_budget=200, batch_rows=64)
        assert found(got, wanted)["web"] == reference(by_bytes, wanted)["web"], quota


def test_quota_fills_read_shards_on_object_storage(tmp_path, s3_bucket) -> None:
    """The same fills from s3:// copies of the shards; the last key names the remote shard."""
    from datafilter.io.storage import location

    shards, rows = write_shards(tmp_path, 3, sizes=(600, 900))
    remote: dict[str, list[str]] = {"scores": [], "input": []}
    for kind, files in (("scores", shards.score_files), ("input", shards.input_files)):
        for f in files:
            name = f"{s3_bucket}/{kind}/{Path(f).name}"
            location(name).upload(Path(f))
            remote[kind].append(name)
    totals = reference(rows, None)
    quotas = {g: total // 2 for g, (_, total) in totals.items()}
    got = fill_quotas(ScoreShards(remote["scores"], remote["input"], "domain"), "n_tokens",
                      quotas, memory_budget=2000, workers=2)
    names = dict(zip(shards.score_files, remote["scores"], strict=True))
    want = {}
    for g, (n, total, kept, kept_amount, last) in reference(rows, quotas).items():
        if last is not None:
            last = {**last, "shard": names[last["shard"]]}
        want[g] = (n, total, kept, kept_amount, last)
    assert found(got, quotas) == want
