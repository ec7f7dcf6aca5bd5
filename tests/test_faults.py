"""Faults injected into real runs: a Ray actor killed mid-shard, the driver killed at random
moments, two runs on one folder, and a disk that becomes read-only or full mid-run.

Each run is compared byte for byte with an uninterrupted run made at the same paths (run
folders record absolute paths). ``DATAFILTER_FAULT_SEED`` picks other random kill moments.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from helpers_corpus import (
    LOCAL,
    cli_command,
    files_under,
    mtimes,
    quiet,
    split_pool,
    temp_files,
    wait_until,
)

from datafilter import api
from datafilter.config import load_config
from datafilter.io.atomic import TMP_MARK
from datafilter.pipeline import run as run_pipeline
from datafilter.runtime import RuntimeOptions

N_SHARDS = 8
BATCH_ROWS = 64
RNG_SEED = os.environ.get("DATAFILTER_FAULT_SEED", "6")


@pytest.fixture
def inputs(tmp_path, demo_corpus) -> Path:
    split_pool(demo_corpus, tmp_path / "input", N_SHARDS)
    return tmp_path / "input"


def _write_config(path: Path, inp: Path, run: Path, out: Path, model: Path) -> Path:
    """A ``datafilter run`` config: score (KenLM), thresholds, select, in-process."""
    config = {
        "input": str(inp),
        "run_dir": str(run),
        "score": {
            "scorer": "kenlm",
            "options": {"model": str(model)},
            "id_column": "id",
            "batch_rows": BATCH_ROWS,
        },
        "thresholds": {"group_by": [None, "domain"]},
        "select": {
            "output": str(out),
            "options": {"criterion": "medium", "keep": 0.5},
            "report_by": "domain",
        },
        "ray": {"executor": "local"},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _not_state(rel: Path) -> bool:
    return rel.parts[0] == "_state"


def _artifacts(run: Path, out: Path) -> dict[str, bytes]:
    """Every file of the run and output folders except the bookkeeping under ``_state/``."""
    return {
        **{f"run/{k}": v for k, v in files_under(run, skip=_not_state).items()},
        **{f"out/{k}": v for k, v in files_under(out, skip=_not_state).items()},
    }


def _reference(config: Path, run: Path, out: Path) -> dict[str, bytes]:
    """An uninterrupted in-process run of ``config``: its files, then its folders removed."""
    run_pipeline(load_config(config), progress=False, log=quiet)
    files = _artifacts(run, out)
    assert len([k for k in files if k.startswith("out/") and k.endswith(".parquet")]) == N_SHARDS
    shutil.rmtree(run)
    shutil.rmtree(out)
    return files


def _start_run(config: Path, *prefix: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*prefix, *cli_command("run", config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _holds_lock(lock: Path, pid: int) -> bool:
    """Whether the lock file names ``pid`` as its holder: read only, never takes the lock (a
    probe with flock could make the run it watches fail to take it)."""
    try:
        return json.loads(lock.read_text() or "{}").get("pid") == pid
    except (OSError, ValueError):
        return False


def _count(folder: Path, pattern: str) -> int:
    return len(list(folder.glob(pattern))) if folder.exists() else 0


# --------------------------------------------------------------------------- a Ray actor dies


def _shard_of_temp(name: str) -> str:
    """``.part-00003.parquet.tmp-<pid>-<hex>`` -> ``part-00003.parquet``."""
    return name[1 : name.index(TMP_MARK)]


def _pid_of_temp(name: str) -> int:
    return int(name.split(TMP_MARK)[1].split("-")[0])


def _is_ray_worker(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::")
    except OSError:
        return False


def test_a_ray_actor_killed_mid_shard_is_replaced_and_the_shard_retried(
    tmp_path, inputs, kenlm_model_dir
):
    """SIGKILL the actor process that is writing a score shard (its pid is in the temporary
    file's name): Ray restarts the actor and retries the shard; every shard is written once."""
    ray = pytest.importorskip("ray")
    started_here = not ray.is_initialized()
    options = {"model": str(kenlm_model_dir)}
    reference = tmp_path / "reference"
    api.score(inputs, reference, options=options, batch_rows=BATCH_ROWS, runtime=LOCAL, log=quiet)

    run = tmp_path / "run"
    scores = run / "scores" / "kenlm"
    killed: list[tuple[int, str]] = []
    done = threading.Event()

    def kill_a_writer() -> None:
        while not done.is_set():
            for tmp in temp_files(scores) if scores.exists() else []:
                pid = _pid_of_temp(tmp.name)
                if _is_ray_worker(pid):  # never anything but an actor of this run
                    os.kill(pid, signal.SIGKILL)
                    killed.append((pid, _shard_of_temp(tmp.name)))
                    return
            time.sleep(0.002)

    killer = threading.Thread(target=kill_a_writer, daemon=True)
    killer.start()
    log: list[str] = []
    try:
        summary = api.score(
            inputs,
            run,
            options=options,
            batch_rows=BATCH_ROWS,
            runtime=RuntimeOptions(executor="ray", num_actors=2, progress=False),
            log=log.append,
        )
    finally:
        done.set()
        killer.join(timeout=10)
        if started_here:
            ray.shutdown()

    assert len(killed) == 1, "no actor was caught writing a shard"
    pid, shard = killed[0]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert summary["failed_shards"] == []
    assert summary["rows"] == pq.read_table(inputs).num_rows
    finished = [line.split()[2] for line in log if line.startswith("score: [")]
    assert sorted(finished) == [f"part-{i:05d}.parquet" for i in range(N_SHARDS)], log
    assert not any("FAILED" in line for line in log), log
    # The retried shard, like every other, holds each input row once, in order.
    for path in sorted(scores.glob("*.parquet")):
        rows = pq.read_table(path, columns=["row"])["row"].to_numpy()
        assert np.array_equal(rows, np.arange(pq.ParquetFile(inputs / path.name).metadata.num_rows))
    assert files_under(run / "scores") == files_under(reference / "scores"), shard
    assert temp_files(run) == []  # the dead actor's half-written file was removed


# --------------------------------------------------------------------------- the driver dies


def test_a_driver_killed_at_random_moments_resumes_to_the_same_bytes(
    tmp_path, inputs, kenlm_model_dir
):
    """``datafilter run`` SIGKILLed again and again: once at a random time after launch, then at
    random points in scoring, thresholds and selection; the run finally completes and every
    file equals an uninterrupted run's."""
    run, out = tmp_path / "run", tmp_path / "out"
    config = _write_config(tmp_path / "run.yaml", inputs, run, out, kenlm_model_dir)
    reference = _reference(config, run, out)
    rng = random.Random(RNG_SEED)
    score_markers = run / "_state" / "score" / "kenlm"
    select_state = out / "_state" / "select"

    def after(seconds: float) -> Callable[[], bool]:
        start = time.monotonic()
        return lambda: time.monotonic() - start >= seconds

    def scored(n: int) -> Callable[[], bool]:
        return lambda: _count(score_markers, "*.done.json") >= n

    def selected(n: int) -> Callable[[], bool]:
        return lambda: _count(select_state, "*/*.done.json") >= n

    moments = [
        ("launch", lambda: after(rng.uniform(0.3, 2.0))),
        ("score", lambda: scored(_count(score_markers, "*.done.json") + rng.randint(1, 3))),
        ("thresholds", lambda: (run / "thresholds" / "kenlm.parquet").exists),
        ("select", lambda: selected(rng.randint(1, N_SHARDS - 1))),
    ]
    kills = []
    for name, make_trigger in moments:
        trigger = make_trigger()
        proc = _start_run(config)
        try:
            wait_until(lambda: trigger() or proc.poll() is not None, timeout=120)  # noqa: B023
            time.sleep(rng.uniform(0, 0.05))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills.append(name)
        finally:
            _, stderr = proc.communicate(timeout=60)
        if proc.returncode == 0:
            break  # this attempt finished before its moment came
        assert proc.returncode == -signal.SIGKILL, stderr
    assert len(kills) >= 3, f"only {kills} interrupted a running process"

    final = _start_run(config)
    _, stderr = final.communicate(timeout=120)
    assert final.returncode == 0, stderr
    assert _artifacts(run, out) == reference, f"killed at {kills}"
    assert temp_files(run) == [] and temp_files(out) == []


# --------------------------------------------------------------------------- two runs at once


def _collide(first_config: Path, second_config: Path, lock: Path, progress: Callable[[], int]):
    """Start a run of ``first_config``, pause it (SIGSTOP) while it holds ``lock`` part way
    through its stage (``progress()`` shards done), run ``second_config`` to the end; resume
    the first. The second run's exit code and stderr, and the first's."""
    folder = lock.parent.parent
    first = _start_run(first_config)
    try:

        def mid_stage() -> bool:
            return _holds_lock(lock, first.pid) and 0 < progress() < N_SHARDS

        wait_until(lambda: mid_stage() or first.poll() is not None, timeout=120)
        first.send_signal(signal.SIGSTOP)
        assert mid_stage(), f"the first run left {folder} before it could be paused"
        before = {**mtimes(folder), "files": sorted(mtimes(folder))}
        second = _start_run(second_config)
        _, second_err = second.communicate(timeout=120)
        assert {**mtimes(folder), "files": sorted(mtimes(folder))} == before, "second run wrote"
    finally:
        first.send_signal(signal.SIGCONT)
        _, first_err = first.communicate(timeout=120)
    return first, second, second_err, first_err


def test_a_second_run_on_a_folder_in_use_is_refused_and_the_first_finishes(
    tmp_path, inputs, kenlm_model_dir
):
    """Two ``datafilter run`` processes on one run folder, then two run folders sharing one
    output folder: the first run is paused mid-stage while it holds the folder's lock; the second
    is refused with one line naming the folder and the holder and changes nothing there; the
    first, resumed, finishes with the same bytes as a run alone."""
    run, out = tmp_path / "run", tmp_path / "out"
    config = _write_config(tmp_path / "a.yaml", inputs, run, out, kenlm_model_dir)
    reference = _reference(config, run, out)
    other = _write_config(tmp_path / "b.yaml", inputs, tmp_path / "run-b", out, kenlm_model_dir)
    cases = {  # the second run's config, the lock it meets, the first run's finished shards
        "same run folder": (config, run, "_state/score/kenlm/*.done.json"),
        "same output folder": (other, out, "_state/select/*/*.done.json"),
    }
    for second_config, folder, done in cases.values():
        first, second, err, first_err = _collide(
            config,
            second_config,
            folder / "_state" / "lock",
            lambda f=folder, d=done: len(list(f.glob(d))),
        )
        assert second.returncode == 2, err
        errors = [line for line in err.splitlines() if line.startswith("datafilter: error:")]
        assert errors == [err.splitlines()[-1]], err  # one error line, the last
        holder = f"datafilter: error: {folder} is in use by another run "
        assert errors[0].startswith(holder) and f"pid {first.pid})" in errors[0], err
        assert first.returncode == 0, first_err
        assert _artifacts(run, out) == reference
        shutil.rmtree(run)  # the next case starts from nothing again
        shutil.rmtree(out)


# --------------------------------------------------------------------------- the disk fails


class Disk:
    """A small tmpfs at ``path``, mounted in a private mount namespace (``unshare``), seen only
    by the processes run through :meth:`command` and, from outside, under :attr:`view`.

    The namespace (and every mount in it) disappears with its holder process, so nothing is
    left mounted on the machine whatever happens to the test. Root is no obstacle to the
    faults: a read-only mount and a full file system refuse root's writes too."""

    SIZE = 64 * 1024 * 1024

    def __init__(self, path: Path):
        self.path = path
        path.mkdir()
        script = (
            f"mount -t tmpfs -o size={self.SIZE} tmpfs '{path}' && echo ready && exec sleep 900"
        )
        self.holder = subprocess.Popen(
            [
                "unshare",
                "--user",
                "--map-root-user",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
            ],  # fmt: skip
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if self.holder.stdout.readline().strip() != "ready":
            self.holder.kill()
            pytest.skip(f"no private mount namespace here: {self.holder.stderr.read().strip()}")
        self.view = Path(f"/proc/{self.holder.pid}/root") / path.relative_to("/")
        stat = os.statvfs(self.view)
        assert stat.f_blocks * stat.f_frsize == self.SIZE, "not the test's tmpfs"

    def command(self) -> list[str]:
        """The prefix that runs a command inside the namespace."""
        return ["nsenter", f"--target={self.holder.pid}", "--user", "--mount"]

    def _inside(self, script: str) -> None:
        subprocess.run([*self.command(), "sh", "-c", script], check=True, timeout=30)

    def make_read_only(self) -> None:
        """Cover the tmpfs with a read-only bind mount of itself: files opened before keep
        working (as the run's lock file does), every new open, create or rename is refused."""
        self._inside(f"mount --bind '{self.path}' '{self.path}' && "
                     f"mount -o remount,bind,ro '{self.path}'")  # fmt: skip

    def make_writable(self) -> None:
        self._inside(f"umount '{self.path}'")

    def fill(self) -> None:
        """Reserve every free block of the tmpfs (and only of it: its size was checked), 1 MiB
        then 4 KiB at a time (tmpfs gives back the whole of a request it cannot meet)."""
        fd = os.open(self.view / "ballast", os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            size = 0
            for chunk in (1024 * 1024, 4096):
                while size < self.SIZE:
                    try:
                        os.posix_fallocate(fd, size, chunk)
                    except OSError as exc:
                        assert exc.errno == errno.ENOSPC
                        break
                    size += chunk
        finally:
            os.close(fd)
        assert os.statvfs(self.view).f_bavail == 0

    def empty(self) -> None:
        (self.view / "ballast").unlink()

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait(timeout=30)


@pytest.fixture
def disk(tmp_path) -> Iterator[Disk]:
    if not (shutil.which("unshare") and shutil.which("nsenter")):
        pytest.skip("unshare/nsenter (util-linux) are not installed")
    d = Disk(tmp_path / "disk")
    yield d
    d.close()


@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_a_disk_that_becomes_unwritable_stops_the_run_and_finished_shards_stay_valid(
    tmp_path, inputs, kenlm_model_dir, disk, fault
):
    """The run and output folders live on a 64 MiB tmpfs. Once the first shard is scored the
    file system is made read-only (or filled up): the run stops with one line naming the file it
    could not write, the shards finished before keep valid files and completion records, and a
    rerun once the disk is writable again finishes with the same bytes as an undisturbed run."""
    run, out = disk.path / "run", disk.path / "out"
    config = _write_config(tmp_path / "run.yaml", inputs, run, out, kenlm_model_dir)
    # The reference runs outside the namespace, at the same paths (on the real disk there).
    reference = _reference(config, run, out)
    markers = disk.view / "run" / "_state" / "score" / "kenlm"

    proc = _start_run(config, *disk.command())
    wait_until(lambda: _count(markers, "*.done.json") > 0 or proc.poll() is not None, timeout=120)
    disk.make_read_only() if fault == "read-only" else disk.fill()
    _, stderr = proc.communicate(timeout=120)

    reason = "Read-only file system" if fault == "read-only" else "No space left on device"
    assert proc.returncode == 2, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("datafilter: error:")]
    assert errors == [stderr.splitlines()[-1]], stderr  # one error line, the last
    assert errors[0].startswith(f"datafilter: error: score: cannot write {run}/"), stderr
    assert f": {reason}; the shards finished before are kept" in errors[0]
    finished = sorted(markers.glob("*.done.json"))
    assert 0 < len(finished) < N_SHARDS
    for marker in finished:  # every completion record names a complete, correct score shard
        shard = marker.name.removesuffix(".done.json")
        record = json.loads(marker.read_text())
        path = disk.view / "run" / "scores" / "kenlm" / shard
        assert pq.read_metadata(path).num_rows == record["stats"]["rows"]
        assert path.read_bytes() == reference[f"run/scores/kenlm/{shard}"]
    # A shard may have been renamed into place just before its record failed: under its final
    # name every shard is complete (the rename is atomic); without a record it is redone.
    for path in (disk.view / "run" / "scores" / "kenlm").glob("*.parquet"):
        assert path.read_bytes() == reference[f"run/scores/kenlm/{path.name}"]

    disk.make_writable() if fault == "read-only" else disk.empty()
    proc = _start_run(config, *disk.command())
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    done = len(finished)
    assert f"score: {N_SHARDS - done} of {N_SHARDS} shards to score ({done} done)" in stderr
    assert _artifacts(disk.view / "run", disk.view / "out") == reference
    assert temp_files(disk.view) == []
