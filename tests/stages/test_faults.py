"""Faults injected into real runs: a worker process or Ray actor killed mid-shard, the driver
killed at random moments, two runs on one folder, and a disk that becomes read-only or full
mid-run.

Each run is compared byte for byte with an uninterrupted run made at the same paths (run
folders record absolute paths). ``DATAFILTER_FAULT_SEED`` picks other random kill moments.

No fault here races the work: each is injected while the process waits at a test-only pause
point (``datafilter/pause_points.py``, ``tests/pauses.py``) that it cannot pass until the test
lets it, so a faster (or slower) machine meets every fault at the same place.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
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
    split_pool,
    temp_files,
    wait_until,
)
from pauses import Pauses

from datafilter import api
from datafilter.config import load_config
from datafilter.io.atomic import TMP_MARK
from datafilter.stages.run import run_config as run_pipeline

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
    """Bookkeeping, and plan files (each records when it was made)."""
    return rel.parts[0] == "_state" or rel.parts[:2] == ("thresholds", "plans")


def _artifacts(run: Path, out: Path) -> dict[str, bytes]:
    """Every file of the run and output folders except the bookkeeping under ``_state/``."""
    return {
        **{f"run/{k}": v for k, v in files_under(run, skip=_not_state).items()},
        **{f"out/{k}": v for k, v in files_under(out, skip=_not_state).items()},
    }


def _reference(config: Path, run: Path, out: Path) -> dict[str, bytes]:
    """An uninterrupted in-process run of ``config``: its files, then its folders removed."""
    run_pipeline(load_config(config), progress=False)
    files = _artifacts(run, out)
    assert len([k for k in files if k.startswith("out/") and k.endswith(".parquet")]) == N_SHARDS
    shutil.rmtree(run)
    shutil.rmtree(out)
    return files


def _start_run(config: Path, *prefix: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [*prefix, *cli_command("run", config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _holds_lock(lock: Path, pid: int) -> bool:
    """Whether the lock file names ``pid`` as its holder: read only, never takes the lock (a
    probe with flock could make the run it watches fail to take it)."""
    try:
        return json.loads(lock.read_text() or "{}").get("pid") == pid
    except (OSError, ValueError):
        return False


# --------------------------------------------------------------------------- a worker dies


def _shard_of_temp(name: str) -> str:
    """``.part-00003.parquet.tmp-<pid>-<hex>`` -> ``part-00003.parquet``."""
    return name[1 : name.index(TMP_MARK)]


def _pid_of_temp(name: str) -> int:
    return int(name.split(TMP_MARK)[1].split("-")[0])


def _shard_written_by(folder: Path, pid: int) -> str:
    """The shard whose temporary file process ``pid`` holds in ``folder``."""
    [shard] = [_shard_of_temp(t.name) for t in temp_files(folder) if _pid_of_temp(t.name) == pid]
    return shard


def _is_gone(pid: int) -> bool:
    """Whether ``pid`` has ended (a zombie counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _score_command(inputs: Path, run: Path, model: Path, executor: str) -> list[str]:
    return cli_command(
        "score", "--input", inputs, "--output", run, "--model", model, "--id-column", "id",
        "--batch-rows", str(BATCH_ROWS), "--executor", executor, "--num-actors", "2",
    )  # fmt: skip


def _kill_writers(pauses: Pauses, proc: subprocess.Popen, scores: Path, deaths: int) -> str:
    """SIGKILL the worker process writing the first shard to pause, then (``deaths`` > 1) the
    ones that retry that same shard; let every other visit go on. The shard killed."""
    shard = None
    killed = 0
    while killed < deaths:
        pid, here = pauses.wait("score:shard", proc)
        mine = _shard_written_by(scores, pid)
        if shard is None or mine == shard:
            shard = mine
            os.kill(pid, signal.SIGKILL)
            killed += 1
            wait_until(lambda p=pid: _is_gone(p), timeout=60)
        else:
            pauses.release(here)
    pauses.release_all("score:shard")
    return shard


@pytest.mark.parametrize("executor", ["process", "ray"])
def test_a_worker_killed_mid_shard_is_replaced_and_the_shard_retried(
    tmp_path, inputs, kenlm_model_dir, executor
):
    """SIGKILL the worker process (a pool process, or a Ray actor) while it is inside a shard,
    its temporary file open (held there by a test-only pause point): a new worker runs that
    shard again; every shard is written once, with the same bytes as an in-process run."""
    if executor == "ray":
        pytest.importorskip("ray")
    options = {"model": str(kenlm_model_dir)}
    reference = tmp_path / "reference"
    api.score(inputs, reference, options=options, id_column="id", batch_rows=BATCH_ROWS,
              runtime=LOCAL)  # fmt: skip
    run = tmp_path / "run"
    pauses = Pauses(tmp_path / "pauses", "score:shard")
    proc = subprocess.Popen(
        _score_command(inputs, run, kenlm_model_dir, executor),
        env=pauses.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        shard = _kill_writers(pauses, proc, run / "scores" / "kenlm", deaths=1)
    finally:
        _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    finished = [line.split()[2] for line in stderr.splitlines() if line.startswith("score: [")]
    assert sorted(finished) == [f"part-{i:05d}.parquet" for i in range(N_SHARDS)], stderr
    assert "FAILED" not in stderr
    if executor == "process":
        assert f"score: {shard}: its worker process died (killed by SIGKILL" in stderr
    # The retried shard, like every other, holds each input row once, in order.
    scores = run / "scores" / "kenlm"
    for path in sorted(scores.glob("*.parquet")):
        rows = pq.read_table(path, columns=["row"])["row"].to_numpy()
        assert np.array_equal(rows, np.arange(pq.ParquetFile(inputs / path.name).metadata.num_rows))
    assert files_under(run / "scores") == files_under(reference / "scores"), shard
    assert temp_files(run) == []  # the dead worker's half-written file was removed


def test_a_shard_whose_worker_dies_twice_fails_alone(tmp_path, inputs, kenlm_model_dir):
    """The worker running a shard is killed, and so is the one that retries it: that shard
    fails with one line saying how its worker died; the other shards are finished and kept."""
    run = tmp_path / "run"
    pauses = Pauses(tmp_path / "pauses", "score:shard")
    proc = subprocess.Popen(
        _score_command(inputs, run, kenlm_model_dir, "process"),
        env=pauses.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        shard = _kill_writers(pauses, proc, run / "scores" / "kenlm", deaths=2)
    finally:
        _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, stderr
    failed = f"  {shard}: the worker process running it died (killed by SIGKILL"
    assert "score: 1 of 8 shards failed" in stderr and failed in stderr, stderr
    done = sorted(p.name for p in (run / "scores" / "kenlm").glob("*.parquet"))
    assert done == sorted(f"part-{i:05d}.parquet" for i in range(N_SHARDS) if
                          f"part-{i:05d}.parquet" != shard)  # fmt: skip
    assert temp_files(run) == []


# --------------------------------------------------------------------------- the driver dies


def test_a_driver_killed_at_random_moments_resumes_to_the_same_bytes(
    tmp_path, inputs, kenlm_model_dir
):
    """``datafilter run`` SIGKILLed four times, each time while it certainly works: at a random
    moment after launch (at the latest inside its first shard), inside scoring after 1-3 more
    shards (a shard's temporary file open), inside thresholds (the first or the second table)
    and inside selection after 1..N-2 shards. The run finally completes and every file equals
    an uninterrupted run's.

    Each kill but the first lands while the process waits at a test-only pause point
    (``datafilter/pause_points.py``) that it cannot pass until the test lets it; the first lands
    at a random time or at the first pause point, whichever comes first. A machine twice as
    fast reaches the same points sooner and is killed at the same places."""
    run, out = tmp_path / "run", tmp_path / "out"
    config = _write_config(tmp_path / "run.yaml", inputs, run, out, kenlm_model_dir)
    reference = _reference(config, run, out)
    rng = random.Random(RNG_SEED)
    moments = [  # (name, pause point, visits let through before the kill)
        ("launch", "score:shard", 0),
        ("score", "score:shard", rng.randint(1, 3)),
        ("thresholds", "thresholds", rng.randint(0, 1)),
        ("select", "select:shard", rng.randint(1, N_SHARDS - 2)),
    ]
    for name, point, let_through in moments:
        pauses = Pauses(tmp_path / f"pauses-{name}", point)
        proc = _start_run(config, env=pauses.env())
        try:
            if name == "launch":
                start, delay = time.monotonic(), rng.uniform(0.1, 2.0)
                wait_until(
                    lambda p=pauses, s=start, d=delay: time.monotonic() - s > d
                    or any(p.folder.glob("*.here")),
                    timeout=300,
                )
            else:
                for _ in range(let_through):
                    pauses.release(pauses.wait(point, proc)[1])
                pauses.wait(point, proc)
            assert proc.poll() is None, f"the run ended before the {name} kill"
            proc.send_signal(signal.SIGKILL)
        finally:
            _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL, stderr

    final = _start_run(config)
    _, stderr = final.communicate(timeout=120)
    assert final.returncode == 0, stderr
    assert _artifacts(run, out) == reference, f"killed at {moments}"
    assert temp_files(run) == [] and temp_files(out) == []


# --------------------------------------------------------------------------- two runs at once


def _collide(
    first_config: Path, second_config: Path, lock: Path, point: str, pauses: Pauses
) -> tuple[subprocess.Popen, subprocess.Popen, str, str]:
    """Start a run of ``first_config`` and hold it inside its second shard of the stage at
    ``point`` (one shard done, the folder's lock held), run ``second_config`` to the end, then
    let the first go on. The first run, the second, the second's stderr, the first's."""
    folder = lock.parent.parent
    first = _start_run(first_config, env=pauses.env())
    try:
        pauses.release(pauses.wait(point, first)[1])
        pauses.wait(point, first)
        assert _holds_lock(lock, first.pid), f"the first run does not hold {lock}"
        before = {**mtimes(folder), "files": sorted(mtimes(folder))}
        second = _start_run(second_config)
        _, second_err = second.communicate(timeout=120)
        assert {**mtimes(folder), "files": sorted(mtimes(folder))} == before, "second run wrote"
    finally:
        pauses.release_all(point)
        _, first_err = first.communicate(timeout=120)
    return first, second, second_err, first_err


def test_a_second_run_on_a_folder_in_use_is_refused_and_the_first_finishes(
    tmp_path, inputs, kenlm_model_dir
):
    """Two ``datafilter run`` processes on one run folder, then two run folders sharing one
    output folder: the first run is held mid-stage (a test-only pause point) while it holds
    the folder's lock; the second is refused with one line naming the folder and the holder and
    changes nothing there; the first, let go, finishes with the same bytes as a run alone."""
    run, out = tmp_path / "run", tmp_path / "out"
    config = _write_config(tmp_path / "a.yaml", inputs, run, out, kenlm_model_dir)
    reference = _reference(config, run, out)
    other = _write_config(tmp_path / "b.yaml", inputs, tmp_path / "run-b", out, kenlm_model_dir)
    cases = {  # the second run's config, the folder whose lock it meets, the first run's point
        "same-run-folder": (config, run, "score:shard"),
        "same-output-folder": (other, out, "select:shard"),
    }
    for case, (second_config, folder, point) in cases.items():
        pauses = Pauses(tmp_path / f"pauses-{case}", point)
        first, second, err, first_err = _collide(
            config, second_config, folder / "_state" / "lock", point, pauses
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
    """The run and output folders live on a 64 MiB tmpfs. While the run is held inside its
    second shard (a test-only pause point) the file system is made read-only (or filled up):
    the run stops with one line naming the file it could not write, the shards finished before
    keep valid files and completion records, and a rerun once the disk is writable again
    finishes with the same bytes as an undisturbed run."""
    run, out = disk.path / "run", disk.path / "out"
    config = _write_config(tmp_path / "run.yaml", inputs, run, out, kenlm_model_dir)
    # The reference runs outside the namespace, at the same paths (on the real disk there).
    reference = _reference(config, run, out)
    markers = disk.view / "run" / "_state" / "score" / "kenlm"

    pauses = Pauses(tmp_path / "pauses", "score:shard")
    proc = _start_run(config, *disk.command(), env=pauses.env())
    try:  # held inside the second shard (a test-only pause point): one shard is finished
        pauses.release(pauses.wait("score:shard", proc)[1])
        pauses.wait("score:shard", proc)
        disk.make_read_only() if fault == "read-only" else disk.fill()
    finally:
        pauses.release_all("score:shard")
        _, stderr = proc.communicate(timeout=120)

    reason = "Read-only file system" if fault == "read-only" else "No space left on device"
    assert proc.returncode == 2, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("datafilter: error:")]
    assert errors == [stderr.splitlines()[-1]], stderr  # one error line, the last
    assert errors[0].startswith(f"datafilter: error: score: cannot write {run}/"), stderr
    assert f": {reason}; the shards finished before are kept" in errors[0]
    finished = sorted(markers.glob("*.done.json"))
    assert len(finished) == 1, finished  # the second shard, held open when the disk failed
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
