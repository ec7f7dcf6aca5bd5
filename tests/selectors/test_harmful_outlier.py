"""harmful_outlier (issue 19): the mixture fit, the low-mode decision, calibration from labels,
the selector's plan and decisions, and the synthetic battery of the issue."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from score_fixtures import write_scored_shards

from datafilter.aggregate import ALL, ScoreFiles, ScoreStats
from datafilter.errors import ConfigError, InputError
from datafilter.selectors import make_selector
from datafilter.selectors.bimodal import LowModeRules, ashman_d, find_low_mode, otsu_cut
from datafilter.selectors.calibration import calibrate, clopper_pearson, lower_bound
from datafilter.selectors.mixture import fit_mixture
from datafilter.selectors.mixture_battery import (
    UNIMODAL,
    format_table,
    histogram,
    mixture_draw,
    oracle,
    run_battery,
    run_mixture_cell,
    run_unimodal_cell,
)

RULES = LowModeRules()


def _scores(ppl) -> dict[str, np.ndarray]:
    ppl = np.asarray(ppl, dtype=np.float64)
    return {"ppl": ppl, "bpb": ppl / 100, "id_hash": np.arange(1, len(ppl) + 1, dtype=np.uint64)}


def _all(n: int) -> np.ndarray:
    return np.full(n, ALL, dtype=object)


def _strict_json(plan) -> dict:
    """The plan survives strict JSON (no NaN, no infinity) unchanged."""
    return json.loads(json.dumps(plan, allow_nan=False))


# ----------------------------------------------------------------------------- the fit


def test_binned_fit_recovers_two_gaussians() -> None:
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(1.0, 0.3, 3000), rng.normal(4.0, 0.6, 17_000)]
    counts, edges = np.histogram(x, bins=128)
    best = fit_mixture(edges, counts, [([0.5, 0.5], [0.0, 5.0], [1.0, 1.0])])[0]
    low, high = best.components
    assert low.weight == pytest.approx(0.15, abs=0.01)
    assert (low.mean, low.sd) == pytest.approx((1.0, 0.3), abs=0.03)
    assert (high.mean, high.sd) == pytest.approx((4.0, 0.6), abs=0.03)
    assert best.n == 20_000 and math.isfinite(best.loglik)


def test_binned_likelihood_is_bounded_on_a_spike() -> None:
    """All documents in one bin: no component collapses to a point (the bin probability is at
    most 1), so the fit stays finite."""
    counts = np.zeros(64)
    counts[10] = 500
    edges = np.linspace(0, 1, 65)
    fit = fit_mixture(edges, counts, [([1.0], [0.5], [0.2])])[0]
    assert math.isfinite(fit.loglik) and fit.loglik <= 0
    assert fit.components[0].sd >= (edges[1] - edges[0]) / 4


def test_ashman_d() -> None:
    assert ashman_d(0, 1, 4, 1) == pytest.approx(4.0)
    assert ashman_d(0, 0, 0, 0) == 0.0


def test_otsu_cut_separates_two_clusters() -> None:
    x = np.r_[np.full(300, 1.0), np.full(700, 5.0)]
    counts, edges = np.histogram(x, bins=50, range=(0, 6))
    assert 1.0 < otsu_cut(edges, counts) <= 5.0


# ----------------------------------------------------------------------------- the decision


def test_a_one_percent_mode_is_found_and_cut_where_f1_is_best() -> None:
    values, truth = mixture_draw(np.random.default_rng(1), 0.01, 4.0)
    mode = find_low_mode(*histogram(values), RULES)
    assert mode.found and mode.reason is None
    assert mode.low.weight == pytest.approx(0.01, abs=0.003)
    assert mode.separation > 3 and mode.bic_gain > 100
    flagged = values < mode.cut
    precision = (flagged & truth).sum() / flagged.sum()
    recall = (flagged & truth).sum() / truth.sum()
    best_p, best_r, _ = oracle(0.01, 4.0)
    assert precision >= best_p - 0.06 and recall >= best_r - 0.06  # as good as the true cut
    assert mode.expected_precision == pytest.approx(precision, abs=0.08)
    posterior = find_low_mode(*histogram(values), LowModeRules(cut="posterior"))
    assert posterior.found and posterior.cut < mode.cut  # fewer errors in all, lower recall


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("gaussian", "one mode fits"),
        ("skewed (low tail)", "overlap"),
        ("skewed (high tail)", "overlap"),
        ("heavy-tailed (t, 3 df)", "overlap"),
    ],
)
def test_unimodal_shapes_are_refused_with_a_reason(name, reason) -> None:
    values = UNIMODAL[name](np.random.default_rng(2), 20_000)
    mode = find_low_mode(*histogram(values), RULES)
    assert not mode.found and reason in mode.reason


def test_a_low_majority_is_not_a_harmful_mode() -> None:
    values, _ = mixture_draw(np.random.default_rng(3), 0.8, 5.0)
    mode = find_low_mode(*histogram(values), RULES)
    assert not mode.found and "80% of the documents" in mode.reason and "max_share" in mode.reason
    assert find_low_mode(*histogram(values), LowModeRules(max_share=0.9)).found


def test_too_small_a_mode_and_too_few_documents() -> None:
    values, _ = mixture_draw(np.random.default_rng(4), 0.004, 6.0, n=5000)  # ~20 documents
    mode = find_low_mode(*histogram(values), LowModeRules(min_docs=50))
    assert not mode.found and "min_docs 50" in mode.reason
    few = find_low_mode(*histogram(np.arange(30.0)), RULES)
    assert not few.found and "too few" in few.reason and few.two is None


# ----------------------------------------------------------------------------- calibration


def test_clopper_pearson_known_values() -> None:
    # All n positive: the one-sided lower bound is alpha ** (1 / n).
    assert lower_bound([29], [29], 0.95)[0] == pytest.approx(0.05 ** (1 / 29))
    assert lower_bound([0], [10], 0.95)[0] == 0.0
    low, high = clopper_pearson(5, 10, 0.95)  # textbook: 0.187 .. 0.813
    assert (low, high) == pytest.approx((0.1871, 0.8129), abs=1e-4)
    assert clopper_pearson(0, 10, 0.95)[0] == 0.0 and clopper_pearson(10, 10, 0.95)[1] == 1.0


def test_calibration_picks_the_most_recall_meeting_the_bound() -> None:
    rng = np.random.default_rng(5)
    harmful = rng.random(400) < 0.3
    values = np.where(harmful, rng.normal(0, 1, 400), rng.normal(3, 1, 400))
    c = calibrate(values, harmful, target=0.9, confidence=0.95)
    assert c.found and c.precision_lower >= 0.9
    below = values < c.cut
    assert c.precision.n == below.sum() and c.precision.k == (below & harmful).sum()
    assert c.recall.value == pytest.approx((below & harmful).sum() / harmful.sum())
    assert c.precision.low <= c.precision.value <= c.precision.high
    # The next labelled document up would break the bound: no cut with more recall passes.
    order = np.argsort(values)
    i = int(below.sum())
    k = harmful[order][: i + 1].sum()
    assert values[order][i] > c.cut
    assert lower_bound([k], [i + 1], 0.95)[0] < 0.9 or not harmful[order][i]


def test_calibration_says_plainly_when_no_cut_reaches_the_target() -> None:
    rng = np.random.default_rng(6)
    harmful = rng.random(200) < 0.1
    values = np.where(harmful, rng.normal(0, 1, 200), rng.normal(0.5, 1, 200))  # barely apart
    c = calibrate(values, harmful, target=0.9, confidence=0.95)
    assert not c.found and "no cut reaches precision 0.9 with 95% confidence" in c.reason
    assert "a cut needs 29 labelled documents below it" in c.reason  # 0.9 ** 29 < 0.05
    assert "must flag at least 14% of the group" in c.reason
    assert c.precision_lower < 0.9
    none = calibrate(values, np.zeros(200, dtype=bool), 0.9, 0.95)
    assert not none.found and "none of the 200 labelled documents is harmful" in none.reason


# ----------------------------------------------------------------------------- the selector


def _mixture_ppl(rng, n: int, share: float, d: float = 5.0) -> list[float]:
    k = round(n * share)
    return list(np.exp(np.r_[rng.normal(5.5 - d * 0.5, 0.5, k), rng.normal(5.5, 0.5, n - k)]))


def test_automatic_plan_fires_on_a_small_mode_and_says_why_not_elsewhere(tmp_path) -> None:
    rng = np.random.default_rng(7)
    a = _mixture_ppl(rng, 10_000, 0.02)  # 200 harmful documents first
    b = list(np.exp(rng.normal(5.5, 0.5, 3000)))  # one mode: nothing to flag
    files = write_scored_shards(tmp_path, [a + b], [["a"] * 10_000 + ["b"] * 3000])
    selector = make_selector("harmful_outlier")
    plan = _strict_json(selector.plan(ScoreStats(files, "domain")))
    ga, gb = plan["groups"]["a"], plan["groups"]["b"]
    assert ga["mode"] == gb["mode"] == "automatic"
    assert ga["reason"] is None and ga["fit"]["found"] and ga["cut_ppl"] == math.exp(ga["cut"])
    harmful = [c for c in ga["fit"]["components"] if c["harmful"]]
    assert len(harmful) == 1 and harmful[0]["weight"] == pytest.approx(0.02, abs=0.005)
    assert ga["flagged_share"] == pytest.approx(0.02, abs=0.005)
    assert {m["label"] for m in ga["marks"]} == {"harmful mode", "clean mode", "cut"}
    assert len(ga["nearest"]) == 5
    assert gb["cut"] is None and gb["flagged_share"] == 0 and "one mode fits" in gb["reason"]
    assert plan["warnings"] == [f"group 'b': automatic: nothing flagged: {gb['reason']}"]
    assert len(plan["notes"]) == 1 and plan["notes"][0].startswith("group 'a': automatic cut ppl <")
    groups = np.array(["a"] * 10_000 + ["b"] * 3000, dtype=object)
    decision = selector.decide(_scores(a + b), groups, plan, seed=0)
    flagged = decision.columns["harmful_flag"]
    assert not flagged[10_000:].any()
    truth = np.arange(10_000) < 200
    assert (flagged[:10_000] & truth).sum() >= 190 and (flagged[:10_000] & ~truth).sum() <= 10
    np.testing.assert_array_equal(decision.keep, ~flagged)


def test_unreliable_use_cuts_where_the_fit_says(tmp_path) -> None:
    ppl = list(np.exp(UNIMODAL["skewed (low tail)"](np.random.default_rng(8), 5000)))
    files = write_scored_shards(tmp_path, [ppl], [["a"] * 5000])
    stats = ScoreStats(files)
    skip = make_selector("harmful_outlier").plan(stats)
    assert skip["groups"][ALL]["cut"] is None and "overlap" in skip["warnings"][0]
    use = make_selector("harmful_outlier", {"unreliable": "use"}).plan(stats)
    entry = use["groups"][ALL]
    assert entry["forced"] and entry["cut"] is not None and 0 < entry["flagged_share"] < 0.5
    assert "unreliable=use" in use["warnings"][0]


def test_manual_threshold_overrides_and_flag_action(tmp_path) -> None:
    ppl = [5.0, 10.0, 20.0, 40.0]
    files = write_scored_shards(tmp_path, [ppl], [["a"] * 4])
    selector = make_selector("harmful_outlier", {"threshold": 15, "action": "flag"})
    plan = _strict_json(selector.plan(ScoreStats(files)))
    entry = plan["groups"][ALL]
    assert entry["mode"] == "manual" and entry["cut"] == math.log(15) and entry["reason"] is None
    assert "fit" in entry  # the fitted modes are recorded whatever decided
    decision = selector.decide(_scores(ppl + [math.nan]), _all(5), plan, seed=0)
    assert decision.columns["harmful_flag"].tolist() == [True, True, False, False, False]
    assert decision.keep.tolist() == [True, True, True, True, False]
    below = make_selector("harmful_outlier", {"threshold": 2}).plan(ScoreStats(files))
    assert "beyond every document" in below["warnings"][0]


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="threshold and labels"):
        make_selector("harmful_outlier", {"threshold": 10, "labels": "x.parquet"})
    with pytest.raises(ConfigError, match="above 0"):
        make_selector("harmful_outlier", {"threshold": 0})
    with pytest.raises(ConfigError, match="target_precision"):
        make_selector("harmful_outlier", {"target_precision": 1.5})


def test_combined_with_a_clean_model(tmp_path) -> None:
    rng = np.random.default_rng(9)
    n_harm, n_clean = 100, 600
    harmful = np.exp(np.concatenate([rng.normal(2, 0.3, n_harm), rng.normal(6, 0.3, n_clean)]))
    clean = np.exp(np.concatenate([rng.normal(7, 0.3, n_harm), rng.normal(3, 0.3, n_clean)]))
    labels = [["x"] * (n_harm + n_clean)]
    files = write_scored_shards(tmp_path / "h", [list(harmful)], labels)
    clean_files = write_scored_shards(tmp_path / "c", [list(clean)], labels)
    combined = ScoreFiles(files.score_files, files.input_files, {"clean": clean_files.score_files})
    selector = make_selector("harmful_outlier", {"clean_scorer_id": "clean"})
    assert selector.extra_scorers() == ["clean"]
    plan = _strict_json(selector.plan(ScoreStats(combined)))
    entry = plan["groups"][ALL]
    assert plan["metric"] == "log_ratio:clean" and plan["harmful_side"] == "high"
    assert entry["mode"] == "automatic" and entry["reason"] is None
    top = max(entry["fit"]["components"], key=lambda c: c["mean"])
    assert top["harmful"] and top["weight"] == pytest.approx(n_harm / (n_harm + n_clean), abs=0.01)
    scores = _scores(harmful)
    scores["clean:ppl"] = clean
    decision = selector.decide(scores, _all(n_harm + n_clean), plan, seed=0)
    truth = np.arange(n_harm + n_clean) < n_harm
    np.testing.assert_array_equal(decision.columns["harmful_flag"], truth)
    z = decision.columns["harmful_z"]
    assert z[truth].min() > 0 and z[truth].min() > z[~truth].max()
    manual = make_selector("harmful_outlier", {"clean_scorer_id": "clean", "threshold": 0.0})
    manual_plan = manual.plan(ScoreStats(combined))
    flagged = manual.decide(scores, _all(n_harm + n_clean), manual_plan, 0).columns["harmful_flag"]
    assert flagged.sum() == (z > 0).sum()


# ----------------------------------------------------------------------------- labels


def _labels(path, ids, harmful, id_column="id"):
    pq.write_table(pa.table({id_column: ids, "harmful": harmful}), path)
    return str(path)


def test_calibrated_plan_from_labels(tmp_path) -> None:
    rng = np.random.default_rng(10)
    n = 6000
    ppl = _mixture_ppl(rng, n, 0.3, d=3.0)  # overlapping modes: the automatic mode may not do
    files = write_scored_shards(tmp_path, [ppl], [["a"] * n])
    ids = [f"s0-{r}" for r in range(n)]
    pick = rng.choice(n, 300, replace=False)
    truth = np.arange(n) < round(0.3 * n)
    path = _labels(tmp_path / "labels.parquet", [ids[i] for i in pick], truth[pick].astype(int))
    selector = make_selector("harmful_outlier", {"labels": path, "target_precision": 0.9})
    plan = _strict_json(selector.plan(ScoreStats(files)))
    entry = plan["groups"][ALL]
    assert entry["mode"] == "calibrated" and entry["reason"] is None
    c = entry["calibration"]
    assert c["found"] and c["n_labels"] == 300 and c["precision_lower"] >= 0.9
    assert c["n_harmful"] == truth[pick].sum()
    assert len(entry["labels"]["values"]) == 300
    assert sum(entry["labels"]["harmful"]) == c["n_harmful"]
    assert "on 300 labels: precision" in plan["notes"][0]
    flagged = selector.decide(_scores(ppl), _all(n), plan, 0).columns["harmful_flag"]
    assert (flagged & truth).sum() / flagged.sum() >= 0.85  # the precision the labels promise
    assert flagged.sum() / n == pytest.approx(entry["flagged_share"], abs=0.01)
    strict = make_selector("harmful_outlier", {"labels": path, "target_precision": 0.999})
    plan = strict.plan(ScoreStats(files))
    assert plan["groups"][ALL]["cut"] is None
    assert "calibrated: nothing flagged: no cut reaches precision 0.999" in plan["warnings"][0]


def test_labels_errors_name_the_file_and_the_problem(tmp_path) -> None:
    files = write_scored_shards(tmp_path, [[10.0, 20.0, 30.0]], [["a"] * 3])
    stats = ScoreStats(files)

    def plan(path, **options):
        return make_selector("harmful_outlier", {"labels": path, **options}).plan(stats)

    missing = _labels(tmp_path / "m.parquet", ["s0-0", "nope", "gone"], [1, 0, 0])
    with pytest.raises(InputError, match=r"m\.parquet: 2 of the 3 labelled ids are not .*'nope'"):
        plan(missing)
    bad = _labels(tmp_path / "b.parquet", ["s0-0", "s0-1"], [1, 2])
    with pytest.raises(InputError, match=r"b\.parquet, row 1: 'harmful' is 2"):
        plan(bad)
    both = _labels(tmp_path / "c.parquet", ["s0-0", "s0-0"], [1, 0])
    with pytest.raises(InputError, match="labelled both 0 and 1"):
        plan(both)
    other = _labels(tmp_path / "d.parquet", ["s0-0"], [1], id_column="doc")
    with pytest.raises(InputError, match="set labels_id_column"):
        plan(other)
    assert plan(other, labels_id_column="doc")["groups"][ALL]["mode"] == "calibrated"


def test_lookup_reads_only_the_asked_ids(tmp_path) -> None:
    files = write_scored_shards(tmp_path, [[10.0, 20.0], [30.0]], [["a", "b"], ["a"]])
    stats = ScoreStats(files, "domain")
    found = stats.lookup("ppl", ["s1-0", "s0-1", "zzz"])
    assert found == [("s0-1", "b", 20.0), ("s1-0", "a", 30.0)]
    assert stats.lookup("ppl", []) == []


# ----------------------------------------------------------------------------- the battery


def test_battery_key_cells() -> None:
    """The issue's demands on its hardest cells (the full table is the slow test below)."""
    for share, d in ((0.01, 3.0), (0.05, 4.0)):
        cell = run_mixture_cell(share, d, RULES)
        assert cell.fired >= 19, cell
    for name in ("gaussian", "skewed (low tail)", "heavy-tailed (t, 3 df)"):
        assert run_unimodal_cell(name, RULES).fired <= 1, name


@pytest.mark.slow
def test_full_battery() -> None:
    """Fires in >= 19 of 20 draws wherever d' >= 3 and the harmful share >= 1 %; at most 1 of 20
    on each unimodal shape; precision and recall both >= 0.9 in >= 19 of 20 draws wherever the
    true mixture allows them (the oracle's best min(P, R) >= 0.93); and the cut as good as the
    true F1-best cut (median F1 at most 0.05 below its F1) in every cell that fires."""
    cells = run_battery(RULES)
    print(format_table(cells))
    for c in cells:
        if c.share is None:
            assert c.fired <= 1, c.name
            continue
        if c.separation >= 3 and c.share >= 0.01:
            assert c.fired >= 19, c.name
        if c.share >= 0.01 and c.oracle[2] >= 0.93:
            assert c.both_90 >= 19, c.name
        if c.fired >= 10:
            assert c.median(c.f1) >= c.oracle_f1 - 0.05, c.name
