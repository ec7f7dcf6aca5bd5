"""Thresholds (streaming order statistics, DuckDB) against numpy on synthetic score shards."""

from __future__ import annotations

import numpy as np
import pytest
from score_fixtures import write_scored_shards

from datafilter.aggregate import ALL, NULL_GROUP, PERCENTILES, ScoreStats
from datafilter.errors import ConfigError, InputError
from datafilter.stages.thresholds import threshold_table


@pytest.fixture
def shards(tmp_path):
    rng = np.random.default_rng(0)
    ppls = [list(rng.lognormal(5, 1, size=n)) for n in (300, 1, 700)]
    domains = ["news", "web", None]
    groups = [[domains[j % 3] for j in range(len(p))] for p in ppls]
    return write_scored_shards(tmp_path, ppls, groups), ppls, groups


def test_exact_percentiles_match_numpy_globally(shards) -> None:
    files, ppls, _ = shards
    stats = ScoreStats(files)
    got = stats.quantiles(PERCENTILES, "ppl")[ALL]
    expected = np.quantile(np.concatenate(ppls), PERCENTILES)  # linear interpolation
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert stats.counts() == {ALL: 1001}


def test_per_group_percentiles_and_null_group(shards) -> None:
    files, ppls, groups = shards
    stats = ScoreStats(files, "domain")
    flat_p = np.concatenate(ppls)
    flat_g = np.array([g if g is not None else NULL_GROUP for gs in groups for g in gs])
    result = stats.quantiles([0.3, 0.6], "ppl")
    assert set(result) == {"news", "web", NULL_GROUP}
    for group, values in result.items():
        np.testing.assert_allclose(values, np.quantile(flat_p[flat_g == group], [0.3, 0.6]))


def test_approx_quantiles_are_close(shards) -> None:
    files, ppls, _ = shards
    stats = ScoreStats(files)
    approx = stats.quantiles([0.1, 0.5, 0.9], "ppl", approx=True)[ALL]
    exact = np.quantile(np.concatenate(ppls), [0.1, 0.5, 0.9])
    np.testing.assert_allclose(approx, exact, rtol=0.05)


def test_approx_table_states_its_rank_error(shards) -> None:
    files, ppls, _ = shards
    stats = ScoreStats(files, "domain")
    _, summary = threshold_table(stats, "s", [0.1, 0.5, 0.9], approx=True)
    assert summary["method"] == "approx"
    errors = summary["max_rank_error"]
    assert set(errors) == {"ppl", "bpb"} and set(errors["ppl"]) == {"news", "web", NULL_GROUP}
    assert all(0 <= e <= summary["groups"][g]["n_docs"] for g, e in errors["ppl"].items())
    assert len(stats._order.passes) == 1  # no exact pass after the first


def test_keys_at_ranks_orders_by_value_then_hash(tmp_path) -> None:
    files = write_scored_shards(tmp_path, [[5.0, 5.0, 5.0, 1.0]], [["a"] * 4])
    stats = ScoreStats(files)
    keys = stats.keys_at_ranks({ALL: [0, 1, 2, 3]})
    assert keys[(ALL, 0)][0] == 1.0
    tied = [keys[(ALL, r)] for r in (1, 2, 3)]
    assert [k[0] for k in tied] == [5.0, 5.0, 5.0]
    assert [k[1] for k in tied] == sorted(k[1] for k in tied)
    assert {k[2] for k in tied} == set(files.score_files) and keys[(ALL, 0)][3] == 3


def test_threshold_table_long_format(shards) -> None:
    files, _, _ = shards
    table, summary = threshold_table(ScoreStats(files, "domain"), "kenlm", PERCENTILES, False)
    assert table.num_rows == 3 * 2 * 101  # groups x metrics x percentiles
    assert summary["n_docs"] == 1001 and summary["method"] == "exact"
    assert summary["groups"]["web"]["n_docs"] == 333
    assert summary["groups"]["web"]["ppl"]["p0"] <= summary["groups"]["web"]["ppl"]["p100"]


def test_group_column_and_metric_errors(shards) -> None:
    files, _, _ = shards
    with pytest.raises(InputError, match="group column 'lang' not found"):
        ScoreStats(files, "lang")
    with pytest.raises(ConfigError, match="unknown metric"):
        ScoreStats(files).quantiles([0.5], "loss")


def test_group_column_with_quotes_is_safe(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = write_scored_shards(tmp_path, [[1.0, 2.0]], [["a", "b"]])
    weird = 'x"; DROP TABLE scores; --'
    table = pq.read_table(files.input_files[0]).append_column(weird, pa.array(["p", "q"]))
    pq.write_table(table, files.input_files[0])
    assert ScoreStats(files, weird).counts() == {"p": 1, "q": 1}


def test_log_histogram_counts_every_document(shards) -> None:
    files, ppls, groups = shards
    hist = ScoreStats(files, "domain").histogram("ppl", bins=20)
    flat_p = np.log(np.concatenate(ppls))
    flat_g = np.array([g if g is not None else NULL_GROUP for gs in groups for g in gs])
    for group, (edges, counts) in hist.items():
        values = flat_p[flat_g == group]
        assert counts.sum() == len(values)
        assert edges[0] == pytest.approx(values.min()) and edges[-1] == pytest.approx(values.max())
        expected, _ = np.histogram(values, bins=edges)
        assert (np.abs(counts - expected) <= 1).all()  # float edge effects at bin borders only


@pytest.mark.parametrize("selector", ["perplexity_band", "ccnet_buckets", "perplexity_sampling"])
def test_plans_with_heavy_ties_under_a_tiny_memory_limit_equal_a_full_sort(
    tmp_path, selector
) -> None:
    """Plans from the streaming passes (a memory limit far below the data: several passes) are
    those of DuckDB's own queries over every row (sorts and windows)."""
    from datafilter.selectors import make_selector

    rng = np.random.default_rng(5)
    ppls = [list(np.round(rng.lognormal(4, 1, size=n), 0)) for n in (900, 40, 1300)]  # ties
    domains = ["news", "web", None]
    groups = [[domains[int(rng.integers(0, 3))] for _ in p] for p in ppls]
    files = write_scored_shards(tmp_path, ppls, groups)
    options = {"perplexity_sampling": {"target_keep": 0.4, "sample_size": 300}}.get(selector, {})
    plan = make_selector(selector, options).plan
    for group_by in (None, "domain"):
        small = ScoreStats(files, group_by, memory_limit="1MB")
        small._order.memory_budget = 3000  # a few hundred rows per pass
        got = plan(small)
        assert len(small._order.passes) >= 2  # exact: past the first pass
        full = ScoreStats(files, group_by)
        full._order = None  # DuckDB: every row sorted
        want = plan(full)
        if selector == "perplexity_sampling":  # a sample's mean: summed in another order
            for g in want["groups"]:
                assert got["groups"][g]["quartiles"] == want["groups"][g]["quartiles"]
                assert got["groups"][g]["factor"] == pytest.approx(want["groups"][g]["factor"])
            continue
        assert got == want
