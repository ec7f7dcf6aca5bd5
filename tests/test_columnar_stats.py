"""ScoreStats' streaming order statistics against DuckDB's own SQL and today's in-memory numpy
method (columnar_stats) on the same shards."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from score_fixtures import write_scored_shards

from datafilter.aggregate import ALL, NULL_GROUP, PERCENTILES, ScoreStats
from datafilter.columnar_stats import ColumnarScores
from datafilter.errors import InputError

QS = [*PERCENTILES, 0.333, 0.0001, 0.9999]


def _sql(stats: ScoreStats) -> ScoreStats:
    """The same statistics through DuckDB alone."""
    stats._order = None
    return stats


def _reject_some(files, rng) -> None:
    """Mark a few rows of every score shard rejected (NaN scores and a reason)."""
    for path in files.score_files:
        table = pq.read_table(path)
        bad = rng.random(table.num_rows) < 0.1
        reasons = pa.array(np.where(bad, "empty_text", None), pa.string())
        ppl = np.where(bad, np.nan, table.column("ppl").to_numpy())
        table = table.set_column(table.schema.get_field_index("ppl"), "ppl", pa.array(ppl))
        table = table.set_column(table.num_columns - 1, "reject_reason", reasons)
        pq.write_table(table, path)


@pytest.fixture
def shards(tmp_path):
    rng = np.random.default_rng(7)
    sizes = (500, 1, 0, 1200, 37)
    ppls = [list(rng.lognormal(5, 1, size=n)) for n in sizes]
    names = ["news", "web", "", None, "wiki"]  # "" is a group of its own, None the null group
    groups = [[names[int(rng.integers(0, 5))] for _ in range(n)] for n in sizes]
    files = write_scored_shards(tmp_path, ppls, groups)
    _reject_some(files, rng)
    return files


@pytest.mark.parametrize("group_by", [None, "domain"])
@pytest.mark.parametrize("metric", ["ppl", "bpb"])
def test_quantiles_and_counts_equal_duckdb(shards, group_by, metric) -> None:
    fast = ScoreStats(shards, group_by)
    slow = _sql(ScoreStats(shards, group_by))
    assert fast.counts() == slow.counts()
    got, want = fast.quantiles(QS, metric), slow.quantiles(QS, metric)
    assert list(got) == list(want)
    for group in want:
        # The same order statistics; DuckDB may fuse the interpolation's multiply-add (1 ulp).
        np.testing.assert_allclose(got[group], want[group], rtol=1e-15, atol=0)


@pytest.mark.parametrize("group_by", [None, "domain"])
def test_the_same_bits_as_the_in_memory_method(shards, group_by) -> None:
    """ScoreStats' streaming passes (tiny budget: many passes) give exactly what sorting every
    value in memory (columnar_stats, the method before) gave: counts, quantiles, sort keys."""
    new = ScoreStats(shards, group_by, memory_limit="2MB")
    new._order.memory_budget = 2000  # a few hundred rows a pass: many passes
    old = ColumnarScores(shards.score_files, shards.input_files, group_by, ALL, NULL_GROUP)
    assert new.counts() == old.group_counts()
    for metric in ("ppl", "bpb"):
        got, want = new.quantiles(QS, metric), old.quantiles(QS, metric)
        assert list(got) == list(want)
        for group in want:
            assert np.array_equal(np.array(got[group]), np.array(want[group]), equal_nan=True)
    assert len(new._order.passes) > 2
    wanted = {g: list(range(n)) for g, n in new.counts().items()}
    assert new.keys_at_ranks(wanted) == _sql(ScoreStats(shards, group_by)).keys_at_ranks(wanted)


@pytest.mark.parametrize("group_by", [None, "domain"])
def test_the_sample_is_duckdbs_smallest_id_hashes(shards, group_by, monkeypatch) -> None:
    from datafilter.order_stats import sample

    monkeypatch.setattr(sample, "COMPACT_ROWS", 16)  # compact often
    for n in (100, 5000):
        new = ScoreStats(shards, group_by)
        new._order.batch_rows = 50
        got, want = new.sample("ppl", n), _sql(ScoreStats(shards, group_by)).sample("ppl", n)
        assert list(got) == list(want)
        for group in want:
            assert np.array_equal(np.sort(got[group]), np.sort(want[group]), equal_nan=True)


@pytest.mark.parametrize("group_by", [None, "domain"])
def test_the_nearest_documents_are_duckdbs(shards, group_by, monkeypatch) -> None:
    from datafilter.order_stats import sample

    monkeypatch.setattr(sample, "COMPACT_ROWS", 8)  # compact often
    new, old = ScoreStats(shards, group_by), _sql(ScoreStats(shards, group_by))
    groups = list(new.counts())
    targets = {g: 120.0 + 7 * i for i, g in enumerate(groups[1:])} if group_by else {ALL: 150.0}
    for k in (1, 5, 40):
        assert new.nearest("ppl", targets, k) == old.nearest("ppl", targets, k)


@pytest.mark.parametrize(
    "values",
    [[3, 1, 3, -2, None, 1], [True, False, None, True, True, False]],
    ids=["integer", "boolean"],
)
def test_integer_and_boolean_groups_are_named_as_duckdb_prints_them(tmp_path, values) -> None:
    n = len(values)
    files = write_scored_shards(tmp_path, [list(np.linspace(10, 60, n))], [["x"] * n])
    ids = [f"s0-{r}" for r in range(n)]
    pq.write_table(pa.table({"id": ids, "k": values}), files.input_files[0])
    fast, slow = ScoreStats(files, "k"), _sql(ScoreStats(files, "k"))
    assert fast.counts() == slow.counts()
    assert fast.quantiles([0.5], "ppl") == slow.quantiles([0.5], "ppl")


def test_an_input_shard_not_row_aligned_is_an_error(tmp_path) -> None:
    files = write_scored_shards(tmp_path, [[1.0, 2.0, 3.0]], [["a", "b", "a"]])
    pq.write_table(pa.table({"id": ["x"], "domain": ["a"]}), files.input_files[0])
    with pytest.raises(InputError, match="not row-aligned"):
        ScoreStats(files, "domain").counts()
