"""Perplexity pruning: exact kept counts, tie-breaking, groups, and the pure decision."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow.parquet as pq
import pytest
from score_fixtures import write_scored_shards

from datafilter.aggregate import ALL, ScoreStats
from datafilter.errors import ConfigError
from datafilter.selectors import make_selector
from datafilter.selectors.perplexity_band import band_ranks


@pytest.mark.parametrize("criterion", ["low", "medium", "high"])
def test_band_ranks_exhaustive(criterion: str) -> None:
    for n, keep in itertools.product(range(0, 40), [0.0, 0.1, 0.25, 1 / 3, 0.5, 0.9, 1.0]):
        start, stop = band_ranks(n, keep, criterion)
        assert 0 <= start <= stop <= n
        assert stop - start == min(n, int(np.floor(keep * n + 0.5)))
        if criterion == "low":
            assert start == 0
        if criterion == "high":
            assert stop == n
        if criterion == "medium":  # centred: the two tails differ by at most one
            assert abs(start - (n - stop)) <= 1


def test_kept_count_rounds_half_up() -> None:
    """README and docstring: floor(keep * n + 0.5), not Python's round (half to even)."""
    cases = {(5, 0.5): 3, (9, 0.5): 5, (1, 0.5): 1, (3, 0.5): 2, (10, 0.15): 2, (10, 0.25): 3}
    for (n, keep), kept in cases.items():
        start, stop = band_ranks(n, keep, "low")
        assert stop - start == kept, (n, keep)
    assert round(0.5 * 5) == 2 and round(0.5 * 9) == 4  # what "round(keep * n)" would say
    assert band_ranks(4, 0.5, "medium") == (1, 3) and band_ranks(5, 0.5, "high") == (2, 5)


def _decide_all(files, selector, group_by=None):
    stats = ScoreStats(files, group_by)
    plan = selector.plan(stats)
    kept = []
    for score_file, input_file in zip(files.score_files, files.input_files, strict=True):
        scores = pq.read_table(score_file)
        arrays = {c: scores[c].to_numpy() for c in ("ppl", "bpb", "id_hash", "row")}
        arrays["score_file"] = np.full(scores.num_rows, score_file, dtype=object)
        if group_by:
            groups = np.array(pq.read_table(input_file)[group_by].to_pylist(), dtype=object)
        else:
            groups = np.full(scores.num_rows, ALL, dtype=object)
        decision = selector.decide(arrays, groups, plan, seed=0)
        kept.extend(np.array(scores["doc_id"].to_pylist())[decision.keep].tolist())
    return plan, kept


@pytest.mark.parametrize("criterion", ["low", "medium", "high"])
def test_exact_count_with_heavy_ties(tmp_path, criterion: str) -> None:
    # 3 distinct values over 101 documents: every threshold falls inside a block of ties.
    values = [[float(1 + (i % 3)) for i in range(60)], [float(1 + (i % 3)) for i in range(41)]]
    files = write_scored_shards(tmp_path, values, [["a"] * 60, ["a"] * 41])
    selector = make_selector("perplexity_band", {"criterion": criterion, "keep": 0.3})
    plan, kept = _decide_all(files, selector)
    assert len(kept) == 30 == plan["groups"][ALL]["kept"]
    all_values = np.concatenate(values)
    kept_values = sorted(all_values[[_index(k) for k in kept]])
    if criterion == "low":
        assert kept_values == [1.0] * 30
    if criterion == "high":
        assert kept_values == [3.0] * 30
    if criterion == "medium":
        assert kept_values == [2.0] * 30
    # Reruns keep the very same documents.
    assert _decide_all(files, selector)[1] == kept


def _index(doc_id: str) -> int:
    shard, row = doc_id[1:].split("-")
    return int(row) + (60 if shard == "1" else 0)


def test_medium_keeps_the_middle_of_distinct_values(tmp_path) -> None:
    values = [float(v) + 1 for v in np.random.default_rng(1).permutation(100)]
    files = write_scored_shards(tmp_path, [values], [["a"] * 100])
    selector = make_selector("perplexity_band", {"criterion": "medium", "keep": 0.5})
    _, kept = _decide_all(files, selector)
    kept_values = sorted(values[int(k.split("-")[1])] for k in kept)
    assert kept_values == [float(v) for v in range(26, 76)]


def test_per_group_fraction_and_one_document_group(tmp_path) -> None:
    values = [list(range(1, 11)) + list(range(100, 130)) + [7.0]]
    groups = [["a"] * 10 + ["b"] * 30 + ["solo"]]
    files = write_scored_shards(tmp_path, values, groups)
    selector = make_selector("perplexity_band", {"criterion": "low", "keep": 0.5})
    plan, kept = _decide_all(files, selector, group_by="domain")
    assert {g: p["kept"] for g, p in plan["groups"].items()} == {"a": 5, "b": 15, "solo": 1}
    assert len(kept) == 21


def test_keep_zero_and_one(tmp_path) -> None:
    files = write_scored_shards(tmp_path, [[1.0, 2.0, 3.0]], [["a"] * 3])
    for keep, expected in ((0.0, 0), (1.0, 3)):
        selector = make_selector("perplexity_band", {"criterion": "medium", "keep": keep})
        assert len(_decide_all(files, selector)[1]) == expected


def test_nan_scores_are_never_kept(tmp_path) -> None:
    files = write_scored_shards(tmp_path, [[1.0, 2.0]], [["a"] * 2])
    selector = make_selector("perplexity_band", {"criterion": "high", "keep": 1.0})
    plan = selector.plan(ScoreStats(files))
    scores = {
        "ppl": np.array([np.nan, 2.0]),
        "bpb": np.zeros(2),
        "id_hash": np.zeros(2, np.uint64),
        "row": np.arange(2),
        "score_file": np.array(["s", "s"], dtype=object),
    }
    plan["groups"][ALL]["lower"] = {"value": 1.0, "id_hash": 0, "shard": "s", "row": 0}
    decision = selector.decide(scores, np.array([ALL, ALL], dtype=object), plan, seed=0)
    assert decision.keep.tolist() == [False, True]


def test_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="keep"):
        make_selector("perplexity_band", {"keep": 1.5})
    with pytest.raises(ConfigError, match="bogus"):
        make_selector("perplexity_band", {"bogus": 1})
    with pytest.raises(
        ConfigError, match="known selectors: ccnet_buckets, harmful_outlier, perplexity_band"
    ):
        make_selector("nope")


def test_exact_count_when_ids_and_scores_repeat(tmp_path) -> None:
    # Re-crawled pages: the same id and the same score twice. Place in the corpus breaks the tie.
    import pyarrow as pa

    files = write_scored_shards(tmp_path, [[float(1 + i // 2) for i in range(20)]], [["a"] * 20])
    table = pq.read_table(files.score_files[0])
    doubled = [h for h in table["id_hash"].to_pylist()[::2] for _ in (0, 1)]
    table = table.set_column(2, "id_hash", pa.array(doubled, pa.uint64()))
    pq.write_table(table, files.score_files[0])
    selector = make_selector("perplexity_band", {"criterion": "low", "keep": 0.25})
    plan, kept = _decide_all(files, selector)
    assert len(kept) == plan["groups"][ALL]["kept"] == 5
