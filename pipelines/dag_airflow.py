"""An Apache Airflow DAG (TaskFlow API): one task per stage of a ``datafilter run`` config.

    train_or_reuse_model -> score -> thresholds -> select -> report

Each task is one call of the library and hands the next one a path (the model folder, the run
folder, the plan file, the selection folder), through XCom. The tasks read the config given as
the DAG run's ``config`` parameter (default: ``$DATAFILTER_CONFIG``, else ``configs/demo.yaml``);
use absolute paths in it, or paths relative to the folder the tasks run in. Its
``demo_corpus`` step is not a task here: the input must exist.

Deploy: copy this file into Airflow's DAG folder (``datafilter init DIR`` writes it, with the
configs), on workers that have datafilter installed. Trigger with a config:

    airflow dags trigger datafilter_pipeline --conf '{"config": "/data/df/run.yaml"}'

Or run it once in this process without a scheduler (SQLite metadata, ``airflow db migrate``
first):

    python pipelines/dag_airflow.py /data/df/run.yaml

Every stage is resumable, so a retried task redoes only the shards that have no completion
record: Airflow's retries need nothing more.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pendulum
from airflow.sdk import Param, dag, task

DEFAULT_CONFIG = os.environ.get("DATAFILTER_CONFIG", "configs/demo.yaml")


def _config(path: str):
    from datafilter.config import load_config

    return load_config(path)


@dag(
    dag_id="datafilter_pipeline",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={"config": Param(DEFAULT_CONFIG, type="string", description="a datafilter config")},
    default_args={"retries": 1},
    tags=["datafilter"],
)
def datafilter_pipeline():
    """Score a corpus by perplexity, make the selector's plan, apply it, report."""

    @task
    def train_or_reuse_model(config: str) -> str:
        """The config's ``train_kenlm`` step (a finished model folder is reused as it is), or
        the model folder named by ``score.options.model``; its path."""
        from datafilter import api

        cfg = _config(config)
        if cfg.train_kenlm is None:
            return str(Path(cfg.score.options["model"]).resolve())
        step = cfg.train_kenlm
        options = step.model_dump(exclude_unset=True, exclude={"input", "output"})
        api.train_kenlm(step.input, step.output, **options)
        return str(Path(step.output).resolve())

    @task
    def score(config: str, model: str) -> str:
        """Score every input shard with ``model`` (finished shards are skipped); the run
        folder."""
        from datafilter.stages.run import score_step

        cfg = _config(config)
        opts = cfg.score.model_copy(update={"options": {**cfg.score.options, "model": model}})
        score_step(cfg.model_copy(update={"score": opts}))
        return str(Path(cfg.run_dir).resolve())

    @task
    def thresholds(config: str, run_dir: str) -> str:
        """Percentile tables per ``thresholds.group_by`` and the ``select:`` section's plan;
        the plan file."""
        from datafilter.stages.run import thresholds_step

        cfg = _config(config)
        _, plan = thresholds_step(cfg.model_copy(update={"run_dir": run_dir}))
        return plan or str(cfg.select.plan)

    @task
    def select(config: str, run_dir: str, plan: str) -> str:
        """Apply ``plan``: the filtered shards and their manifest; the output folder."""
        from datafilter.stages.run import select_step

        cfg = _config(config)
        select_step(cfg.model_copy(update={"run_dir": run_dir}), plan=plan)
        return str(Path(cfg.select.output).resolve())

    @task
    def report(run_dir: str, selection: str) -> str:
        """The HTML report of the run and this selection; its path."""
        from datafilter import api

        return api.report(run_dir, selection=selection)["report"]

    config = "{{ params.config }}"
    run_dir = score(config, train_or_reuse_model(config))
    plan = thresholds(config, run_dir)
    report(run_dir, select(config, run_dir, plan))


the_dag = datafilter_pipeline()


if __name__ == "__main__":  # one run in this process: python pipelines/dag_airflow.py CONFIG
    conf = {"config": sys.argv[1]} if len(sys.argv) > 1 else {}
    run = the_dag.test(run_conf=conf)
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    print(json.dumps({"state": str(run.state), "tasks": states}, sort_keys=True))
    sys.exit(0 if str(run.state) == "success" else 1)
