"""The selectors of issue 4 as pure functions: boundaries, ties, groups, NaN and inf
(harmful_outlier: tests/test_harmful_outlier.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from score_fixtures import write_scored_shards

from datafilter.aggregate import ALL, ScoreStats
from datafilter.errors import ConfigError
from datafilter.selectors import make_selector
from datafilter.selectors.perplexity_sampling import keep_probability, solve_factor
from datafilter.selectors.random_keys import uniform

HASHES = np.arange(1, 8, dtype=np.uint64)


def _scores(ppl) -> dict[str, np.ndarray]:
    ppl = np.asarray(ppl, dtype=np.float64)
    return {"ppl": ppl, "bpb": ppl / 100, "id_hash": np.arange(1, len(ppl) + 1, dtype=np.uint64)}


def _all(n: int) -> np.ndarray:
    return np.full(n, ALL, dtype=object)


# ----------------------------------------------------------------------------- ccnet_buckets


def test_buckets_use_strict_cuts_per_group() -> None:
    selector = make_selector("ccnet_buckets")
    plan = {
        "metric": "ppl",
        "groups": {"a": {"head_below": 10.0, "middle_below": 20.0},
                   "b": {"head_below": 100.0, "middle_below": 200.0}},
    }  # fmt: skip
    ppl = [9.99, 10.0, 19.99, 20.0, 50.0, 50.0, math.inf, math.nan]
    groups = np.array(["a", "a", "a", "a", "a", "b", "b", "b"], dtype=object)
    decision = selector.decide(_scores(ppl), groups, plan, seed=0)
    assert decision.columns["bucket"].tolist() == [
        "head", "middle", "middle", "tail", "tail", "head", "tail", None
    ]  # fmt: skip
    assert decision.keep.tolist() == [True] * 7 + [False]


def test_buckets_keep_only_chosen_and_name_drop_reasons() -> None:
    selector = make_selector("ccnet_buckets", {"keep": ["head"]})
    plan = {"metric": "ppl", "groups": {ALL: {"head_below": 10.0, "middle_below": 20.0}}}
    decision = selector.decide(_scores([5, 15, 25]), _all(3), plan, seed=0)
    assert decision.keep.tolist() == [True, False, False]
    assert decision.drop_reason[1:].tolist() == ["ccnet_buckets:middle", "ccnet_buckets:tail"]


def test_bucket_plan_from_real_percentiles_and_one_document_group(tmp_path) -> None:
    values = [list(map(float, range(1, 11))) + [42.0]]
    files = write_scored_shards(tmp_path, values, [["a"] * 10 + ["solo"]])
    plan = make_selector("ccnet_buckets").plan(ScoreStats(files, "domain"))
    assert plan["groups"]["a"] == {
        "head_below": pytest.approx(np.quantile(range(1, 11), 0.3)),
        "middle_below": pytest.approx(np.quantile(range(1, 11), 0.6)),
    }
    # One document: both cuts equal its value, so it is strictly below neither: tail.
    assert plan["groups"]["solo"] == {"head_below": 42.0, "middle_below": 42.0}


def test_bucket_options_validated() -> None:
    with pytest.raises(ConfigError, match="cuts"):
        make_selector("ccnet_buckets", {"cuts": [0.7, 0.3]})
    with pytest.raises(ConfigError, match="keep"):
        make_selector("ccnet_buckets", {"keep": ["top"]})


# ----------------------------------------------------------------------- perplexity_sampling


def test_gaussian_probability_matches_the_formula() -> None:
    q = (50.0, 100.0, 200.0)
    ppl = np.array([100.0, 50.0, 300.0])
    expected = 0.78 * np.exp(-(((ppl - 100.0) / 100.0) ** 2) / 4.5)
    np.testing.assert_allclose(keep_probability(ppl, q, "gaussian", 0.78, 4.5), expected)


def test_stepwise_ranges_include_the_quartiles_themselves() -> None:
    q = (50.0, 100.0, 200.0)
    ppl = np.array([10.0, 50.0, 75.0, 100.0, 150.0, 200.0, 201.0, math.inf, math.nan])
    p = keep_probability(ppl, q, "stepwise", 10.0, 4.5)
    expected = [10 / 50, 10 / 50, 10 / 50, 10 / 50, 10 / 100, 10 / 100, 10 / 2000, 10 / 2000, 0]
    np.testing.assert_allclose(p, expected)
    assert p[3] > 0 and p[5] > 0


def _published_stepwise_range(ppl: float, b0: float, b1: float, b2: float) -> float | None:
    """The range BERTIN's published ``_should_keep_doc_step`` (bertin-project mc4-sampling)
    gives ppl: its four tests are ppl <= b0, b0 < ppl < b1, b1 < ppl < b2 and ppl >= b2; None
    where none holds (ppl == b1: the published function fails there)."""
    tests = [
        (ppl <= b0, b0),
        (b0 < ppl < b1, b1 - b0),
        (b1 < ppl < b2, b2 - b1),
        (ppl >= b2, 10 * b2),
    ]
    return next((span for holds, span in tests if holds), None)


def test_stepwise_differs_from_the_published_code_only_at_b1_and_b2() -> None:
    """README and docstring: the published code gives ppl == b2 the tail's range 10 * b2 and
    ppl == b1 none; everywhere else the ranges agree."""
    q = (50.0, 100.0, 200.0)
    near = [np.nextafter(q, 0), np.nextafter(q, 1e9)]  # one float below and above each quartile
    ppl = np.concatenate([np.linspace(1.0, 400.0, 799), q, *near])
    factor = 1.0
    ours = keep_probability(ppl, q, "stepwise", factor, 4.5)
    for value, p in zip(ppl, ours, strict=True):
        published = _published_stepwise_range(value, *q)
        if value == q[1]:
            assert published is None and p == factor / (q[1] - q[0])
        elif value == q[2]:
            assert published == 10 * q[2] and p == factor / (q[2] - q[1])
        else:
            assert p == factor / published, value


def test_stepwise_zero_width_range_and_clipping() -> None:
    p = keep_probability(np.array([5.0, 5.0, 6.0]), (5.0, 5.0, 5.0), "stepwise", 100.0, 4.5)
    assert ((p >= 0) & (p <= 1)).all() and p[0] == 1.0


def test_solved_factor_hits_the_target() -> None:
    ppl = np.random.default_rng(0).lognormal(5, 0.7, size=20_000)
    q = tuple(np.quantile(ppl, [0.25, 0.5, 0.75]))
    for method in ("gaussian", "stepwise"):
        for target in (0.05, 0.3, 0.9):
            factor = solve_factor(ppl, q, method, target, 4.5)
            got = keep_probability(ppl, q, method, factor, 4.5).mean()
            assert got == pytest.approx(target, abs=1e-6), (method, target)


def test_unreachable_target_is_an_error() -> None:
    ppl = np.array([math.inf, math.inf, 10.0])
    with pytest.raises(ConfigError, match="cannot be reached"):
        solve_factor(ppl, (5.0, 10.0, 20.0), "gaussian", 0.9, 4.5)


def test_uniform_draws_are_deterministic_and_uniform() -> None:
    hashes = np.arange(100_000, dtype=np.uint64) * np.uint64(7919)
    u = uniform(hashes, seed=3)
    assert ((u >= 0) & (u < 1)).all()
    np.testing.assert_array_equal(u, uniform(hashes, seed=3))
    assert not np.array_equal(u, uniform(hashes, seed=4))
    counts, _ = np.histogram(u, bins=10, range=(0, 1))
    assert counts.min() > 9_500 and counts.max() < 10_500
    assert uniform(hashes[:5], seed=-1).shape == (5,)


def test_sampling_keeps_the_expected_fraction_end_to_end(tmp_path) -> None:
    ppl = list(np.random.default_rng(1).lognormal(5, 0.5, size=8000))
    files = write_scored_shards(tmp_path, [ppl], [["a"] * 8000])
    selector = make_selector("perplexity_sampling", {"target_keep": 0.25})
    plan = selector.plan(ScoreStats(files))
    import pyarrow.parquet as pq

    scores = pq.read_table(files.score_files[0])
    arrays = {c: scores[c].to_numpy() for c in ("ppl", "bpb", "id_hash")}
    decision = selector.decide(arrays, _all(8000), plan, seed=0)
    assert decision.keep.mean() == pytest.approx(0.25, abs=0.02)
    assert plan["groups"][ALL]["expected_keep"] == pytest.approx(0.25, abs=1e-6)
    again = selector.decide(arrays, _all(8000), plan, seed=0)
    np.testing.assert_array_equal(decision.keep, again.keep)
    np.testing.assert_allclose(decision.columns["keep_prob"], again.columns["keep_prob"])
    flag = make_selector("perplexity_sampling", {"target_keep": 0.25, "action": "flag"})
    flagged = flag.decide(arrays, _all(8000), plan, seed=0)
    assert flagged.keep.all()
    np.testing.assert_array_equal(flagged.columns["keep"], decision.keep)


def test_default_gaussian_factor_is_bertins() -> None:
    selector = make_selector("perplexity_sampling")
    assert selector._target() is None
    assert make_selector("perplexity_sampling", {"method": "stepwise"})._target() == 0.5
