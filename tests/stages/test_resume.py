"""Interrupted runs resume where they stopped and give the same bytes as uninterrupted ones.

What a killed run leaves behind, and what happens to it:
- finished shards: the output and its completion record (both renamed into place) are kept;
- the shard being written: a hidden temporary file ``.<name>.tmp-<pid>-<hex>`` beside its final
  name. Every stage ignores it (input discovery skips hidden names, thresholds and select read
  only the score shards named by completion records, Parquet dataset readers skip names starting
  with '.'), and the next run on that folder deletes it once it holds the lock;
- the run lock file ``_state/lock`` naming the dead pid; its flock died with the process, so the
  next run takes it at once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from helpers_corpus import (
    LOCAL,
    cli_command,
    files_under,
    log_lines,
    mtimes,
    plan_and_select,
    quiet,
    run_cli,
    split_pool,
    temp_files,
    wait_until,
)

from datafilter import api
from datafilter.errors import ConfigError, RunLockedError
from datafilter.io.layout import RunLayout
from datafilter.io.lock import is_locked
from datafilter.io.shards import discover_shards
from datafilter.kenlm.train import KenlmTrainingOptions, train_kenlm

N_SHARDS = 8
BATCH_ROWS = 64


def _score_args(inp: Path, run: Path, model: Path, *extra: str) -> list:
    return [
        "score", "--input", inp, "--output", run, "--model", model,
        "--executor", "local", "--batch-rows", str(BATCH_ROWS), *extra,
    ]  # fmt: skip


def _markers(run: Path, sid: str = "kenlm") -> list[Path]:
    return sorted((run / "_state" / "score" / sid).glob("**/*.done.json"))


def _not_state(rel: Path) -> bool:
    """Bookkeeping, and plan files (each records when it was made)."""
    return rel.parts[0] == "_state" or rel.parts[:2] == ("thresholds", "plans")


def _kill_after_first_shard(args: list, run: Path, *, whole_group: bool = False) -> int:
    """Start ``datafilter ARGS``, SIGKILL it once a shard is finished; the pid it had.

    ``whole_group`` kills its process group too (as a job scheduler or Ctrl-C would): a local
    Ray cluster started by a driver that is SIGKILLed alone leaves Ray agent processes behind.
    """
    proc = subprocess.Popen(
        cli_command(*args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=whole_group,
    )
    try:
        wait_until(lambda: bool(_markers(run)) or proc.poll() is not None, timeout=120)
    finally:
        if whole_group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.send_signal(signal.SIGKILL)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, stderr
    return proc.pid


def _pipeline(run: Path, out: Path) -> None:
    api.thresholds(run)
    plan_and_select(run, out, options={"keep": 0.4})


# --------------------------------------------------------------------------- kill and resume


def test_killed_run_resumes_to_the_same_bytes_through_the_whole_chain(
    tmp_path, demo_corpus, kenlm_model_dir
):
    inp, run, out = tmp_path / "input", tmp_path / "run", tmp_path / "out"
    split_pool(demo_corpus, inp, N_SHARDS)
    # Run folders record absolute paths (run.json, manifest), so both runs use the same paths:
    # first the uninterrupted reference, whose bytes are kept in memory, then the killed one.
    api.score(
        inp, run, options={"model": str(kenlm_model_dir)}, batch_rows=BATCH_ROWS,
        runtime=LOCAL,
    )  # fmt: skip
    _pipeline(run, out)
    reference_run = files_under(run, skip=_not_state)
    reference_out = files_under(out, skip=_not_state)
    assert len([k for k in reference_run if k.startswith("scores/")]) == N_SHARDS
    assert len(reference_out) == N_SHARDS + 1  # shards + manifest.json
    shutil.rmtree(run)
    shutil.rmtree(out)

    # A stray temporary file in the input folder must not become an input shard.
    stray = inp / f".part-00099.parquet.tmp-{os.getpid()}-0badcafe"
    shutil.copy(inp / "part-00000.parquet", stray)

    pid = _kill_after_first_shard(_score_args(inp, run, kenlm_model_dir), run)
    done = len(_markers(run))
    assert 1 <= done < N_SHARDS, "the run was not interrupted part way"
    lock = RunLayout.at(run).lock_path
    assert json.loads(lock.read_text())["pid"] == pid  # left behind by the killed process
    leftovers = temp_files(run)  # usually the half-written score shard of the killed run
    assert all(p.name.startswith(".") and f".tmp-{pid}-" in p.name for p in leftovers)

    proc = run_cli(*_score_args(inp, run, kenlm_model_dir))
    assert proc.returncode == 0, proc.stderr
    todo = N_SHARDS - done
    assert f"score: {todo} of {N_SHARDS} shards to score ({done} done)" in proc.stderr
    assert not is_locked(lock)  # the dead run's lock went with it; the rerun released its own
    assert leftovers == [] or temp_files(run) == []  # cleaned by the rerun, under the lock
    assert [s.rel for s in discover_shards(inp)] == [
        f"part-{i:05d}.parquet" for i in range(N_SHARDS)
    ]
    assert [s.rel for s in discover_shards(run / "scores" / "kenlm")] == [
        f"part-{i:05d}.parquet" for i in range(N_SHARDS)
    ]

    api.thresholds(run)
    plan_and_select(run, out, options={"keep": 0.4})
    # Now interrupt the select stage too, as a kill would leave it: some shards finished,
    # one renamed into place but without its completion record, a temporary file, no manifest.
    layout_markers = sorted((out / "_state" / "select").glob("*/*.done.json"))
    assert len(layout_markers) == N_SHARDS
    for marker in layout_markers[3:]:
        marker.unlink()
        (out / marker.name.removesuffix(".done.json")).unlink()
    layout_markers[2].unlink()
    (out / "manifest.json").unlink()
    (out / f".part-00004.parquet.tmp-{pid}-deadbeef").write_bytes(b"half a parquet file")
    with log_lines() as log:
        plan_and_select(run, out, options={"keep": 0.4})
    assert f"select: 6 of {N_SHARDS} shards to write (2 done)" in log
    assert not (out / f".part-00004.parquet.tmp-{pid}-deadbeef").exists()

    resumed_run = files_under(run, skip=lambda rel: _not_state(rel) or ".tmp-" in rel.name)
    resumed_out = files_under(out, skip=lambda rel: _not_state(rel) or ".tmp-" in rel.name)
    assert resumed_run.keys() == reference_run.keys()
    for name, data in reference_run.items():
        assert resumed_run[name] == data, f"{name} differs after resuming"
    assert resumed_out.keys() == reference_out.keys()
    for name, data in reference_out.items():
        assert resumed_out[name] == data, f"{name} differs after resuming"
    # Parquet dataset readers skip the hidden temporary file and _state/ by default ('.', '_'
    # prefixes); manifest.json beside the shards is not Parquet and has to be excluded by name.
    kept = ds.dataset(out, format="parquet", ignore_prefixes=[".", "_", "manifest.json"])
    assert kept.count_rows() == json.loads(resumed_out["manifest.json"])["totals"]["kept"]


def test_killed_ray_run_resumes_to_the_same_bytes(scored, kenlm_model_dir, tmp_path):
    pytest.importorskip("ray")
    inp, reference = scored  # scored in-process (local executor)
    run = tmp_path / "run-ray"
    args = [
        "score", "--input", inp, "--output", run, "--model", kenlm_model_dir,
        "--executor", "ray", "--num-actors", "1",
    ]  # fmt: skip
    _kill_after_first_shard(args, run, whole_group=True)
    done = len(_markers(run))
    assert 1 <= done < 4, "the run was not interrupted part way"
    with log_lines() as log:
        api.score(inp, run, options={"model": str(kenlm_model_dir)}, runtime=LOCAL)
    assert f"score: {4 - done} of 4 shards to score ({done} done)" in log
    # Shards scored by Ray actors before the kill and in-process after it equal a local run.
    assert files_under(run / "scores") == files_under(reference / "scores")


# --------------------------------------------------------------------------- reruns


@pytest.fixture
def scored(tmp_path, demo_corpus, kenlm_model_dir) -> tuple[Path, Path]:
    """A 4-shard input and a run folder where every shard is scored."""
    inp, run = tmp_path / "input", tmp_path / "run"
    split_pool(demo_corpus, inp, 4)
    api.score(inp, run, options={"model": str(kenlm_model_dir)}, runtime=LOCAL)
    return inp, run


def test_rerun_skips_finished_shards_and_leaves_their_records_alone(
    scored, kenlm_model_dir
):
    inp, run = scored
    markers = {p: p.read_bytes() for p in _markers(run)}
    before = mtimes(run)
    with log_lines() as log:
        api.score(inp, run, options={"model": str(kenlm_model_dir)}, runtime=LOCAL)
    assert "score: 0 of 4 shards to score (4 done)" in log
    assert {p: p.read_bytes() for p in _markers(run)} == markers
    after = mtimes(run)
    changed = {k for k in before if after.get(k) != before[k]}
    # Only the run record, the stage summary (same content) and the lock file are touched.
    assert changed <= {"run.json", "_state/score/kenlm/summary.json", "_state/lock"}


def test_a_rewritten_input_shard_is_the_only_one_rescored(scored, kenlm_model_dir):
    inp, run = scored
    before = mtimes(run / "scores")
    marker_bytes = {p.name: p.read_bytes() for p in _markers(run)}
    changed = inp / "part-00002.parquet"
    table = pq.read_table(changed)
    pq.write_table(table.slice(0, table.num_rows - 5), changed)

    with log_lines() as log:
        summary = api.score(inp, run, options={"model": str(kenlm_model_dir)}, runtime=LOCAL)
    assert "score: 1 of 4 shards to score (3 done)" in log
    assert any(line.startswith("score: [1/1] part-00002.parquet") for line in log)
    after = mtimes(run / "scores")
    assert {k for k in before if after[k] != before[k]} == {"kenlm/part-00002.parquet"}
    for marker in _markers(run):
        if marker.name != "part-00002.parquet.done.json":
            assert marker.read_bytes() == marker_bytes[marker.name]
    rescored = pq.read_table(run / "scores" / "kenlm" / "part-00002.parquet")
    assert rescored.num_rows == table.num_rows - 5
    assert summary["rows"] == pq.read_table(inp).num_rows


# --------------------------------------------------------------------------- locks and settings


def test_a_second_run_on_a_folder_in_use_is_refused(scored, kenlm_model_dir, tmp_path):
    inp, run = scored
    lock = RunLayout.at(run).lock_path
    holder = subprocess.Popen(
        [
            sys.executable, "-c",
            "import sys, time; from pathlib import Path; from datafilter.io.lock import run_lock\n"
            "with run_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(120)",
            str(lock),
        ],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(
            RunLockedError, match=rf"{run} is in use by another run .*pid {holder.pid}"
        ):
            api.score(inp, run, options={"model": str(kenlm_model_dir)}, runtime=LOCAL)
        proc = run_cli(*_score_args(inp, run, kenlm_model_dir))
        assert proc.returncode == 2
        assert (
            proc.stderr.startswith("datafilter: error: ") and "in use by another run" in proc.stderr
        )
        assert len(proc.stderr.splitlines()) == 1
    finally:
        holder.kill()
        holder.wait(timeout=30)
    # The holder was killed without releasing the lock: the kernel released it.
    assert lock.exists() and not is_locked(lock)
    with log_lines() as log:
        api.score(inp, run, options={"model": str(kenlm_model_dir)}, runtime=LOCAL)
    assert "score: 0 of 4 shards to score (4 done)" in log
    assert not is_locked(lock)


def test_another_model_under_the_same_scorer_id_is_refused(scored, kenlm_model_dir, tmp_path):
    inp, run = scored
    other = tmp_path / "other-model"
    shutil.copytree(kenlm_model_dir, other)
    with pytest.raises(ConfigError) as info:
        api.score(inp, run, options={"model": str(other)}, runtime=LOCAL)
    assert "--scorer-id" in str(info.value) and "--overwrite" in str(info.value)
    assert str(run / "scores" / "kenlm") in str(info.value)

    with log_lines() as log:
        api.score(inp, run, options={"model": str(other)}, scorer_id="kenlm-b", runtime=LOCAL)
    assert "score: 4 of 4 shards to score (0 done)" in log
    assert sorted(p.name for p in (run / "scores").iterdir()) == ["kenlm", "kenlm-b"]

    with log_lines() as log:
        api.score(inp, run, options={"model": str(other)}, overwrite=True, runtime=LOCAL)
    assert "score: 4 of 4 shards to score (0 done)" in log


def test_a_model_replaced_in_place_is_noticed(scored, kenlm_model_dir, tmp_path):
    """A model retrained in place with the same options keeps its recipe but not its checksums."""
    inp, _ = scored
    model = tmp_path / "model"
    shutil.copytree(kenlm_model_dir, model)
    run = tmp_path / "run-model"
    api.score(inp, run, options={"model": str(model)}, runtime=LOCAL)
    text = tmp_path / "other.txt"
    text.write_text("\n".join(f"a different corpus line number {i} of {i % 7}" for i in range(300)))
    options = KenlmTrainingOptions(order=3, vocab_size=2000, memory="256M")
    train_kenlm([text], model, options=options, overwrite=True, log=quiet)
    with pytest.raises(ConfigError, match="holds scores made with other settings"):
        api.score(inp, run, options={"model": str(model)}, runtime=LOCAL)
