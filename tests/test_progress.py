"""Progress output: tqdm bars on a terminal or when forced, never with -q; off a terminal, a
stage logs a plain progress line every few seconds instead."""

from __future__ import annotations

import time

import pytest
from helpers_corpus import wait_until

from datafilter import cli, progress


@pytest.fixture(autouse=True)
def default_progress(monkeypatch):
    monkeypatch.delenv("DATAFILTER_PROGRESS", raising=False)
    yield
    progress.set_enabled(None)


def test_no_bar_off_a_terminal(capsys) -> None:
    assert progress.mode() == "lines"  # stderr is not a terminal under pytest
    assert list(progress.track(range(3), desc="x")) == [0, 1, 2]
    with progress.progress_bar(total=4, desc="encoding", unit="lines") as bar:
        bar.update(4)
    assert capsys.readouterr().err == ""


def test_a_bar_when_forced(capsys, monkeypatch) -> None:
    monkeypatch.setenv("DATAFILTER_PROGRESS", "1")
    assert progress.mode() == "bar"
    with progress.progress_bar(total=4, desc="encoding", unit="lines") as bar:
        bar.update(4)
    err = capsys.readouterr().err
    assert "encoding: 100%" in err and "4.00/4.00 [" in err and err.endswith("\n")


def test_quiet_turns_every_progress_output_off(capsys, monkeypatch) -> None:
    monkeypatch.setenv("DATAFILTER_PROGRESS", "1")
    assert cli.main(["-q", "list"]) == 0  # -q: no bars, no progress lines
    assert progress.mode() is None and not progress.is_enabled()
    capsys.readouterr()
    list(progress.track(range(3), desc="x"))
    lines: list[str] = []
    with progress.StageProgress("score", 2, lines.append) as stage:
        stage.shard_done({"rows": 5, "n_bytes": 100})
    assert capsys.readouterr().err == "" and lines == []


def test_a_stage_bar_counts_shards_and_documents(capsys, monkeypatch) -> None:
    monkeypatch.setenv("DATAFILTER_PROGRESS", "1")
    with progress.StageProgress("score", 2, print) as stage:
        stage.shard_done({"rows": 1000, "n_bytes": 4_000_000})
        progress.echo("score: [1/2] part-0.parquet rows=1000")
        stage.shard_done({"rows": 24, "n_bytes": 100})
    err = capsys.readouterr().err
    assert "score: [1/2] part-0.parquet rows=1000\n" in err  # printed above the bar
    assert "score: 100%" in err and "2/2 [" in err and "1,024 docs" in err


def test_off_a_terminal_a_stage_logs_a_line_every_few_seconds(monkeypatch) -> None:
    """The line's content is fixed before it is printed (no race with the printing thread)."""
    monkeypatch.setattr(progress, "LINE_SECONDS", 0.01)
    lines: list[str] = []
    with progress.StageProgress("select", 4, lines.append) as stage:
        stage.shard_done({"read": 300, "groups": {"a": {"read_bytes": 2_000_000}}})
        stage.shard_done(None)  # a failed shard
        wait_until(lambda: len(lines) >= 2, timeout=60)
    line = lines[-1]
    assert line.startswith("select: 2/4 shards (1 failed), 300 documents, ") and " MB/s, " in line
    assert " elapsed, about " in line and line.endswith(" left")


def test_no_line_once_every_shard_is_done(monkeypatch) -> None:
    monkeypatch.setattr(progress, "LINE_SECONDS", 0.01)
    lines: list[str] = []
    with progress.StageProgress("score", 1, lines.append) as stage:
        stage.shard_done({"rows": 1, "n_bytes": 1})
        lines.append("marker")
        time.sleep(0.05)  # several periods pass with nothing left to do
    assert lines == ["marker"]


def test_the_command_draws_a_bar_on_a_terminal(tmp_path, kenlm_model_dir) -> None:
    """``datafilter score`` with stderr on a pseudo-terminal (of unknown size, 0 x 0, as under
    ``script`` or some CI runners): the stage's bar is drawn; the stage's lines are kept."""
    import os
    import pty
    import subprocess

    from helpers_corpus import cli_command, text_shard

    inp = text_shard(tmp_path / "in" / "a.parquet", ["some text here"] * 20)
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "DATAFILTER_PROGRESS"}
    proc = subprocess.Popen(
        cli_command("score", "--input", inp.parent, "--output", tmp_path / "run",
                    "--model", kenlm_model_dir),
        stdout=subprocess.DEVNULL, stderr=slave, env=env,
    )  # fmt: skip
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the command ended: the terminal is gone
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=120) == 0
    err = b"".join(chunks).decode()
    assert "score: 100%|" in err and "1/1 [" in err and "20 docs" in err, err
    assert "score: [1/1] a.parquet rows=20" in err
