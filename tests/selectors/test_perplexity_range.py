"""perplexity_range: keep ppl (or bpb) inside absolute bounds, per group if asked; then through
the thresholds and select stages on the demo corpus (real KenLM and DuckDB)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from score_fixtures import write_scored_shards

from datafilter import api
from datafilter.aggregate import ALL, ScoreStats
from datafilter.errors import ConfigError
from datafilter.selectors import make_selector


def _scores(ppl) -> dict[str, np.ndarray]:
    ppl = np.asarray(ppl, dtype=np.float64)
    return {"ppl": ppl, "bpb": ppl / 100, "id_hash": np.arange(1, len(ppl) + 1, dtype=np.uint64)}


def test_bounds_are_inclusive_and_nan_is_never_kept(tmp_path: Path) -> None:
    selector = make_selector("perplexity_range", {"min": 10, "max": 20})
    files = write_scored_shards(tmp_path, [[5.0, 10.0, 15.0, 20.0, 25.0]], [["a"] * 5])
    plan = selector.plan(ScoreStats(files, None))
    assert plan["groups"] == {ALL: {"min": 10.0, "max": 20.0, "n_docs": 5}}
    ppl = [9.999, 10.0, 15.0, 20.0, 20.001, math.nan, math.inf]
    decision = selector.decide(_scores(ppl), np.full(len(ppl), ALL, dtype=object), plan, seed=0)
    assert decision.keep.tolist() == [False, True, True, True, False, False, False]
    reasons = decision.drop_reason[[0, 4, 6]].tolist()
    assert reasons == ["perplexity_range:below_min"] + ["perplexity_range:above_max"] * 2


def test_one_open_end_bpb_and_groups(tmp_path: Path) -> None:
    only_max = make_selector("perplexity_range", {"max": 1500})  # "drop ppl above 1500"
    groups = np.full(3, ALL, dtype=object)
    plan = {"metric": "ppl", "default": {"min": None, "max": 1500.0}, "groups": {}}
    assert only_max.decide(_scores([1, 1500, 1501]), groups, plan, 0).keep.tolist() == [
        True, True, False,
    ]  # fmt: skip
    by_group = make_selector(
        "perplexity_range", {"metric": "bpb", "max": 0.5, "groups": {"b": {"min": 0.2}}}
    )
    files = write_scored_shards(tmp_path, [[10.0, 30.0, 60.0, 10.0, 30.0, 60.0]], [
        ["a", "a", "a", "b", "b", "b"]
    ])  # fmt: skip
    plan = by_group.plan(ScoreStats(files, "domain"))
    assert plan["groups"]["a"] == {"min": None, "max": 0.5, "n_docs": 3}
    assert plan["groups"]["b"] == {"min": 0.2, "max": None, "n_docs": 3}
    g = np.array(["a", "a", "a", "b", "b", "b"], dtype=object)
    decision = by_group.decide(_scores([10, 30, 60, 10, 30, 60]), g, plan, 0)
    assert decision.keep.tolist() == [True, True, False, False, True, True]
    missing = make_selector("perplexity_range", {"groups": {"zz": {"max": 3}}})
    assert "zz" in missing.plan(ScoreStats(files, "domain"))["warnings"][0]


@pytest.mark.parametrize(
    "options, message",
    [({}, "give min, max or both"), ({"min": 5, "max": 2}, "min 5.0 is above max 2.0"),
     ({"max": 3, "mx": 4}, "mx"), ({"groups": {"a": {}}}, "give min, max or both")],
)  # fmt: skip
def test_bad_options_are_refused(options, message) -> None:
    with pytest.raises(ConfigError, match=message):
        make_selector("perplexity_range", options)


def test_through_the_stages(tmp_path: Path, demo_corpus, kenlm_model_dir: Path) -> None:
    pool = tmp_path / "pool"
    shutil.copytree(demo_corpus.pool_dir, pool)
    run, out = tmp_path / "run", tmp_path / "out"
    local = {"executor": "local"}
    api.score(pool, run, options={"model": str(kenlm_model_dir)}, id_column="id", runtime=local)
    scores = pq.read_table(run / "scores" / "kenlm")
    ppl = scores["ppl"].to_numpy()
    low, high = np.nanpercentile(ppl, [20, 70])
    selection = {"selector": "perplexity_range", "options": {"min": low, "max": high}}
    api.thresholds(run, **selection)
    manifest = api.select(run, out, runtime=local, with_scores=True, **selection)
    expected = int(((ppl >= low) & (ppl <= high)).sum())
    assert manifest["totals"]["kept"] == expected > 0
    kept = np.concatenate(
        [pq.read_table(p)["datafilter_ppl"].to_numpy() for p in out.glob("*.parquet")]
    )
    assert kept.min() >= low and kept.max() <= high
    assert set(manifest["totals"]["dropped_by_reason"]) == {
        "perplexity_range:below_min", "perplexity_range:above_max"
    }  # fmt: skip
