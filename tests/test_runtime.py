"""The executors: which one ``auto`` picks and why, the local process pool (errors as data,
one worker build per process, no process left behind), quiet command output, and Ray: a
private local Ray, never a cluster started earlier with ``ray start``."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from helpers_corpus import cli_command, files_under, run_cli, split_pool, text_shard, wait_until
from pauses import Pauses

from datafilter.errors import ConfigError, ModelError, OutputError
from datafilter.runtime import RuntimeOptions, choose_executor, parse_size, run_tasks

VENV_BIN = Path(__file__).resolve().parents[1] / ".venv" / "bin"


@dataclass(frozen=True)
class Job:
    input_path: Path
    shard_rel: str = "x"


def _files(folder: Path, sizes: list[int]) -> list[Job]:
    folder.mkdir(exist_ok=True)
    jobs = []
    for i, size in enumerate(sizes):
        path = folder / f"{i}.bin"
        path.write_bytes(b"x" * size)
        jobs.append(Job(path, path.name))
    return jobs


def test_parse_size() -> None:
    assert parse_size("8MB") == 8_000_000 and parse_size("512k") == 512_000
    assert parse_size("1.5G") == 1_500_000_000 and parse_size("2MiB") == 2 * 1024**2
    assert parse_size("0") == 0 and parse_size(123) == 123
    with pytest.raises(ConfigError, match="expected bytes or a number"):
        parse_size("lots")


def test_auto_picks_local_for_small_inputs_process_for_large_ray_with_an_address(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr("datafilter.runtime.cpu_count", lambda: 4)
    small = _files(tmp_path, [1000, 2000, 3000])
    auto = RuntimeOptions(local_below=10_000)

    choice = choose_executor(small, auto)
    assert (choice.executor, choice.reason) == ("local", "auto: 0.006 MB of input, under "
                                                "--local-below 0.01 MB")  # fmt: skip
    assert choose_executor(small[:1], RuntimeOptions(local_below=0)).reason == "auto: one shard"
    big = choose_executor(small, RuntimeOptions(local_below=5000))
    assert (big.executor, big.workers) == ("process", 3)  # never more workers than shards
    assert big.line("score") == (
        "score: executor process, 3 worker processes (auto: over --local-below 0.005 MB of input)"
    )
    assert choose_executor(small, RuntimeOptions(local_below=0, num_actors=2)).workers == 2
    gpu = choose_executor(small, RuntimeOptions(local_below=0), num_gpus=1)
    assert (gpu.executor, gpu.reason) == ("ray", "auto: the scorer needs GPUs, which Ray places")
    # An address always means Ray, whatever the size.
    assert choose_executor(small, RuntimeOptions(address="10.0.0.1:6379")).executor == "ray"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert choose_executor(small[:1], auto).reason == "auto: a Ray address is given"
    # Asked for by name.
    for name in ("local", "process", "ray"):
        named = choose_executor(small, RuntimeOptions(executor=name))
        assert (named.executor, named.reason) == (name, f"--executor {name}")
    with pytest.raises(ConfigError, match="process executor runs CPU stages only"):
        choose_executor(small, RuntimeOptions(executor="process"), num_gpus=1)


# --------------------------------------------------------------------------- the process pool

_builds = 0


def _factory(fail_build: bool = False):
    """A worker: counts its builds in this process; tasks name what they should do."""
    global _builds
    if fail_build:
        raise ModelError("the model folder is broken")
    _builds += 1

    def run(task: str) -> dict:
        if task == "bad":
            raise ValueError("bad row")
        if task == "disk":
            raise OutputError("cannot write X: No space left on device")
        return {"task": task, "pid": os.getpid(), "builds": _builds}

    return run


def test_the_process_pool_builds_each_worker_once_and_keeps_errors_as_data(monkeypatch) -> None:
    monkeypatch.setenv("DATAFILTER_PROGRESS", "0")  # no progress line however long it takes
    tasks = [f"t{i}" for i in range(10)] + ["bad"]
    options = RuntimeOptions(executor="process", num_actors=2)
    log: list[str] = []
    outcomes = list(run_tasks(tasks, _factory, options, stage="test", log=log.append))
    assert log == ["test: executor process, 2 worker processes (--executor process)"]
    assert sorted(o.task for o in outcomes) == sorted(tasks)
    good = [o.result for o in outcomes if o.error is None]
    assert len(good) == 10 and {r["builds"] for r in good} == {1}  # one build per process
    assert len({r["pid"] for r in good}) <= 2 and os.getpid() not in {r["pid"] for r in good}
    [bad] = [o for o in outcomes if o.error is not None]
    assert bad.task == "bad" and bad.error.startswith("ValueError: bad row") and not bad.stop
    # An output error stops the stage: the caller closes the outcomes, the workers go.
    [stop] = [o for o in run_tasks(["disk"] * 2, _factory, options) if o.stop][:1]
    assert "No space left" in stop.error


def test_a_worker_that_cannot_build_stops_the_stage_with_its_error() -> None:
    options = RuntimeOptions(executor="process", num_actors=2)
    from functools import partial

    with pytest.raises(ModelError, match="the model folder is broken"):
        list(run_tasks(["a", "b"], partial(_factory, True), options))


def _is_gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.parametrize("how", ["ctrl-c", "sigkill"])
def test_no_worker_process_outlives_the_command(tmp_path, demo_corpus, kenlm_model_dir, how):
    """Both workers are held inside a shard (a test-only pause point); then the command gets
    Ctrl-C (SIGINT to its process group, as a terminal sends it) or is SIGKILLed: either way
    no worker process is left."""
    split_pool(demo_corpus, tmp_path / "in", 4)
    pauses = Pauses(tmp_path / "pauses", "score:shard")
    proc = subprocess.Popen(
        cli_command("score", "--input", tmp_path / "in", "--output", tmp_path / "run",
                    "--model", kenlm_model_dir, "--executor", "process", "--num-actors", "2"),
        env=pauses.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        workers = {pauses.wait("score:shard", proc)[0], pauses.wait("score:shard", proc)[0]}
        assert proc.pid not in workers and len(workers) == 2
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.kill()
        _, stderr = proc.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    if how == "ctrl-c":
        assert proc.returncode == 130, stderr
        assert stderr.splitlines()[-1] == (
            "datafilter: interrupted; finished shards are kept, rerun to resume"
        )
    for pid in workers:  # the kernel ends them when the driver dies (nothing to race)
        wait_until(lambda p=pid: _is_gone(p), timeout=60)


_HOLDING_WORKER = """
import os, pathlib, threading

def factory():
    def run(task):
        pathlib.Path(task).write_text(str(os.getpid()))  # "I hold a task now"
        threading.Event().wait()  # and hold it until killed
    return run
"""

_INTERRUPTED_DRIVER = """
import signal, sys, threading, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import holding_worker
from datafilter.runtime import RuntimeOptions, run_tasks

held = [str(Path(sys.argv[1]) / f"task{i}") for i in range(2)]

def interrupt_from_another_thread():
    while not all(Path(p).exists() for p in held):  # both workers hold a task: they come
        time.sleep(0.01)
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # to this thread, not main

threading.Thread(target=interrupt_from_another_thread).start()
try:
    list(run_tasks(held, holding_worker.factory,
                   RuntimeOptions(executor="process", num_actors=2)))
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


def test_ctrl_c_reaches_the_driver_whichever_thread_the_kernel_gives_it_to(tmp_path) -> None:
    """Both workers hold a task forever; SIGINT is delivered to another thread of the driver
    (the kernel may pick any thread that does not block it, e.g. the progress thread's). The
    driver, waiting on its workers, still wakes, raises KeyboardInterrupt and kills them."""
    import sys

    (tmp_path / "holding_worker.py").write_text(_HOLDING_WORKER)
    proc = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED_DRIVER, str(tmp_path)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "DATAFILTER_PROGRESS": "0"},
    )  # fmt: skip
    assert proc.returncode == 130 and proc.stdout.strip() == "interrupted", proc.stderr
    for i in range(2):
        pid = int((tmp_path / f"task{i}").read_text())
        wait_until(lambda p=pid: _is_gone(p), timeout=60)


def test_a_run_on_the_process_pool_writes_the_in_process_bytes(
    tmp_path, demo_corpus, kenlm_model_dir
):
    """``datafilter run`` with ``executor: process`` (scoring and selection on two worker
    processes) against ``executor: local``: the same files, byte for byte."""
    split_pool(demo_corpus, tmp_path / "in", 4)

    def run(executor: str) -> dict[str, bytes]:
        root = tmp_path / executor
        config = {
            "input": str(tmp_path / "in"), "run_dir": str(root / "run"),
            "score": {"options": {"model": str(kenlm_model_dir)}, "id_column": "id"},
            "thresholds": {"group_by": [None, "domain"]},
            "select": {"output": str(root / "out"), "options": {"keep": 0.5},
                       "report_by": "domain", "with_scores": True},
            "ray": {"executor": executor, "num_actors": 2},
        }  # fmt: skip
        (root).mkdir()
        (root / "run.yaml").write_text(yaml.safe_dump(config))
        proc = run_cli("run", root / "run.yaml", timeout=300)
        assert proc.returncode == 0, proc.stderr
        for stage in ("score", "select"):
            line = f"{stage}: executor {executor}, "
            assert any(x.startswith(line) for x in proc.stderr.splitlines()), proc.stderr
        return {
            rel: data for rel, data in files_under(root).items()
            if rel.endswith(".parquet") and "/_state/" not in f"/{rel}"
        }  # fmt: skip

    local, pooled = run("local"), run("process")
    assert len(local) == 4 * 2 + 2 and pooled == local  # 4 score + 4 output shards, 2 tables


# --------------------------------------------------------------------------- quiet output


def _own_lines(stderr: str) -> list[str]:
    """Lines that are not datafilter's own (``stage: ...``)."""
    prefixes = ("score: ", "select: ", "thresholds: ", "ray: ")
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith(prefixes)]


@pytest.mark.parametrize("executor", ["auto", "ray"])
def test_a_plain_run_prints_only_datafilters_lines(tmp_path, kenlm_model_dir, executor):
    """``datafilter score`` on a small input: stderr holds datafilter's lines only (no Ray
    start-up warnings, no core-worker errors, no progress-bar notices), stdout the result."""
    if executor == "ray":
        pytest.importorskip("ray")
    inp = text_shard(tmp_path / "in" / "a.parquet", ["one line of text", "another one"] * 10)
    env_args = ("--input", inp.parent, "--output", tmp_path / "run", "--model", kenlm_model_dir)
    proc = run_cli("score", *env_args, "--executor", executor, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["scored"] == 20
    assert _own_lines(proc.stderr) == [], proc.stderr
    chosen = "executor local, in this process (auto: one shard)" if executor == "auto" else (
        "executor ray, 1 Ray actor (--executor ray)")  # fmt: skip
    assert f"score: {chosen}" in proc.stderr.splitlines()
    for noise in ("WARNING", "core_worker", "Progress bars", "INFO", "token"):
        assert noise not in proc.stderr


# --------------------------------------------------------------------------- Ray


def _free_ports(n: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@dataclass
class HeadNode:
    """A one-node Ray cluster started with ``ray start --head``, in Ray's default temp folder
    under ``RAY_TMPDIR`` (where ``ray start`` records it as the machine's current cluster)."""

    address: str
    env: dict[str, str]
    ray_tmp: Path
    session: Path  # the cluster's session folder

    def drivers(self) -> list[str]:
        """Log files of the drivers that connected to this cluster."""
        return sorted(p.name for p in (self.session / "logs").glob("*-driver-*"))

    def sessions(self) -> list[Path]:
        """Every Ray session started under this ``RAY_TMPDIR``: this cluster's, private ones."""
        return sorted((self.ray_tmp / "ray").glob("session_2*"))


@pytest.fixture(scope="module")
def head_node() -> Iterator[HeadNode]:
    if not (VENV_BIN / "ray").exists():
        pytest.fail("the ray CLI is not installed in .venv (bash scripts/setup.sh installs it)")
    ray_tmp = Path(tempfile.mkdtemp(prefix="dfh-", dir="/tmp"))  # Ray's socket paths: short
    port, *others = _free_ports(8)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_TMPDIR=str(ray_tmp), RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN=secrets.token_hex(16))  # fmt: skip
    command = [
        str(VENV_BIN / "ray"), "start", "--head", "--block", "--disable-usage-stats",
        "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "1",
        "--include-dashboard", "false", "--node-manager-port", str(others[0]),
        "--object-manager-port", str(others[1]), "--dashboard-agent-listen-port", str(others[2]),
        "--dashboard-agent-grpc-port", str(others[3]), "--runtime-env-agent-port", str(others[4]),
        "--metrics-export-port", str(others[5]), "--ray-client-server-port", str(others[6]),
    ]  # fmt: skip
    log = (ray_tmp / "head.log").open("w")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    current = ray_tmp / "ray" / "ray_current_cluster"
    try:
        # `ray start` records the cluster once it is up: what `ray.init()` would join.
        wait_until(lambda: current.exists() or proc.poll() is not None, timeout=180, poll=0.1)
        address = current.read_text().strip() if current.exists() else ""
        assert address.endswith(f":{port}"), (ray_tmp / "head.log").read_text()
        session = (ray_tmp / "ray" / "session_latest").resolve()
        yield HeadNode(address, env, ray_tmp, session)
    finally:
        _kill_session(proc.pid)  # a throw-away cluster: no need to stop it gracefully
        proc.wait(timeout=60)
        log.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _kill_session(sid: int) -> None:
    """SIGKILL what is left of the head node's session (Ray's daemons and workers)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry.name), signal.SIGKILL)


def _score_on_ray(head: HeadNode, tmp_path: Path, model: Path, *extra: str):
    inp = text_shard(tmp_path / "in" / "a.parquet", ["a line of text"] * 20)
    return subprocess.run(
        cli_command("score", "--input", inp.parent, "--output", tmp_path / "run",
                    "--model", model, *extra),
        env=head.env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_without_an_address_ray_is_private_never_the_cluster_ray_start_made(
    head_node, tmp_path, kenlm_model_dir
):
    """A cluster started with ``ray start --head`` is recorded as the machine's current one
    (``ray.init()`` without an address would join it); ``--executor ray`` without an address
    starts a private Ray instead: no driver of it appears on that cluster."""
    before, sessions = head_node.drivers(), head_node.sessions()
    proc = _score_on_ray(head_node, tmp_path, kenlm_model_dir, "--executor", "ray")
    assert proc.returncode == 0, proc.stderr
    assert "score: executor ray, 1 Ray actor (--executor ray)" in proc.stderr
    assert "joined" not in proc.stderr
    assert head_node.drivers() == before
    assert len(head_node.sessions()) == len(sessions) + 1  # its own Ray, started and stopped


def test_with_an_address_the_command_names_the_cluster_it_joins(
    head_node, tmp_path, kenlm_model_dir
):
    before = head_node.drivers()
    proc = _score_on_ray(head_node, tmp_path, kenlm_model_dir, "--address", head_node.address)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert f"ray: joined the cluster at {head_node.address}: 1 node(s), 1 CPUs, 0 GPUs" in lines
    assert "score: executor ray, 1 Ray actor (auto: a Ray address is given)" in lines
    assert len(head_node.drivers()) == len(before) + 1
    assert _own_lines(proc.stderr) == [], proc.stderr


def test_library_logs_are_quiet_unless_verbose(monkeypatch) -> None:
    import duckdb

    from datafilter import logs

    for key in (*logs.QUIET_ENV, logs.VERBOSE_ENV):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")  # the user's own choice is kept
    try:
        logs.configure(False)
        assert os.environ["VLLM_LOGGING_LEVEL"] == "ERROR"
        assert os.environ["TRANSFORMERS_VERBOSITY"] == "info"
        con = logs.quiet_duckdb(duckdb.connect())
        assert con.execute("SELECT current_setting('enable_progress_bar')").fetchone() == (False,)
        logs.configure(True)
        assert logs.is_verbose() and os.environ[logs.VERBOSE_ENV] == "1"
        con = logs.quiet_duckdb(duckdb.connect())
        assert con.execute("SELECT current_setting('enable_progress_bar')").fetchone() == (True,)
    finally:
        logs.configure(False)
