"""The Airflow DAG of pipelines/dag_airflow.py, run by a real Airflow in-process (``dag.test()``
on a SQLite metadata database) on the demo corpus: a model trained on the reference part scores
the held-out pool, then thresholds, select and report.

Marked ``airflow`` (CI runs ``pytest -m airflow``). Airflow runs in a child interpreter with its
own ``AIRFLOW_HOME``, so its configuration, read at import, is this test's alone: the project's
Python (``scripts/setup.sh`` adds Airflow to .venv for the dev target), or the one named by
``DATAFILTER_AIRFLOW_PYTHON`` (an environment with Airflow and datafilter).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

pytestmark = pytest.mark.airflow

ROOT = Path(__file__).resolve().parents[2]
DAG = ROOT / "pipelines" / "dag_airflow.py"
TASKS = ["train_or_reuse_model", "score", "thresholds", "select", "report"]


def _python() -> str:
    python = os.environ.get("DATAFILTER_AIRFLOW_PYTHON", sys.executable)
    probe = subprocess.run([python, "-c", "import airflow"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.fail(
            f"{python} cannot import airflow ({probe.stderr.strip().splitlines()[-1:]}): "
            "bash scripts/setup.sh (dev target) adds the extra 'airflow' to .venv, or set "
            "DATAFILTER_AIRFLOW_PYTHON to a Python that has Airflow and datafilter"
        )
    return python


def _airflow_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    return env


def _config(tmp_path: Path, demo_corpus) -> Path:
    config = {
        "input": str(demo_corpus.pool_dir),
        "run_dir": str(tmp_path / "run"),
        "train_kenlm": {
            "input": [str(demo_corpus.reference_dir)],
            "output": str(tmp_path / "model"),
            "options": {"order": 3, "vocab_size": 2000, "memory": "256M"},
        },
        "score": {"scorer": "kenlm", "options": {"model": "unused: the train task's"}},
        "thresholds": {"group_by": [None, "domain"], "memory_limit": "64MB"},
        "select": {
            "output": str(tmp_path / "selected"),
            "selector": "perplexity_band",
            "options": {"criterion": "medium", "keep": 0.5},
            "report_by": "domain",
        },
        "ray": {"executor": "local"},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_airflow_dag_runs_every_stage_on_held_out_data(tmp_path: Path, demo_corpus) -> None:
    python = _python()
    home = tmp_path / "airflow"
    (home / "dags").mkdir(parents=True)
    env = _airflow_env(home)
    migrate = subprocess.run(
        [python, "-m", "airflow", "db", "migrate"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert migrate.returncode == 0, migrate.stderr[-3000:]

    dag_file = home / "dags" / DAG.name  # deployed as the README says: a copy in the DAG folder
    shutil.copyfile(DAG, dag_file)
    config = _config(tmp_path, demo_corpus)
    run = subprocess.run(
        [python, str(dag_file), str(config)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    lines = [line for line in run.stdout.splitlines() if line.startswith('{"state"')]
    assert run.returncode == 0 and lines, (run.stdout + run.stderr)[-4000:]
    result = json.loads(lines[-1])
    assert result == {"state": "success", "tasks": dict.fromkeys(TASKS, "success")}

    # The artifacts each task handed on, by path.
    assert (tmp_path / "model" / "recipe.json").is_file()  # trained by the first task
    plans = list((tmp_path / "run" / "thresholds" / "plans").glob("*.json"))
    assert len(plans) == 1
    assert (tmp_path / "run" / "thresholds" / "kenlm.by-domain.parquet").is_file()
    manifest = json.loads((tmp_path / "selected" / "manifest.json").read_text())
    shards = demo_corpus.pool_dir.glob("*.parquet")
    pool_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in shards)
    totals = manifest["totals"]
    assert totals["read"] == pool_rows
    assert totals["kept"] + totals["dropped"] + totals["rejected"] == pool_rows
    assert 0 < totals["kept"] < pool_rows
    written = sum(
        pq.ParquetFile(p).metadata.num_rows
        for p in (tmp_path / "selected").rglob("*.parquet")
        if "_state" not in p.parts
    )
    assert written == totals["kept"]
    assert Path(manifest["plan"]["path"]).resolve() == plans[0].resolve()
    report = tmp_path / "run" / "report.html"
    assert report.is_file() and b"<html" in report.read_bytes()[:2000].lower()
