"""The Ray job entrypoint on a real multi-process cluster, submitted with ``ray job submit``.

The cluster is two Ray nodes on this machine, each a ``ray start --block`` process with one CPU:
a head (GCS, dashboard, job server) and a worker node that joins it with ``ray start
--address``. Every port is a free one picked here and each node has its own ``--temp-dir``, so
the cluster shares nothing with other Ray instances on the machine; authentication uses a
token made for this cluster (``RAY_AUTH_TOKEN``), never ``~/.ray/auth_token``. It is stopped
at the end of the module, even when a test fails, without ``ray stop`` (which would stop every
Ray on the machine): each node's ``ray start`` runs as the leader of a new session, and every
process in those sessions (Ray's daemons, workers, the job's driver) gets SIGTERM, then SIGKILL
if still there 10 s later.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from helpers_corpus import files_under, split_pool, wait_until

from datafilter.config import load_config
from datafilter.stages.run import run_config as run

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
# What the job's working-dir upload leaves out (most are in .gitignore, which Ray also reads).
EXCLUDES = [".git", ".venv", "bench/out", "demo-run", "**/__pycache__", ".pytest_cache"]
JOB_CONFIG = "configs/ray_job.yaml"
N_SHARDS = 8
# The demo pool repeated: each shard takes the scorer long enough (~1 s) that the actor on
# the second node is up before the first one has done them all.
COPIES = 32
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


# --------------------------------------------------------------------------- the cluster


@dataclass
class LocalCluster:
    """A head and worker nodes started here; ``gcs`` for drivers, ``dashboard`` for jobs."""

    gcs: str
    dashboard: str
    env: dict[str, str]
    temp_root: Path
    nodes: list[subprocess.Popen] = field(default_factory=list)

    def ray(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run the ``ray`` CLI with this cluster's environment."""
        return subprocess.run(
            [str(VENV_BIN / "ray"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def alive_nodes(self) -> int:
        status = self.ray("status", "--address", self.gcs, timeout=60)
        if status.returncode != 0:
            return 0
        active = (
            status.stdout.split("Active:")[1].split("Pending:")[0]
            if "Active:" in status.stdout
            else ""
        )
        return sum(1 for line in active.splitlines() if "node_" in line)

    def start_node(self, *args: str, name: str) -> None:
        temp = self.temp_root / name
        temp.mkdir()
        ports = _free_ports(6)
        command = [
            str(VENV_BIN / "ray"), "start", "--block", "--disable-usage-stats",
            "--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--temp-dir", str(temp),
            "--node-manager-port", str(ports[0]), "--object-manager-port", str(ports[1]),
            "--dashboard-agent-listen-port", str(ports[2]),
            "--dashboard-agent-grpc-port", str(ports[3]),
            "--runtime-env-agent-port", str(ports[4]), "--metrics-export-port", str(ports[5]),
            *args,
        ]  # fmt: skip
        log = (self.temp_root / f"{name}.log").open("w")
        self.nodes.append(
            subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )

    def stop(self) -> None:
        """SIGTERM every process of the cluster's sessions (as ``ray stop`` does to all Ray
        processes), SIGKILL those still there after 10 s."""
        sessions = {p.pid for p in self.nodes}  # each was started as its own session leader
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            for pid in _processes_in_sessions(sessions):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while _processes_in_sessions(sessions) and time.monotonic() < deadline:
                time.sleep(0.2)
        for proc in self.nodes:
            proc.wait(timeout=5)
        shutil.rmtree(self.temp_root, ignore_errors=True)


def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports that are free now (bound and released by this process)."""
    sockets = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _processes_in_sessions(sessions: set[int]) -> list[int]:
    """Live processes whose session id is one of ``sessions`` (field 6 of /proc/PID/stat)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[3]) in sessions:
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    if not (VENV_BIN / "ray").exists():
        pytest.skip("the ray CLI is not installed in .venv")
    gcs_port, dashboard_port, client_port = _free_ports(3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",  # the job's `python` is .venv's
        RAY_USAGE_STATS_ENABLED="0",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=secrets.token_hex(16),
    )
    # A short path: Ray's Unix socket paths under it must stay under 108 characters.
    temp_root = Path(tempfile.mkdtemp(prefix="dfray-", dir="/tmp"))
    c = LocalCluster(
        gcs=f"127.0.0.1:{gcs_port}",
        dashboard=f"http://127.0.0.1:{dashboard_port}",
        env=env,
        temp_root=temp_root,
    )
    try:
        c.start_node(
            "--head", "--port", str(gcs_port), "--dashboard-host", "127.0.0.1",
            "--dashboard-port", str(dashboard_port), "--ray-client-server-port", str(client_port),
            name="head",
        )  # fmt: skip
        wait_until(lambda: c.alive_nodes() == 1, timeout=120, poll=1)
        c.start_node("--address", c.gcs, name="worker")
        wait_until(lambda: c.alive_nodes() == 2, timeout=120, poll=1)
        yield c
    finally:
        c.stop()
    assert not _processes_in_sessions({p.pid for p in c.nodes}), "cluster processes left"


# --------------------------------------------------------------------------- jobs


def _submit(c: LocalCluster, data_root: Path, submission_id: str) -> None:
    """Submit pipelines/ray_job.py as the README says (without waiting for it)."""
    proc = c.ray(
        "job", "submit", "--address", c.dashboard, "--submission-id", submission_id,
        "--no-wait", "--working-dir", str(REPO),
        "--runtime-env-json", json.dumps({"excludes": EXCLUDES}),
        "--", "python", "pipelines/ray_job.py", "--config", JOB_CONFIG,
        "--data-root", str(data_root),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _status(c: LocalCluster, submission_id: str) -> str:
    """The job's status, read back with ``ray job status``."""
    proc = c.ray("job", "status", "--address", c.dashboard, "--log-color", "false", submission_id)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout)
    ended = {"succeeded": "SUCCEEDED", "failed": "FAILED", "was stopped": "STOPPED"}
    for words, status in ended.items():
        if f"Job '{submission_id}' {words}" in text:
            return status
    found = re.search(rf"Status for job '{submission_id}': (\w+)", text)
    assert found, f"no status in {text!r}"
    return found.group(1)


def _wait_for_job(c: LocalCluster, submission_id: str, timeout: float = 300) -> tuple[str, str]:
    """Poll the job's status until it ends; its final status and its logs."""
    deadline = time.monotonic() + timeout
    while (status := _status(c, submission_id)) not in TERMINAL:
        assert time.monotonic() < deadline, f"job {submission_id} still {status}"
        time.sleep(1)
    logs = c.ray("job", "logs", "--address", c.dashboard, submission_id)
    assert logs.returncode == 0, logs.stderr
    return status, logs.stdout


def _summary(logs: str) -> dict:
    """The JSON line the entrypoint prints last on stdout."""
    lines = [line for line in logs.splitlines() if line.startswith("{")]
    assert lines, logs
    return json.loads(lines[-1])


@pytest.fixture
def data_root(tmp_path, demo_corpus, kenlm_model_dir) -> Path:
    """What configs/ray_job.yaml reads: corpus/pool (8 shards) and model/."""
    root = tmp_path / "data"
    split_pool(demo_corpus, root / "corpus" / "pool", N_SHARDS, copies=COPIES)
    (root / "model").symlink_to(kenlm_model_dir)
    return root


def _not_state(rel: Path) -> bool:
    """Bookkeeping, and plan files (each records when it was made)."""
    return rel.parts[0] == "_state" or rel.parts[:2] == ("thresholds", "plans")


def _outputs(root: Path) -> dict[str, bytes]:
    """Every file the run writes except the bookkeeping under ``_state/``."""
    return {
        f"{top}/{name}": data
        for top in ("ray-run", "ray-output")
        for name, data in files_under(root / top, skip=_not_state).items()
    }


def _reference(root: Path, monkeypatch) -> dict[str, bytes]:
    """The same config run in-process without Ray, at the same paths; its files, then removed.

    Run folders record absolute paths (run.json, the manifest), so both runs use the same ones."""
    cfg = load_config(REPO / JOB_CONFIG)
    cfg = cfg.model_copy(update={"ray": cfg.ray.model_copy(update={"executor": "local"})})
    monkeypatch.chdir(root)
    run(cfg, progress=False)
    monkeypatch.chdir(REPO)
    files = _outputs(root)
    shutil.rmtree(root / "ray-run")
    shutil.rmtree(root / "ray-output")
    return files


def _driver_pid(data_root: Path) -> int | None:
    """The pid of the job's entrypoint process for ``data_root``, if it runs now."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"pipelines/ray_job.py" in argv and str(data_root).encode() in argv:
                return int(entry.name)
    return None


def _shard_tasks_by_node(c: LocalCluster) -> dict[str, int]:
    """Finished per-shard tasks (scoring and selection actors), counted by node id."""
    proc = c.ray(
        "list", "tasks", "--address", c.gcs, "--detail", "--format", "json", "--limit", "10000"
    )
    assert proc.returncode == 0, proc.stderr
    counts: dict[str, int] = {}
    for task in json.loads(proc.stdout):
        if (
            "_ShardActor" in task["name"]
            and task["state"] == "FINISHED"
            and task["type"] == "ACTOR_TASK"
        ):
            counts[task["node_id"]] = counts.get(task["node_id"], 0) + 1
    return counts


@pytest.mark.slow
def test_job_submitted_with_the_cli_scores_on_both_nodes(cluster, data_root, monkeypatch):
    reference = _reference(data_root, monkeypatch)
    n_rows = pq.read_table(data_root / "corpus" / "pool").num_rows
    job = f"datafilter-{secrets.token_hex(4)}"
    _submit(cluster, data_root, job)
    status, logs = _wait_for_job(cluster, job)
    assert status == "SUCCEEDED", logs
    summary = _summary(logs)
    assert summary["cluster"]["nodes"] == 2 and summary["cluster"]["cpus"] == 2
    assert summary["select"]["read"] == n_rows
    assert f"score: {N_SHARDS} of {N_SHARDS} shards to score (0 done)" in logs
    # The cluster's outputs are the in-process run's, byte for byte.
    assert _outputs(data_root) == reference
    manifest = json.loads((data_root / "ray-output" / "manifest.json").read_text())
    assert (
        manifest["totals"]["kept"] + manifest["totals"]["dropped"] + manifest["totals"]["rejected"]
        == n_rows
    )
    assert len(list((data_root / "ray-output").glob("*.parquet"))) == N_SHARDS
    # Ray's task records show shards done on both nodes (one actor per node: 1 CPU each).
    by_node = _shard_tasks_by_node(cluster)
    assert len(by_node) == 2, by_node


def _holds_lock(lock: Path, pid: int) -> bool:
    """Whether the lock file names ``pid`` as its holder (read only: never takes the lock)."""
    try:
        return json.loads(lock.read_text() or "{}").get("pid") == pid
    except (OSError, ValueError):
        return False


def _kill_driver_when(c: LocalCluster, data_root: Path, job: str, started) -> None:
    """Wait until the job's driver runs and ``started(pid)`` holds, wait a random moment more
    (up to 0.3 s), SIGKILL the driver; the job must then end as FAILED."""
    pid = None

    def ready() -> bool:
        nonlocal pid
        pid = pid or _driver_pid(data_root)
        return pid is not None and started(pid)

    wait_until(ready, timeout=300, poll=0.02)
    time.sleep(RNG.uniform(0, 0.3))
    os.kill(pid, signal.SIGKILL)
    status, logs = _wait_for_job(c, job)
    assert status == "FAILED", logs


RNG = random.Random(os.environ.get("DATAFILTER_FAULT_SEED", "6"))


@pytest.mark.slow
def test_a_killed_driver_and_a_resubmitted_job_give_the_same_bytes(cluster, data_root, monkeypatch):
    """SIGKILL the job's driver (the entrypoint process) mid-scoring, then mid-selection; each
    resubmission resumes, and the final files equal an uninterrupted run's."""
    reference = _reference(data_root, monkeypatch)
    score_markers = data_root / "ray-run" / "_state" / "score"
    select_lock = data_root / "ray-output" / "_state" / "lock"

    job = f"datafilter-kill-score-{secrets.token_hex(4)}"
    _submit(cluster, data_root, job)
    _kill_driver_when(
        cluster, data_root, job, lambda _pid: any(score_markers.glob("*/*.done.json"))
    )
    scored = len(list(score_markers.glob("*/*.done.json")))
    assert 1 <= scored < N_SHARDS, "the driver was not killed while scoring"

    job = f"datafilter-kill-select-{secrets.token_hex(4)}"
    _submit(cluster, data_root, job)
    _kill_driver_when(cluster, data_root, job, lambda pid: _holds_lock(select_lock, pid))
    assert not (data_root / "ray-output" / "manifest.json").exists()

    job = f"datafilter-resume-{secrets.token_hex(4)}"
    _submit(cluster, data_root, job)
    status, logs = _wait_for_job(cluster, job)
    assert status == "SUCCEEDED", logs
    assert f"score: 0 of {N_SHARDS} shards to score ({N_SHARDS} done)" in logs
    assert _outputs(data_root) == reference


# --------------------------------------------------------------------------- without a cluster


def _entrypoint(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "python"), "pipelines/ray_job.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_entrypoint_outside_a_job_names_what_is_missing(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = _entrypoint("--config", JOB_CONFIG, env=env)
    assert proc.returncode == 2
    assert proc.stderr.startswith("ray_job: error: no Ray cluster to join: submit this with")
    assert proc.stdout == ""
    missing = tmp_path / "no-such-folder"
    proc = _entrypoint(
        "--config", JOB_CONFIG, "--data-root", str(missing), "--address", "127.0.0.1:1", env=env
    )
    assert (proc.returncode, proc.stderr) == (
        2,
        f"ray_job: error: --data-root {missing} is not a folder\n",
    )
    proc = _entrypoint("--config", "configs/no-such.yaml", "--address", "127.0.0.1:1", env=env)
    assert (proc.returncode, proc.stderr) == (
        2,
        "ray_job: error: config file configs/no-such.yaml not found\n",
    )
