"""``datafilter evaluate``: proxy models on equal tokens of each candidate and of a random control.

One small scored pool (clean prose of the demo corpus and random-character junk, scored by a
KenLM trained on clean reference text), evaluated once with the tiny preset for a few steps:
a selection of the junk loses to the random control, a selection of every document (the
control's documents, another random sample of them) is a tie within noise, no target document
reaches training, and an evaluation killed after its first proxy model resumes to the same table.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers_corpus import LOCAL, cli_command, write_shard
from pauses import Pauses

from datafilter import api
from datafilter.errors import ConfigError
from datafilter.proxy.compare import compare, recommend, verdict
from datafilter.reference.crossfit import text_hash
from datafilter.stages.evaluate import EvaluateOptions, parse_candidate

N_CLEAN, N_JUNK, N_TARGET = 130, 45, 25
CANDIDATES = [
    "junk=perplexity_band:criterion=high,keep=0.25",
    "everything=perplexity_band:criterion=low,keep=1.0",
]
OPTIONS = {"seeds": 3, "steps": 6, "holdout": 0.1, "heldout": True, "device": "cpu"}


@pytest.fixture(scope="module")
def pool(tmp_path_factory, demo_corpus):
    """Clean prose (ids ``c-*``) and random-character junk (``j-*``) in two shards, and a clean
    target set made of pool documents (so that leaving them out of training is needed)."""
    root = tmp_path_factory.mktemp("evaluate")
    table = pq.read_table(demo_corpus.pool_dir, columns=["text", "quality"])
    clean = [t[:400] for t, q in zip(*table.to_pydict().values(), strict=True) if q == "clean"]
    clean = clean[:N_CLEAN]
    rng = np.random.default_rng(0)
    alphabet = list("abcdefghijklmnopqrstuvwxyz0123456789#$%&*+=<>{}|~^ ")
    junk = ["".join(rng.choice(alphabet, 400)) for _ in range(N_JUNK)]
    ids = [f"c-{i}" for i in range(len(clean))] + [f"j-{i}" for i in range(len(junk))]
    texts = clean + junk
    order = rng.permutation(len(texts))
    half = len(texts) // 2
    for k, part in enumerate((order[:half], order[half:])):
        write_shard(
            root / "pool" / f"part-{k}.parquet",
            {"id": [ids[i] for i in part], "text": [texts[i] for i in part]},
        )
    write_shard(root / "clean.parquet", {"text": clean[:N_TARGET]})
    return root


def _scored(pool, kenlm_model_dir, name: str):
    run = pool / name
    api.score(pool / "pool", run, options={"model": str(kenlm_model_dir)}, id_column="id",
              runtime=LOCAL)  # fmt: skip
    return run


@pytest.fixture(scope="module")
def evaluated(pool, kenlm_model_dir):
    """A scored run evaluated in this process: the run folder and the table."""
    run = _scored(pool, kenlm_model_dir, "run-a")
    table = api.evaluate(run, candidates=CANDIDATES, targets={"clean": str(pool / "clean.parquet")},
                         runtime=LOCAL, **OPTIONS)  # fmt: skip
    return run, table


def _column(folder, name: str) -> list:
    """A column of every shard of a selection folder."""
    return [v for p in sorted(folder.glob("*.parquet")) for v in pq.read_table(p)[name].to_pylist()]


def _row(table, candidate, target):
    (row,) = [r for r in table["rows"] if r["candidate"] == candidate and r["target"] == target]
    return row


def test_a_selection_of_known_junk_loses_to_the_random_control(evaluated):
    run, table = evaluated
    ids = _column(run / "evaluate" / "junk" / "selection", "id")
    assert len(ids) >= 40 and sum(i.startswith("j-") for i in ids) >= 0.9 * len(ids)
    row = _row(table, "junk", "clean")
    assert row["verdict"] == "worse", row
    assert row["bits_per_byte_diff_low"] > 0 and row["wins"] == 0.0
    assert row["bits_per_byte_mean"] > _row(table, "random", "clean")["bits_per_byte_mean"]
    assert "worse than random: junk" in table["recommendations"][0]["statement"]


def test_a_selection_equal_to_the_random_control_is_a_tie_within_noise(evaluated):
    _, table = evaluated
    row = _row(table, "everything", "clean")
    assert row["verdict"] == "within noise", row
    assert row["bits_per_byte_diff_low"] <= 0 <= row["bits_per_byte_diff_high"]
    (clean,) = [r for r in table["recommendations"] if r["target"] == "clean"]
    assert clean["candidate"] is None and clean["within_noise"]
    assert clean["statement"].startswith("No candidate beats the random control beyond noise")


def test_target_documents_never_reach_training(evaluated, pool):
    run, table = evaluated
    folder = run / "evaluate"
    targets = set()
    for name in ("clean", "heldout"):
        hashes = pq.read_table(folder / "targets" / f"{name}.parquet")["text_hash"].to_pylist()
        assert hashes
        targets |= set(hashes)
    clean = pq.read_table(pool / "clean.parquet")["text"].to_pylist()
    assert {text_hash(t) for t in clean} <= targets
    for name in ("junk", "everything", "random"):
        selected = {text_hash(t) for t in _column(folder / name / "selection", "text")}
        for seed in (0, 1, 2):
            trained = pq.read_table(folder / name / f"seed-{seed}.trained.parquet")
            trained = set(trained["text_hash"].to_pylist())
            assert trained and trained <= selected
            assert trained.isdisjoint(targets)
            record = json.loads((folder / name / f"seed-{seed}.json").read_text())
            assert record["excluded_target_documents"] == len(selected & targets)
    # The targets were in the selections: leaving them out was needed.
    assert table["candidates"]["everything"]["excluded"] >= N_TARGET


def test_every_proxy_model_trains_on_the_same_tokens(evaluated):
    run, table = evaluated
    records = [json.loads(p.read_text()) for p in (run / "evaluate").glob("*/seed-*.json")]
    assert len(records) == 9
    assert {r["tokens_trained"] for r in records} == {table["steps"] * 16 * 128}
    assert len({r["distinct_tokens"] for r in records}) == 1
    smallest = min(c["tokens"] for c in table["candidates"].values())
    assert table["tokens"] == smallest == table["candidates"]["junk"]["tokens"]
    parquet = pq.read_table(run / "evaluate" / "table.parquet").to_pylist()
    assert parquet == json.loads((run / "evaluate" / "table.json").read_text())["rows"]
    assert {(r["candidate"], r["target"]) for r in parquet} == {
        (c, t) for c in ("junk", "everything", "random") for t in ("clean", "heldout")
    }


@pytest.mark.slow  # trains nine more proxy models
def test_an_evaluation_killed_after_its_first_model_resumes_to_the_same_table(
    tmp_path, evaluated, pool, kenlm_model_dir
):
    run = _scored(pool, kenlm_model_dir, "run-b")
    args = ["evaluate", "--run", run, "--candidate", *CANDIDATES, "--target",
            f"clean={pool / 'clean.parquet'}", "--seeds", "3", "--steps", "6", "--holdout",
            "0.1", "--heldout", "--device", "cpu", "--executor", "local"]  # fmt: skip
    pauses = Pauses(tmp_path / "pauses", "evaluate:task")
    proc = subprocess.Popen(cli_command(*args), env=pauses.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        _, first = pauses.wait("evaluate:task", proc)
        pauses.release(first)
        pauses.wait("evaluate:task", proc)  # the first record is written, the second is not
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.communicate(timeout=300)
    done = sorted((run / "evaluate").glob("*/seed-*.json"))
    assert len(done) == 1
    before = done[0].read_bytes()
    again = subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr
    assert "evaluate: 8 of 9 proxy models to train (1 done)" in again.stderr
    assert done[0].read_bytes() == before  # reused, not trained again
    resumed = json.loads((run / "evaluate" / "table.json").read_text())
    _, table = evaluated
    assert resumed["rows"] == table["rows"]
    assert resumed["recommendations"] == table["recommendations"]


# --------------------------------------------------------------------------- no training


def test_a_candidate_is_written_as_name_selector_and_options():
    assert parse_candidate("low=perplexity_band:criterion=low,keep=0.25") == {
        "name": "low",
        "selector": "perplexity_band",
        "options": {"criterion": "low", "keep": 0.25},
    }
    opts = EvaluateOptions(candidates=["perplexity_band:keep=0.5", {"selector": "x"}])
    assert opts.candidates[0].label == "band-keep=0.5" and opts.candidates[1].label == "x"


def test_the_control_name_and_duplicate_names_are_refused(evaluated):
    run, _ = evaluated
    with pytest.raises(ConfigError, match="random control's name"):
        api.evaluate(run, candidates=["random=perplexity_band:keep=0.5"], runtime=LOCAL)
    with pytest.raises(ConfigError, match="two candidates are named"):
        api.evaluate(run, candidates=["perplexity_band:keep=0.5"] * 2, runtime=LOCAL)


def test_differences_are_better_worse_or_within_noise():
    assert verdict((-0.3, -0.1)) == "better"
    assert verdict((0.1, 0.3)) == "worse"
    assert verdict((-0.1, 0.3)) == "within noise"
    assert verdict(None) == "within noise"
    losses = {
        name: {s: {"t": {"bits_per_byte": v + 0.01 * s, "nats_per_token": v}} for s in range(3)}
        for name, v in (("good", 1.0), ("same", 2.0), ("random", 2.0))
    }
    losses["same"][1]["t"]["bits_per_byte"] += 0.05
    rows = compare(losses, "random", ["t"], 0.95)
    by = {r["candidate"]: r for r in rows}
    assert by["good"]["verdict"] == "better" and by["good"]["wins"] == 1.0
    assert by["same"]["verdict"] == "within noise" and by["random"]["verdict"] == "control"
    rec = recommend(rows, losses, "random", "t", 0.95)
    assert rec["candidate"] == "good" and rec["runner_up"]["candidate"] == "same"
    assert "lower in 3 of 3 seeds" in rec["statement"] and "beyond noise" in rec["statement"]


def test_the_report_shows_the_evaluation(evaluated, tmp_path):
    run, table = evaluated
    summary = api.report(run, output=tmp_path / "report.html")
    assert "Which selection to keep (evaluate)" in summary["sections"]
    page = (tmp_path / "report.html").read_text()
    assert "Which selection to keep (evaluate)" in page and "target clean" in page
    assert "worse than random: junk" in page


def test_the_demo_evaluation_config_is_valid():
    from pathlib import Path

    from datafilter.config import load_config

    cfg = load_config(Path(__file__).parents[2] / "configs" / "evaluate_demo.yaml")
    assert cfg.evaluate is not None and cfg.evaluate.seeds == 3 and cfg.evaluate.device == "cpu"
    labels = [c.label for c in cfg.evaluate.candidates]
    assert labels == [f"{c}-{k}" for c in ("low", "medium", "high") for k in ("0.25", "0.5")]
    assert "criterion" not in cfg.select.options  # from the model's reference kind


def test_a_candidate_names_its_scores_and_groups_and_the_control_reads_the_same_scores():
    from datafilter.stages.evaluate import _with_control

    given = parse_candidate("c=perplexity_band:scorer_id=mix,group_by=domain,keep=0.5")
    assert given == {"name": "c", "selector": "perplexity_band", "options": {"keep": 0.5},
                     "scorer_id": "mix", "group_by": "domain"}  # fmt: skip
    opts = EvaluateOptions(candidates=["c=perplexity_band:scorer_id=mix,keep=0.5"])
    control = _with_control(opts.candidates)[-1]
    assert control.name == "random" and control.scorer_id == "mix"  # a run with several ids
    plain = EvaluateOptions(candidates=["perplexity_band"]).candidates
    assert _with_control(plain)[-1].scorer_id is None  # the run's only score id
