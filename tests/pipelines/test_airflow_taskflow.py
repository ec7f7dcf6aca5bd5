"""Airflow in the project's environment: a throwaway TaskFlow DAG run by ``dag.test()``.

Marked ``airflow`` (CI runs ``pytest -m airflow``). The DAG runs in a child interpreter of this
environment with its own ``AIRFLOW_HOME`` (SQLite metadata database, DAG folder), so Airflow's
configuration, read at import, is this test's alone. Its tasks pass an artifact by path, as
the datafilter DAG's stages will.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.airflow

DAG_FILE = textwrap.dedent(
    '''
    """Throwaway DAG: write numbers to a file, read them back by path, write their sum."""
    import json
    import os
    import sys
    from pathlib import Path

    import pendulum
    from airflow.sdk import dag, task

    WORK = Path(os.environ["THROWAWAY_DAG_WORK"])


    @dag(schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False)
    def throwaway_taskflow():
        @task
        def write_numbers() -> str:
            path = WORK / "numbers.json"
            path.write_text(json.dumps(list(range(1, 101))))
            return str(path)

        @task
        def add_up(path: str) -> str:
            out = WORK / "total.json"
            out.write_text(json.dumps({"total": sum(json.loads(Path(path).read_text()))}))
            return str(out)

        add_up(write_numbers())


    the_dag = throwaway_taskflow()

    if __name__ == "__main__":
        run = the_dag.test()
        states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
        (WORK / "run.json").write_text(json.dumps({"state": str(run.state), "tasks": states}))
        sys.exit(0 if str(run.state) == "success" else 1)
    '''
)


def _airflow_env(home: Path, dags: Path, work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        THROWAWAY_DAG_WORK=str(work),
    )
    return env


def test_taskflow_dag_runs_with_dag_test_on_sqlite(tmp_path: Path) -> None:
    if importlib.util.find_spec("airflow") is None:
        pytest.fail(
            "apache-airflow is not installed in this environment: bash scripts/setup.sh "
            "(dev target) adds the extra 'airflow' to .venv"
        )
    home, dags, work = tmp_path / "home", tmp_path / "dags", tmp_path / "work"
    for folder in (home, dags, work):
        folder.mkdir()
    dag_path = dags / "throwaway_taskflow.py"
    dag_path.write_text(DAG_FILE)
    env = _airflow_env(home, dags, work)

    migrate = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    assert (home / "airflow.db").is_file()

    run = subprocess.run(
        [sys.executable, str(dag_path)], env=env, capture_output=True, text=True, timeout=600
    )
    record = json.loads((work / "run.json").read_text()) if (work / "run.json").exists() else {}
    assert run.returncode == 0, (record, (run.stdout + run.stderr)[-3000:])
    assert record == {
        "state": "success",
        "tasks": {"write_numbers": "success", "add_up": "success"},
    }
    assert json.loads((work / "total.json").read_text()) == {"total": 5050}
