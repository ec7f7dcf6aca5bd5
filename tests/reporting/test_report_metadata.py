"""The report's run metadata (when each stage ran, how long, which datafilter, command and model)
and its what-if table (each group's kept share at keep 0.3/0.5/0.7, from the percentiles)."""

from __future__ import annotations

import json
import math
import re

import pyarrow.parquet as pq
import pytest
import yaml

from datafilter import __version__, api
from datafilter.reporting.what_if import band, keep_table, share_below

pytest.importorskip("matplotlib", reason="the report needs matplotlib: pip install '.[report]'")


def _uniform(lo: float, hi: float) -> dict[float, float]:
    return {q / 100: lo + (hi - lo) * q / 100 for q in range(101)}


def test_bands_and_shares_from_percentiles() -> None:
    assert band(0.5, "low") == (0.0, 0.5) and band(0.3, "high") == pytest.approx((0.7, 1.0))
    assert band(0.5, "medium") == (0.25, 0.75)
    a = _uniform(0, 100)
    assert share_below(a, 25) == pytest.approx(0.25) and share_below(a, -1) == 0.0
    assert share_below(a, 100) == 1.0
    # Over all documents: A (0..100) and B (50..150) in equal numbers, uniform: 0..150 with
    # density 1/200 below 50 and above 100, 2/200 between.
    overall = {}
    for q in range(101):
        p = q / 100
        if p <= 0.25:
            overall[p] = 200 * p
        else:
            overall[p] = 50 + 100 * (p - 0.25) if p <= 0.75 else 100 + 200 * (p - 0.75)
    table = keep_table(overall, {"a": a, "b": _uniform(50, 150)}, "low")
    assert table["bounds"][0.5][0] == -math.inf and table["bounds"][0.5][1] == pytest.approx(75)
    assert table["shares"]["a"][0.5] == pytest.approx(0.75)  # A is the low one
    assert table["shares"]["b"][0.5] == pytest.approx(0.25)
    high = keep_table(overall, {"a": a, "b": _uniform(50, 150)}, "high")
    # keep 0.3 of the highest: above the overall p70 = 95, i.e. 55% of B and 5% of A
    assert high["shares"]["b"][0.3] == pytest.approx(0.55)
    assert high["shares"]["a"][0.3] == pytest.approx(0.05)
    assert keep_table({}, {"a": a}, "low") is None


@pytest.fixture(scope="module")
def reported(tmp_path_factory, demo_corpus, kenlm_model_dir):
    root = tmp_path_factory.mktemp("metadata")
    (root / "in").mkdir()
    table = pq.read_table(demo_corpus.pool_dir, columns=["id", "text", "domain"])
    pq.write_table(table, root / "in" / "a.parquet")
    config = root / "run.yaml"
    config.write_text(yaml.safe_dump({
        "input": str(root / "in"),
        "run_dir": str(root / "run"),
        "score": {"options": {"model": str(kenlm_model_dir)}},
        "thresholds": {"group_by": [None, "domain"]},
        "select": {"output": str(root / "out"), "options": {"criterion": "low", "keep": 0.5},
                   "report_by": "domain"},
        "ray": {"executor": "local"},
    }))  # fmt: skip
    result = api.run(config, progress=False)
    first = api.report(root / "run", output=root / "a.html")
    second = api.report(root / "run", output=root / "b.html")
    return root, result, first, second


def test_the_report_shows_run_metadata(reported) -> None:
    root, result, first, second = reported
    page = (root / "a.html").read_text(encoding="utf-8")
    assert page == (root / "b.html").read_text(encoding="utf-8")  # no clock: same bytes
    assert "<h3>Run metadata</h3>" in page
    section = page[page.index("<h3>Run metadata</h3>"):]
    score = re.search(r"<dt>score</dt><dd>(\d{4}-\d\d-\d\dT[\d:]+\+00:00) · ([\d.]+) s · "
                      rf"datafilter {re.escape(__version__)}</dd>", section)  # fmt: skip
    assert score, section[:2000]
    assert 0 <= float(score.group(2)) <= result["seconds"]["score"] + 1
    assert "<dt>selection</dt>" in section and "<dt>score command</dt>" in section
    assert "kenlm (version" in section and "model files (sha256)" in section


def test_the_report_shows_kept_shares_at_three_keep_fractions(reported) -> None:
    root, _, _, _ = reported
    page = (root / "a.html").read_text(encoding="utf-8")
    assert "<h3>What if: keep fractions</h3>" in page
    what_if = page[page.index("<h3>What if: keep fractions</h3>"):]
    table = what_if[: what_if.index("</table>")]
    assert "<b>low</b> band of <b>ppl</b>" in what_if
    assert all(f"keep {k}" in table for k in ("0.3", "0.5", "0.7"))
    cells = re.findall(r"<tr><td>([^<]*)</td>((?:<td[^>]*>[^<]*</td>){3})</tr>", table)
    shares = {g: [float(v) for v in re.findall(r">([\d.]+)%<", rest)] for g, rest in cells}
    everything = next(v for g, v in shares.items() if "all" in g.lower())
    assert everything == pytest.approx([30, 50, 70], abs=1.5)  # over all: the keep itself
    domains = set(pq.read_table(root / "in", columns=["domain"])["domain"].to_pylist())
    assert domains <= set(shares)
    # The selection made is this band at keep 0.5: the table foresaw each group's kept share.
    manifest = json.loads((root / "out" / "manifest.json").read_text())
    for group, counts in manifest["groups"].items():
        assert shares[group][1] == pytest.approx(100 * counts["kept"] / counts["read"], abs=2)
