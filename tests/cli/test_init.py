"""``datafilter init DIR``: the shipped DAGs, Ray job entrypoint and configs, copied out."""

from __future__ import annotations

from pathlib import Path

import pytest

from datafilter.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_init_writes_the_pipelines_and_configs_and_refuses_to_replace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", str(tmp_path / "here")]) == 0
    for name in ("pipelines/dag_airflow.py", "pipelines/ray_job.py", "configs/demo.yaml"):
        assert (tmp_path / "here" / name).read_bytes() == (ROOT / name).read_bytes()
    (tmp_path / "here" / "configs" / "demo.yaml").write_text("mine")
    capsys.readouterr()
    assert main(["init", str(tmp_path / "here")]) != 0
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "here" / "configs" / "demo.yaml").read_text() == "mine"
    assert main(["init", str(tmp_path / "here"), "--overwrite"]) == 0
    assert (tmp_path / "here" / "configs" / "demo.yaml").read_bytes() == (
        ROOT / "configs" / "demo.yaml"
    ).read_bytes()
