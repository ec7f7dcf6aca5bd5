"""The built wheel ships pipelines/ and configs/ (data files under share/datafilter/), which
``datafilter init`` copies out after a ``pip install``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_the_pipelines_and_configs(tmp_path: Path) -> None:
    source = tmp_path / "src"  # a copy: the build writes build/ and *.egg-info beside the sources
    for name in ("pyproject.toml", "README.md"):
        source.mkdir(exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("datafilter", "pipelines", "configs"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "wheel"), str(source)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (tmp_path / "wheel").glob("datafilter-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    data = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".data"))
    for rel in ("pipelines/dag_airflow.py", "pipelines/ray_job.py", "configs/demo.yaml"):
        assert f"{data}/data/share/datafilter/{rel}" in names, rel
    assert "datafilter/examples.py" in names
