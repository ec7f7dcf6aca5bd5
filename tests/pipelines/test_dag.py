"""The Luigi DAG of pipelines/dag_luigi.py on the demo corpus: outputs, re-runs and retries.

Real Luigi (local scheduler, tasks in this process), real KenLM and DuckDB; the stages run with
the local executor to keep the test short (Ray is exercised by the stage tests).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import pyarrow.parquet as pq
import pytest
import yaml

luigi = pytest.importorskip("luigi", reason="the DAG example needs luigi (the dev extra)")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dag() -> ModuleType:
    """pipelines/dag_luigi.py, imported from its path (pipelines/ is not a package)."""
    spec = importlib.util.spec_from_file_location("dag_luigi", ROOT / "pipelines" / "dag_luigi.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _config(tmp_path: Path, pool: Path, model: Path) -> Path:
    config = {
        "input": str(pool),
        "run_dir": str(tmp_path / "run"),
        "score": {"scorer": "kenlm", "options": {"model": str(model)}, "id_column": "id"},
        # DuckDB's cap for the tables and the plan
        "thresholds": {"group_by": [None, "domain"], "memory_limit": "64MB"},
        "select": {
            "output": str(tmp_path / "selected"),
            "selector": "perplexity_band",
            "options": {"criterion": "medium", "keep": 0.5},
            "report_by": "domain",
        },
        "ray": {"executor": "local"},
    }
    path = tmp_path / "dag.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _snapshot(*folders: Path) -> dict[str, tuple[int, str]]:
    """Every file under the folders: (mtime_ns, sha256): a rewrite with equal bytes shows too."""
    return {
        str(p): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for folder in folders
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "lock"
    }


def _record(tmp_path: Path, task: str) -> dict:
    return json.loads((tmp_path / "run" / "_dag" / f"{task}.json").read_text())


def _pool_rows(pool: Path) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in pool.glob("*.parquet"))


def test_dag_runs_the_stages_and_a_rerun_is_a_no_op(
    dag: ModuleType, tmp_path: Path, demo_corpus, kenlm_model_dir: Path
) -> None:
    config = _config(tmp_path, demo_corpus.pool_dir, kenlm_model_dir)
    assert dag.build(config) == luigi.LuigiStatusCode.SUCCESS

    n = _pool_rows(demo_corpus.pool_dir)
    score = _record(tmp_path, "score")["result"]
    assert score["rows"] == n and score["failed_shards"] == []
    thresholds = _record(tmp_path, "thresholds")["result"]
    assert thresholds["n_docs"] == {"(global)": score["scored"], "domain": score["scored"]}
    assert (tmp_path / "run" / "thresholds" / "kenlm.by-domain.parquet").is_file()
    totals = _record(tmp_path, "select")["result"]["totals"]
    assert totals["read"] == n
    assert totals["kept"] + totals["dropped"] + totals["rejected"] == n
    assert abs(totals["kept"] - 0.5 * score["scored"]) <= 0.5  # the middle half
    outputs = [p for p in (tmp_path / "selected").rglob("*.parquet") if "_state" not in p.parts]
    written = sum(pq.ParquetFile(p).metadata.num_rows for p in outputs)
    assert written == totals["kept"]

    # Running the DAG again after success runs no task: not one file is rewritten.
    folders = (tmp_path / "run", tmp_path / "selected")
    before = _snapshot(*folders)
    assert dag.build(config) == luigi.LuigiStatusCode.SUCCESS
    assert _snapshot(*folders) == before

    # A retry of tasks whose stage finished but whose result was never recorded (killed right
    # after the stage): Score and Select run again; their stages skip every shard, so no score
    # or output shard is rewritten, and the results are the same. Thresholds stays done.
    records = {t: _record(tmp_path, t) for t in ("score", "thresholds", "select")}
    for task in ("score", "select"):
        (tmp_path / "run" / "_dag" / f"{task}.json").unlink()
    assert dag.build(config) == luigi.LuigiStatusCode.SUCCESS  # Select (Thresholds is done)
    assert not (tmp_path / "run" / "_dag" / "score.json").exists()
    retry_score = luigi.build(
        [dag.Score(config=str(config))], local_scheduler=True, detailed_summary=True
    )
    assert retry_score.status == luigi.LuigiStatusCode.SUCCESS
    assert {t: _record(tmp_path, t) for t in records} == records
    after = _snapshot(*folders)
    shards = [p for p in before if p.endswith(".parquet") and "/thresholds/" not in p]
    assert len(shards) == 2 * len(list(demo_corpus.pool_dir.glob("*.parquet")))
    assert {p: after[p] for p in shards} == {p: before[p] for p in shards}
    manifest = str(tmp_path / "selected" / "manifest.json")
    assert after[manifest][1] == before[manifest][1]  # rewritten, same bytes
    thresholds_json = str(tmp_path / "run" / "_dag" / "thresholds.json")
    assert after[thresholds_json] == before[thresholds_json]  # not run again

    # The task bodies called directly (as another orchestrator would) return the same results.
    cfg = dag.load_config(config)
    assert dag.score_task(cfg) == records["score"]["result"]
    assert dag.select_task(cfg) == records["select"]["result"]
    assert dag.thresholds_task(cfg) == records["thresholds"]["result"]
    final = _snapshot(*folders)
    assert {p: final[p] for p in shards} == {p: before[p] for p in shards}
    assert all(final[p][1] == before[p][1] for p in before)  # same bytes everywhere


def test_a_failed_task_retried_redoes_only_the_missing_shard(
    dag: ModuleType, tmp_path: Path, demo_corpus, kenlm_model_dir: Path
) -> None:
    pool = tmp_path / "pool"
    shutil.copytree(demo_corpus.pool_dir, pool)
    first = sorted(pool.glob("*.parquet"))[0]
    broken = pool / "zz-late.parquet"
    broken.write_bytes(b"PAR1 not really parquet")
    config = _config(tmp_path, pool, kenlm_model_dir)

    assert dag.build(config) == luigi.LuigiStatusCode.FAILED
    assert not (tmp_path / "run" / "_dag" / "score.json").exists()
    assert not (tmp_path / "selected").exists()  # downstream tasks never started
    scores = tmp_path / "run" / "scores" / "kenlm"
    done = {p.name: p.stat().st_mtime_ns for p in scores.glob("*.parquet")}
    assert len(done) == len(list(demo_corpus.pool_dir.glob("*.parquet")))

    # The shard is repaired; the retry scores it alone and the DAG finishes.
    pq.write_table(pq.read_table(first).slice(0, 25), broken)
    assert dag.build(config) == luigi.LuigiStatusCode.SUCCESS
    assert {n: (scores / n).stat().st_mtime_ns for n in done} == done
    assert (scores / broken.name).is_file()
    score = _record(tmp_path, "score")["result"]
    assert score["rows"] == _pool_rows(pool) and score["shards"] == len(done) + 1
    assert _record(tmp_path, "select")["result"]["totals"]["read"] == _pool_rows(pool)
