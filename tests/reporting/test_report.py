"""`datafilter report`: a self-contained HTML page about a real run, rendered in Chromium."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers_corpus import plan_and_select

from datafilter import api
from datafilter.runtime import RuntimeOptions

pytest.importorskip("matplotlib", reason="the report needs matplotlib: pip install '.[report]'")

HOSTILE = "<script>alert(1)</script>\x07 "  # prefixed to every text: every sample shows it
HOSTILE_GROUPS = {"tv": "<b>tv</b>", "spam": r"spam $\x$ & co"}  # markup, mathtext
SECTIONS = (
    "Summary",
    "Score distribution",
    "Groups",
    "Sample documents",
    "Documents near the thresholds",
    "Configuration",
)
CLI = [sys.executable, "-m", "datafilter.cli"]


def _quiet(_message: str) -> None:
    pass


def _hostile_copy(pool: Path, out: Path) -> Path:
    """The demo pool with hostile text and group names, same shards and schema."""
    out.mkdir(parents=True)
    for path in sorted(pool.glob("*.parquet")):
        table = pq.read_table(path)
        texts = [HOSTILE + t for t in table["text"].to_pylist()]
        domains = [HOSTILE_GROUPS.get(d, d) for d in table["domain"].to_pylist()]
        table = table.set_column(table.schema.get_field_index("text"), "text", pa.array(texts))
        table = table.set_column(
            table.schema.get_field_index("domain"), "domain", pa.array(domains)
        )
        pq.write_table(table.cast(pq.read_schema(path)), out / path.name)
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory, demo_corpus, kenlm_model_dir):
    """A scored run with two selections: (a) a global band counted by domain, then (b) bands
    per domain (the most recent); the report of (b) written by the CLI."""
    root = tmp_path_factory.mktemp("report")
    pool = _hostile_copy(demo_corpus.pool_dir, root / "pool")
    run_dir = root / "run"
    local = RuntimeOptions(executor="local")
    api.score(pool, run_dir, options={"model": str(kenlm_model_dir)}, id_column="id",
              runtime=local)  # fmt: skip
    api.thresholds(run_dir, quantiles=[0.333])
    api.thresholds(run_dir, group_by="domain")
    band = {"criterion": "medium", "keep": 0.5}
    plan_and_select(run_dir, root / "global", options=band, report_by="domain", runtime=local)
    plan_and_select(run_dir, root / "by-domain", options={"criterion": "low", "keep": 0.3},
                    group_by="domain", runtime=local)  # fmt: skip
    proc = subprocess.run(
        [*CLI, "report", str(run_dir)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, run_dir, json.loads(proc.stdout)


class _Refs(HTMLParser):
    """Every tag name and every attribute that could load something."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.refs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in {"src", "href", "srcset", "action", "data", "poster", "background"}:
                self.refs.append((tag, name, value or ""))


def test_cli_writes_one_self_contained_page(run) -> None:
    root, run_dir, result = run
    page_path = run_dir / "report.html"
    assert Path(result["report"]) == page_path and page_path.is_file()
    assert result["selection"] == str(root / "by-domain")  # the most recent selection
    page = page_path.read_text(encoding="utf-8")
    for name in SECTIONS:
        assert f"<h2>{name}</h2>" in page, name
    assert "http://" not in page and "https://" not in page
    parser = _Refs()
    parser.feed(page)
    assert not {"script", "link", "iframe", "object", "embed"} & set(parser.tags)
    images = [v for tag, name, v in parser.refs if tag == "img"]
    assert len(images) >= 4  # global histograms, ppl and bpb per domain, group bars
    assert all(v.startswith("data:image/png;base64,") for v in images)
    for tag, name, value in parser.refs:
        assert value.startswith(("data:", "#")), (tag, name, value)
    assert "url(" not in page.split("</style>")[0]  # the CSS loads nothing either
    assert not list(run_dir.glob(".*tmp-*")), "temporary file left behind"


def test_text_and_group_names_are_escaped(run) -> None:
    _, run_dir, _ = run
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "\x07" not in page and "\ufffd" in page  # a control character HTML cannot hold
    assert "<b>tv</b>" not in page and "&lt;b&gt;tv&lt;/b&gt;" in page
    assert html.escape(r"spam $\x$ & co") in page


def test_selection_thresholds_groups_and_samples(run, demo_corpus) -> None:
    from datafilter.reporting.data import DECILES, NEAR_K, collect

    root, run_dir, _ = run
    data = collect(run_dir)
    manifest = json.loads((root / "by-domain" / "manifest.json").read_text())
    assert data.selection == root / "by-domain" and data.plan_column == "domain"
    groups = set(manifest["groups"])
    assert set(data.counts) == groups and set(data.marks) == groups
    # Per domain: its upper bound (criterion=low keeps the bottom 30%), drawn and sampled around.
    for group, params in manifest["thresholds"]["groups"].items():
        assert [m.label for m in data.marks[group]] == ["upper bound"]
        assert data.marks[group][0].value == params["upper"]["value"]
    assert {b.group for b in data.near} == groups
    kept_ids = {i for p in (root / "by-domain").glob("*.parquet") for i in pq.read_table(p)["id"]}
    kept_ids = {i.as_py() for i in kept_ids}
    for block in data.near:
        assert len(block.docs) == 2 * NEAR_K
        assert [d.label for d in block.docs] == ["below"] * NEAR_K + ["at or above"] * NEAR_K
        assert [d.doc.ppl for d in block.docs] == sorted(d.doc.ppl for d in block.docs)
    sampled = [d for ds in data.deciles.values() for d in ds] + [
        d for b in data.near for d in b.docs
    ]
    for d in sampled:  # the page's kept/dropped agrees with the written output
        assert d.kept is not None and d.kept == (d.doc.doc_id in kept_ids), d.doc.doc_id
        assert d.text.startswith(HOSTILE)
    assert len(data.deciles["__all__"]) == len(DECILES)
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    for group, counts in manifest["groups"].items():
        assert html.escape(group) in page and f"{counts['read']:,}" in page


def test_score_stats_document_queries_match_the_score_shards(run) -> None:
    from datafilter.aggregate import ScoreFiles, ScoreStats
    from datafilter.io.layout import RunLayout
    from datafilter.io.record import finished_score_shards, require_record

    _, run_dir, _ = run
    layout = RunLayout.at(run_dir)
    pairs = finished_score_shards(layout, require_record(layout), "kenlm")
    files = ScoreFiles([str(p) for _, p in pairs], [str(s.path) for s, _ in pairs])
    rows = []
    for shard, path in pairs:
        t = pq.read_table(path).to_pylist()
        rows += [(r["ppl"], r["id_hash"], r["doc_id"], str(shard.path), r["row"]) for r in t]
    rows.sort()
    stats = ScoreStats(files)
    docs = stats.documents_at_quantiles([0.0, 0.5, 1.0])["__all__"]
    n = len(rows)
    for doc, rank in zip(docs, [0, round(0.5 * (n - 1)), n - 1], strict=True):
        assert (doc.ppl, doc.id_hash, doc.doc_id, doc.input_file, doc.row) == rows[rank]
    target = rows[n // 3]
    near = stats.documents_near({"__all__": [(target[0], target[1]), (1e9, None)]}, k=2)
    assert [d.doc_id for d in near[("__all__", 0)]] == [r[2] for r in rows[n // 3 - 2 : n // 3 + 2]]
    assert [d.doc_id for d in near[("__all__", 1)]] == [r[2] for r in rows[-2:]]
    edges, counts = stats.shared_histogram("ppl", bins=10)
    assert counts["__all__"].sum() == n and len(edges) == 11
    assert np.isclose(edges[0], np.log(rows[0][0])) and np.isclose(edges[-1], np.log(rows[-1][0]))


def test_chosen_selection_no_selection_and_reproducible_bytes(run, tmp_path) -> None:

    root, run_dir, _ = run
    first = api.report(run_dir, selection=root / "global", output=tmp_path / "a.html")
    second = api.report(run_dir, selection=root / "global", output=tmp_path / "b.html")
    assert first["selection"] == str(root / "global")
    page = (tmp_path / "a.html").read_bytes()
    assert page == (tmp_path / "b.html").read_bytes()  # no timestamps: same run, same bytes
    assert second["bytes"] == len(page)
    text = page.decode()
    assert "lower bound" in text and "upper bound" in text and "thresholds over all" in text
    # A run folder with no selection recorded: scores and percentiles only.
    bare = tmp_path / "bare-run"
    shutil.copytree(run_dir, bare, ignore=shutil.ignore_patterns("selections", "report.html"))
    result = api.report(bare)
    assert result["selection"] is None
    text = Path(result["report"]).read_text(encoding="utf-8")
    assert "No selection has been made" in text and all(f"<h2>{s}</h2>" in text for s in SECTIONS)


def test_report_errors_are_one_line(tmp_path, run) -> None:
    root, run_dir, _ = run
    proc = subprocess.run([*CLI, "report", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "not a run folder" in proc.stderr
    proc = subprocess.run(
        [*CLI, "report", str(run_dir), "--selection", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "no manifest.json" in proc.stderr


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _headless(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run(
        [browser, *flags, *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_chromium_renders_the_report(run, tmp_path) -> None:
    import matplotlib.image

    browser = _chromium()
    if browser is None:
        pytest.fail(
            "chromium is not installed: this test renders the report in it. Install it with "
            "`bash scripts/setup.sh` (the dev set-up) or `bash scripts/install_test_browser.sh`",
            pytrace=False,
        )
    _, run_dir, _ = run
    url = (run_dir / "report.html").as_uri()
    shot = tmp_path / "shot.png"
    proc = _headless(
        browser, tmp_path / "p1", f"--screenshot={shot}", "--window-size=1280,2000", url
    )
    assert shot.is_file(), proc.stderr[-2000:]
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (2000, 1280)
    rgb = np.round(pixels[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
    colours = np.unique(rgb[::7], axis=0)
    assert len(colours) > 200, "the screenshot is nearly blank"
    not_white = (rgb.min(axis=1) < 235).mean()
    assert 0.05 < not_white < 0.9, not_white
    # The DOM after rendering: every section, the images, the text still escaped, no scripts.
    dom = _headless(browser, tmp_path / "p2", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    out = dom.stdout
    for name in SECTIONS:
        assert re.search(rf'<section id="\w+"><h2>{re.escape(name)}</h2>', out), name
    assert out.count("<img") >= 4
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out and "<script" not in out
