"""Cross-fitted scores are calibrated per fold before pooling: two folds of the same quality but
of different scale get the same thresholds and keep the same share."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fold_scorer import paired_texts
from helpers_corpus import LOCAL

from datafilter import api
from datafilter.reference import fold_of
from datafilter.scorers import SCORERS
from datafilter.stages import thresholds as thresholds_stage

N_PAIRS = 300
BAND = {"criterion": "low", "keep": 0.5}


@pytest.fixture
def fold_shift(monkeypatch):
    SCORERS.names()  # plugins loaded first, so this registration is not overridden
    monkeypatch.setitem(SCORERS._targets, "fold_shift", "fold_scorer:FoldShiftScorer")


def _scored_run(tmp_path, options: dict) -> tuple:
    texts = paired_texts(N_PAIRS)
    rng = np.random.default_rng(0)
    texts = [texts[i] for i in rng.permutation(len(texts))]
    inp = tmp_path / "in"
    inp.mkdir()
    half = len(texts) // 2
    for i, part in enumerate((texts[:half], texts[half:])):
        ids = [f"p{i}-{r}" for r in range(len(part))]
        domain = ["ab"[r % 2] for r in range(len(part))]
        table = pa.table({"id": ids, "text": part, "domain": domain})
        pq.write_table(table, inp / f"part-{i}.parquet")
    run = tmp_path / "run"
    api.score(inp, run, scorer="fold_shift", options=options, id_column="id", runtime=LOCAL)
    return run, texts


def _kept_share_per_fold(out) -> dict[int, float]:
    kept = [t for f in sorted(out.glob("part-*.parquet"))
            for t in pq.read_table(f, columns=["text"])["text"].to_pylist()]  # fmt: skip
    per_fold = {0: 0, 1: 0}
    for text in kept:
        per_fold[fold_of(text, 2)] += 1
    return {f: n / N_PAIRS for f, n in per_fold.items()}


@pytest.mark.parametrize("calibrated", [True, False])
def test_two_folds_of_different_scale_keep_the_same_share(
    tmp_path, fold_shift, monkeypatch, calibrated
):
    run, texts = _scored_run(tmp_path, {"shift": 0.5})
    shard = pq.read_table(run / "scores" / "fold_shift" / "part-0.parquet")
    assert shard.schema.field("fold").type == pa.int32()
    if not calibrated:  # what the thresholds did before folds were calibrated
        monkeypatch.setattr(thresholds_stage, "calibrate_folds", lambda *a, **k: None)
    summary = api.thresholds(run, selector="perplexity_band", options=BAND)
    manifest = api.select(run, tmp_path / "out", selector="perplexity_band", options=BAND,
                          runtime=LOCAL)  # fmt: skip
    share = _kept_share_per_fold(tmp_path / "out")
    print("calibrated" if calibrated else "pooled raw", "kept share per fold", share)
    assert manifest["totals"]["kept"] == N_PAIRS  # floor(0.5 * 2n + 0.5): the cut is exact
    if not calibrated:
        assert share[0] - share[1] > 0.4, share  # fold 0 (lower scale) kept ~75%, fold 1 ~25%
        assert "calibration" not in summary
        return
    assert abs(share[0] - share[1]) <= 2 / N_PAIRS, share
    calibration = summary["calibration"]
    folds = calibration["folds"]
    shift = folds["1"]["ppl"]["median_log"] - folds["0"]["ppl"]["median_log"]
    assert shift == pytest.approx(0.5, abs=1e-9)
    assert folds["0"]["ppl"]["mad_log"] == pytest.approx(folds["1"]["ppl"]["mad_log"])
    plan = json.loads(Path(summary["plan"]).read_text())
    assert plan["calibration"] == calibration
    assert manifest["calibration"] == calibration  # recorded with the selection


def test_folds_of_different_spread_are_standardised(tmp_path, fold_shift):
    """Fold 1's log-perplexity is 1.5 x fold 0's + 0.2: per-fold MAD evens out the spread too."""
    run, _ = _scored_run(tmp_path, {"shift": 0.2, "scale": 1.5})
    for criterion in ("low", "high"):
        band = {"criterion": criterion, "keep": 0.3}
        api.thresholds(run, selector="perplexity_band", options=band, table=False)
        out = tmp_path / f"out-{criterion}"
        api.select(run, out, selector="perplexity_band", options=band, runtime=LOCAL)
        share = _kept_share_per_fold(out)
        assert abs(share[0] - share[1]) <= 2 / N_PAIRS, (criterion, share)


def test_calibrated_plan_per_group(tmp_path, fold_shift):
    """Per group column: the calibrated view joins the group column by position; each group's
    cut is exact and neither fold is favoured."""
    run, _ = _scored_run(tmp_path, {"shift": 0.5})
    api.thresholds(run, selector="perplexity_band", options=BAND, group_by="domain")
    manifest = api.select(run, tmp_path / "out", selector="perplexity_band", options=BAND,
                          group_by="domain", runtime=LOCAL)  # fmt: skip
    groups = manifest["groups"]
    assert sorted(groups) == ["a", "b"]
    for g in groups.values():
        assert g["kept"] == int(g["read"] * 0.5 + 0.5)
    share = _kept_share_per_fold(tmp_path / "out")
    assert abs(share[0] - share[1]) < 0.1, share


def test_one_fold_is_not_calibrated(tmp_path, demo_corpus):
    from datafilter.aggregate import fold_statistics
    from datafilter.reference.calibration import fold_calibration

    shard = tmp_path / "s.parquet"
    pq.write_table(
        pa.table({"ppl": [2.0, 3.0, 4.0], "bpb": [1.0, 1.1, 1.2],
                  "reject_reason": pa.array([None, None, "empty_text"], pa.string()),
                  "fold": pa.array([0, 0, 0], pa.int32())}),  # fmt: skip
        shard,
    )
    stats = fold_statistics([str(shard)])
    assert list(stats) == [0] and stats[0]["n_docs"] == 2
    assert stats[0]["ppl_median_log"] == pytest.approx(np.log(np.sqrt(6.0)))
    assert fold_calibration(stats) is None


def test_report_shows_the_per_fold_distributions(tmp_path, fold_shift):
    pytest.importorskip("matplotlib", reason="the report needs matplotlib")
    run, _ = _scored_run(tmp_path, {"shift": 0.5})
    api.thresholds(run, selector="perplexity_band", options=BAND)
    api.select(run, tmp_path / "out", selector="perplexity_band", options=BAND, runtime=LOCAL)
    api.report(run, selection=tmp_path / "out", output=tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert "Per-fold distributions of ln(perplexity)" in page
    section = page[page.index('id="folds"') :].split("</table>")[0]
    rows = re.findall(r"<tr><td>(\d)</td>(.*?)</tr>", section)
    assert [r[0] for r in rows] == ["0", "1"]
    medians = [float(re.findall(r"<td class=n>([-\d.,]+)</td>", r[1])[2]) for r in rows]
    assert medians[1] - medians[0] == pytest.approx(0.5, abs=1e-3)  # as scored, before calibration
    assert "The selection ranked the calibrated scores" in section
