"""The whole chain through the CLI on real Ray, DuckDB and KenLM."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

CLI = [sys.executable, "-m", "datafilter.cli"]


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, demo_corpus, kenlm_model_dir):
    """One `datafilter run CONFIG` over the demo pool, on a local Ray started by the CLI."""
    root = tmp_path_factory.mktemp("e2e")
    config = {
        "input": str(demo_corpus.pool_dir),
        "run_dir": str(root / "run"),
        "score": {"scorer": "kenlm", "options": {"model": str(kenlm_model_dir)}, "id_column": "id"},
        "thresholds": {"group_by": [None, "domain"], "quantiles": [0.333]},
        "select": {
            "output": str(root / "out"),
            "options": {"criterion": "medium", "keep": 0.5},
            "report_by": "domain",
        },
        "ray": {"executor": "ray", "num_actors": 2},
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = _cli("run", str(path))
    return root, path, json.loads(proc.stdout), proc.stderr


def test_outputs_map_one_to_one_and_keep_the_schema(demo_run, demo_corpus) -> None:
    root, _, _, _ = demo_run
    inputs = sorted(p.name for p in demo_corpus.pool_dir.glob("*.parquet"))
    assert sorted(p.name for p in (root / "out").glob("*.parquet")) == inputs
    for name in inputs:
        source = pq.read_table(demo_corpus.pool_dir / name)
        output = pq.read_table(root / "out" / name)
        assert output.schema.equals(source.schema)
        assert set(output["id"].to_pylist()) <= set(source["id"].to_pylist())
        scores = pq.read_table(root / "run" / "scores" / "kenlm" / name)
        assert scores.num_rows == source.num_rows
        assert scores["doc_id"].to_pylist() == source["id"].to_pylist()


def test_manifest_accounts_for_every_row(demo_run, demo_corpus) -> None:
    root, _, result, _ = demo_run
    manifest = json.loads((root / "out" / "manifest.json").read_text())
    totals = manifest["totals"]
    n_read = pq.read_table(demo_corpus.pool_dir).num_rows
    assert totals["read"] == n_read
    assert totals["kept"] + totals["dropped"] + totals["rejected"] == n_read
    assert totals["kept"] == int(0.5 * (n_read - totals["rejected"]) + 0.5)
    kept_rows = sum(pq.read_table(p).num_rows for p in (root / "out").glob("*.parquet"))
    assert kept_rows == totals["kept"] == result["select"]["kept"]
    assert manifest["selector"] == {
        "name": "perplexity_band",
        "options": {"criterion": "medium", "keep": 0.5, "metric": "ppl"},
    }
    groups = manifest["groups"]
    assert sum(g["read"] for g in groups.values()) == n_read
    # Degraded text sits in the high-perplexity tail and is pruned by the medium band.
    for domain in ("noise", "tokens"):
        assert groups[domain]["kept"] < 0.1 * groups[domain]["read"], domain


def test_thresholds_tables_written(demo_run) -> None:
    root, _, _, _ = demo_run
    table = pq.read_table(root / "run" / "thresholds" / "kenlm.parquet").to_pylist()
    qs = {r["quantile"] for r in table if r["metric"] == "ppl"}
    assert 0.333 in qs and len(qs) == 102
    by_domain = json.loads((root / "run" / "thresholds" / "kenlm.by-domain.json").read_text())
    assert by_domain["group_by"] == "domain" and "business" in by_domain["groups"]


def test_rerun_skips_finished_work_and_changes_nothing(demo_run) -> None:
    root, config, _, _ = demo_run
    before = {p: p.read_bytes() for p in (root / "out").rglob("*") if p.is_file()}
    before.update({p: p.read_bytes() for p in (root / "run" / "scores").rglob("*.parquet")})
    proc = _cli("run", str(config))
    assert "0 of 4 shards to score" in proc.stderr
    assert "0 of 4 shards to write" in proc.stderr
    after = {p: p.read_bytes() for p in before}
    assert after == before


def test_stage_commands_with_group_selection(demo_run, tmp_path) -> None:
    root, _, _, _ = demo_run
    out = tmp_path / "by-domain"
    request = ["--run", str(root / "run"), "--selector", "perplexity_band", "--set",
               "criterion=low", "--set", "keep=0.3", "--group-by", "domain"]  # fmt: skip
    plan = json.loads(_cli("thresholds", *request).stdout)["plan"]
    assert json.loads(Path(plan).read_text())["request"]["options"]["keep"] == 0.3
    proc = _cli("select", *request, "--output", str(out), "--with-scores")
    totals = json.loads(proc.stdout)["totals"]
    manifest = json.loads((out / "manifest.json").read_text())
    for group, params in manifest["thresholds"]["groups"].items():
        assert manifest["groups"][group]["kept"] == params["kept"]
        assert params["kept"] == int(0.3 * params["n_docs"] + 0.5)
    assert totals["kept"] == sum(p["kept"] for p in manifest["thresholds"]["groups"].values())
    first = pq.read_table(next(out.glob("*.parquet")))
    assert "datafilter_ppl" in first.column_names


def test_list_shows_registered_plugins() -> None:
    listed = json.loads(_cli("list").stdout)
    assert "kenlm" in listed["scorers"] and "perplexity_band" in listed["selectors"]


def test_run_folder_remembers_its_selections(demo_run) -> None:
    from datafilter.io.layout import RunLayout

    root, _, _, _ = demo_run
    assert root / "out" in RunLayout.at(root / "run").selection_outputs()
