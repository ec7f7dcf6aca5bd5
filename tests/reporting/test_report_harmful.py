"""The report's harmful-content section (issue 19) on a real KenLM-scored run: the decision per
group, the histogram with the fitted components, the cut, the labelled documents and the
documents nearest the cut."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers_corpus import plan_and_select

from datafilter import api
from datafilter.runtime import RuntimeOptions

pytest.importorskip("matplotlib", reason="the report needs matplotlib: pip install '.[report]'")

LOCAL = RuntimeOptions(executor="local")


def _quiet(_message: str) -> None:
    pass


@pytest.fixture(scope="module")
def harmful_run(tmp_path_factory, demo_corpus, kenlm_model_dir):
    """The demo pool scored by the demo model; its low-quality documents play the harmful
    ones, 150 of the documents are labelled (a uniform draw)."""
    root = tmp_path_factory.mktemp("report-harmful")
    run = root / "run"
    api.score(demo_corpus.pool_dir, run, options={"model": str(kenlm_model_dir)},
              id_column="id", runtime=LOCAL)  # fmt: skip
    pool = pq.read_table(sorted(demo_corpus.pool_dir.glob("*.parquet")), columns=["id", "quality"])
    ids = pool["id"].to_pylist()
    harmful = [int(q != "high") for q in pool["quality"].to_pylist()]
    pick = np.random.default_rng(0).choice(len(ids), 150, replace=False)
    labels = root / "labels.parquet"
    pq.write_table(
        pa.table({"id": [ids[i] for i in pick], "harmful": [harmful[i] for i in pick]}), labels
    )
    return root, run, labels


def test_report_shows_the_harmful_decision(harmful_run) -> None:
    from datafilter.reporting.data import collect

    root, run, labels = harmful_run
    options = {"labels": str(labels), "target_precision": 0.5, "action": "flag"}
    manifest = plan_and_select(run, root / "calibrated", selector="harmful_outlier",
                               options=options)  # fmt: skip
    entry = manifest["thresholds"]["groups"]["__all__"]
    assert entry["mode"] == "calibrated" and entry["calibration"]["n_labels"] == 150
    data = collect(run, selection=root / "calibrated")
    [panel] = data.harmful
    assert panel.entry == json.loads(json.dumps(entry)) and panel.counts.sum() == entry["n_docs"]
    result = api.report(run, selection=root / "calibrated", output=root / "r.html")
    assert "Harmful-content decision" in result["sections"]
    page = (root / "r.html").read_text(encoding="utf-8")
    assert '<a href="#harmful">' in page and '<section id="harmful">' in page
    assert 'alt="Harmful-score histogram of all documents"' in page
    assert "labels (150, " in page and "mode:</b> calibrated" in page
    if entry["cut"] is not None:
        assert "precision" in page and entry["nearest"][0]["doc_id"] in page
        assert any(b.mark.label == "cut" for b in data.near)  # texts around the cut
    else:
        assert "nothing flagged" in page


def test_report_says_why_nothing_was_flagged(harmful_run) -> None:

    root, run, _ = harmful_run
    options = {"min_separation": 50.0, "action": "flag"}  # no fit can be that far apart
    manifest = plan_and_select(run, root / "auto", selector="harmful_outlier", options=options)
    entry = manifest["thresholds"]["groups"]["__all__"]
    assert entry["cut"] is None and entry["reason"]
    api.report(run, selection=root / "auto", output=root / "a.html")
    page = (root / "a.html").read_text(encoding="utf-8")
    assert "<b>nothing flagged</b>" in page
    assert "Selector warning: group &#x27;__all__&#x27;: automatic: nothing flagged" in page
