"""The container images, really built with ``docker/build.sh`` (buildah) and run.

Slow (minutes to tens of minutes) and marked: ``pytest -m image`` builds the CPU image and runs
``datafilter run configs/demo.yaml`` in it; ``pytest -m image_gpu`` builds the GPU image, which
cannot run here (no GPU): the test checks what is installed in it. Where buildah is missing or
cannot work, the tests fail and say why; they never pass without having built anything.
Images are tagged ``localhost/datafilter-test:cpu``/``:gpu`` and removed afterwards; the
debootstrap base that build.sh makes (``localhost/datafilter-base:bookworm``) is kept for reuse.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "localhost/datafilter-test"
IMAGE_USER = 10001  # the Dockerfiles' USER
BUILD_TIMEOUT_S = {"cpu": 3600, "gpu": 5400}


def _buildah() -> str:
    """buildah's path, after checking that it works here; fails the test saying why not."""
    exe = shutil.which("buildah")
    if exe is None:
        pytest.fail(
            "buildah not found: the image tests need it (apt-get install buildah; "
            "scripts/setup.sh installs it for the dev target)"
        )
    info = subprocess.run([exe, "info"], capture_output=True, text=True, timeout=120)
    if info.returncode != 0:
        pytest.fail(f"buildah cannot run on this machine: {info.stderr.strip()[-2000:]}")
    return exe


def _build(target: str, log_dir: Path) -> tuple[str, float]:
    """Build ``target`` with docker/build.sh; the image's name and the build's seconds."""
    buildah = _buildah()
    log = log_dir / f"build-{target}.log"
    env = {**os.environ, "DATAFILTER_IMAGE_PREFIX": PREFIX}
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.run(
            ["bash", "docker/build.sh", target],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            timeout=BUILD_TIMEOUT_S[target],
        )  # fmt: skip
    seconds = time.monotonic() - started
    tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
    assert proc.returncode == 0, f"docker/build.sh {target} failed (log {log}):\n{tail}"
    image = f"{PREFIX}:{target}"
    size = subprocess.run(
        [buildah, "images", "--format", "{{.Size}}", image], capture_output=True, text=True
    ).stdout.strip()
    print(f"\n{image}: built in {seconds:.0f} s, {size}")
    return image, seconds


def _remove(image: str) -> None:
    subprocess.run(["buildah", "rmi", "--force", image], capture_output=True)


def _container(image: str) -> str:
    proc = subprocess.run(
        [_buildah(), "from", "--pull-never", image], capture_output=True, text=True, check=True
    )
    return proc.stdout.strip()


def _run(container: str, *command: str, volume: str | None = None, timeout: float = 600):
    args = ["buildah", "run", "--isolation", "chroot"]
    if volume:
        args += ["--volume", volume]
    return subprocess.run(
        [*args, container, "--", *command], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def cpu_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    image, _ = _build("cpu", tmp_path_factory.mktemp("image-cpu"))
    yield image
    _remove(image)


@pytest.fixture
def cpu_container(cpu_image: str) -> Iterator[str]:
    container = _container(cpu_image)
    yield container
    subprocess.run(["buildah", "rm", container], capture_output=True)


@pytest.mark.image
def test_cpu_image_runs_the_demo_and_accounts_for_every_row(
    cpu_container: str, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    os.chown(work, IMAGE_USER, IMAGE_USER)  # the image runs as user 10001 (tests run as root)
    proc = _run(
        cpu_container,
        "datafilter", "run", "/opt/datafilter/configs/demo.yaml",
        volume=f"{work}:/work", timeout=1800,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]

    manifest = json.loads((work / "demo-run" / "output" / "manifest.json").read_text())
    totals = manifest["totals"]
    n_pool = pq.read_table(work / "demo-run" / "corpus" / "pool").num_rows
    assert n_pool > 1000
    assert totals["read"] == n_pool
    assert totals["kept"] + totals["dropped"] + totals["rejected"] == n_pool
    kept_rows = sum(
        pq.read_metadata(p).num_rows for p in (work / "demo-run" / "output").glob("*.parquet")
    )
    assert kept_rows == totals["kept"] > 0
    assert totals["kept"] == int(0.5 * (n_pool - totals["rejected"]) + 0.5)  # keep: 0.5
    assert sum(g["read"] for g in manifest["groups"].values()) == n_pool
    print(f"\ndemo in the CPU image: {json.dumps(totals)}")


@pytest.mark.image
def test_cpu_runtime_stage_has_kenlm_tools_but_no_build_tools(cpu_container: str) -> None:
    tools = _run(
        cpu_container,
        "sh", "-c",
        "for t in cmake g++ gcc c++ make; do command -v $t; done; ls -d /usr/include/boost; true",
    )  # fmt: skip
    assert tools.returncode == 0, tools.stderr
    assert tools.stdout.strip() == "", f"build tools in the runtime image: {tools.stdout}"
    # setup-kenlm finds lmplz, build_binary and the native scorer built by the build stage
    # (were one missing it would try to compile it, and fail: there is no compiler).
    kenlm = _run(cpu_container, "datafilter", "setup-kenlm")
    assert kenlm.returncode == 0, kenlm.stdout + kenlm.stderr
    assert kenlm.stdout.count("/opt/datafilter/cache/") == 3, kenlm.stdout
    lmplz = _run(cpu_container, "sh", "-c", "/opt/datafilter/cache/kenlm-tools/*/bin/lmplz --help")
    assert "--order" in lmplz.stdout + lmplz.stderr, lmplz.stdout + lmplz.stderr


@pytest.mark.image_gpu
def test_gpu_image_builds_with_cuda_torch_and_vllm(tmp_path: Path) -> None:
    """Built and inspected only: running the vLLM scorer needs a GPU, which CI does not have."""
    image, _ = _build("gpu", tmp_path)
    try:
        container = _container(image)
        try:
            probe = (
                "import json, importlib.metadata as m, torch; print(json.dumps({"
                "'torch': torch.__version__, 'cuda': torch.version.cuda, "
                "'vllm': m.version('vllm'), 'gpu_here': torch.cuda.is_available()}))"
            )
            proc = _run(container, "python", "-c", probe)
            assert proc.returncode == 0, proc.stderr[-3000:]
            found = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"\nGPU image: {found}")
            assert found["cuda"], f"torch in the GPU image is not a CUDA build: {found}"
            kenlm = _run(container, "datafilter", "setup-kenlm")
            assert kenlm.returncode == 0, kenlm.stdout + kenlm.stderr
        finally:
            subprocess.run(["buildah", "rm", container], capture_output=True)
    finally:
        _remove(image)
