"""Off a terminal (a batch log), a long stage logs its own progress lines with rate and time
left; a local loop (KenLM training) too; ``-q`` shows none."""

from __future__ import annotations

import subprocess
import time

from helpers_corpus import cli_command, log_lines, text_shard
from pauses import Pauses

from datafilter import progress


def _wait_for_line(path, needle: str, proc: subprocess.Popen) -> str:
    """The first line of ``path`` holding ``needle``; the command is paused meanwhile, so the
    progress thread certainly writes it."""
    while True:
        for line in path.read_text().splitlines():
            if needle in line:
                return line
        assert proc.poll() is None, path.read_text()
        time.sleep(0.005)  # a poll for a line that is certainly coming, not a timing


def test_a_non_tty_score_logs_rate_and_time_left(tmp_path, kenlm_model_dir) -> None:
    folder = tmp_path / "in"
    for name in ("a", "b"):
        text_shard(folder / f"{name}.parquet", [f"some text number {i} here" for i in range(50)])
    pauses = Pauses(tmp_path / "pauses", "score:shard")
    err_path = tmp_path / "stderr.log"
    with err_path.open("w") as err:
        proc = subprocess.Popen(
            cli_command("score", "--input", folder, "--output", tmp_path / "run",
                        "--model", kenlm_model_dir, "--executor", "local"),
            stdout=subprocess.DEVNULL, stderr=err,
            env=pauses.env(DATAFILTER_PROGRESS_SECONDS="0.02", DATAFILTER_PROGRESS=""),
        )  # fmt: skip
        try:
            _, first = pauses.wait("score:shard", proc)
            pauses.release(first)
            pauses.wait("score:shard", proc)  # the second shard, the first one done
            line = _wait_for_line(err_path, "score: 1/2 shards", proc)
        finally:
            pauses.release_all("score:shard")
        assert proc.wait(timeout=300) == 0
    assert line.startswith("score: 1/2 shards, 50 documents, ") and " MB/s, " in line
    assert " elapsed, about " in line and line.endswith(" left")
    assert "\r" not in err_path.read_text() and "|" not in err_path.read_text()  # no bars


def test_a_local_loop_logs_count_rate_and_time_left(monkeypatch) -> None:
    monkeypatch.setenv(progress.INTERVAL_ENV, "0")
    monkeypatch.delenv("DATAFILTER_PROGRESS", raising=False)
    progress.set_enabled(None)
    assert progress.mode() == "lines"  # stderr is captured by pytest: not a terminal
    with log_lines() as lines, progress.progress_bar(4000, "encoding", "lines") as bar:
        for _ in range(4):
            bar.update(1000)
    last = lines[-1]
    assert last.startswith("encoding: 4.00k/4.00k lines, ") and "lines/s" in last
    assert " elapsed, about " in last and last.endswith(" left")


def test_quiet_shows_no_progress_line(monkeypatch) -> None:
    monkeypatch.setenv(progress.INTERVAL_ENV, "0")
    progress.set_enabled(False)
    try:
        with log_lines() as lines, progress.progress_bar(10, "encoding", "lines") as bar:
            bar.update(10)
        assert lines == []
    finally:
        progress.set_enabled(None)


def test_a_non_tty_thresholds_logs_that_it_works(tmp_path, kenlm_model_dir) -> None:
    from helpers_corpus import LOCAL

    from datafilter import api

    folder = tmp_path / "in"
    text_shard(folder / "a.parquet", [f"some text number {i} here" for i in range(50)])
    api.score(folder, tmp_path / "run", options={"model": str(kenlm_model_dir)}, runtime=LOCAL)
    pauses = Pauses(tmp_path / "pauses", "thresholds")
    err_path = tmp_path / "stderr.log"
    with err_path.open("w") as err:
        proc = subprocess.Popen(
            cli_command("thresholds", "--run", tmp_path / "run"),
            stdout=subprocess.DEVNULL, stderr=err,
            env=pauses.env(DATAFILTER_PROGRESS_SECONDS="0.02", DATAFILTER_PROGRESS=""),
        )  # fmt: skip
        try:
            pauses.wait("thresholds", proc)  # held inside the stage: lines certainly come
            line = _wait_for_line(err_path, "thresholds: working", proc)
        finally:
            pauses.release_all("thresholds")
        assert proc.wait(timeout=300) == 0
    assert line.startswith("thresholds: working, ") and line.endswith(" elapsed")
