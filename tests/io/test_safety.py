"""The safety battery of issue 15: datafilter never deletes or changes data it does not own.

Each case of the issue is a test here: outputs that are, contain or lie inside an input or a run
folder; folders of foreign files; the run folder's locks; damaged or swapped models; damaged
artifacts; and the smaller findings (content fingerprints, symbolic links, globs, strict YAML,
oversize documents, NUL characters, Ray processes after the driver is killed).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from helpers_corpus import (
    LOCAL,
    cli_command,
    files_under,
    log_lines,
    plan_and_select,
    quiet,
    run_cli,
    split_pool,
    text_shard,
    wait_until,
    write_shard,
)

from datafilter import api
from datafilter.errors import ConfigError, InputError, ModelError, RunLockedError
from datafilter.io.layout import RunLayout

N_SHARDS = 4


def _score(inp, run, model, **kw) -> dict:
    """Score; ``log`` (a callable) sees each line datafilter logs meanwhile."""
    kw.setdefault("runtime", LOCAL)
    with log_lines(kw.pop("log", None)):
        return api.score(inp, run, options={"model": str(model)}, **kw)


def _select(run, out, **kw) -> dict:
    """Make the plan, then select; ``log`` (a callable) sees each line logged meanwhile."""
    with log_lines(kw.pop("log", None)):
        return plan_and_select(run, out, options={"keep": 0.5}, **kw)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The stderr of a failed command: exactly one line, ``datafilter: error: …``, exit 2."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("datafilter: error: "), proc.stderr
    return lines[0]


def _keep_mtime(path: Path, change) -> None:
    """Change a file's bytes in place, keeping its size and setting its mtime back."""
    st = path.stat()
    change(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def _flip_middle_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    path.write_bytes(bytes(data))


@pytest.fixture
def data(tmp_path, demo_corpus) -> Path:
    """``data/in``: the demo pool in 4 shards."""
    split_pool(demo_corpus, tmp_path / "data" / "in", N_SHARDS)
    return tmp_path / "data"


@pytest.fixture
def scored(data, tmp_path, kenlm_model_dir) -> tuple[Path, Path]:
    """The input folder and a run folder where every shard is scored."""
    _score(data / "in", tmp_path / "run", kenlm_model_dir)
    return data / "in", tmp_path / "run"


# --------------------------------------------------------------------------- 1. ownership


def test_select_into_a_folder_that_contains_the_input_is_refused_and_deletes_nothing(
    scored, data
):
    inp, run = scored
    before = files_under(inp)
    proc = run_cli(
        "select", "--run", run, "--output", data, "--set", "keep=0.5", "--executor", "local"
    )
    line = _one_error_line(proc)
    assert f"output folder {data} contains the input folder {inp}" in line
    assert files_under(inp) == before
    assert not (data / "_state").exists() and not (data / "manifest.json").exists()


def test_select_over_a_single_file_input_is_refused(data, tmp_path, kenlm_model_dir):
    inp = data / "in"
    before = files_under(inp)
    run = tmp_path / "run"
    _score(inp / "part-00000.parquet", run, kenlm_model_dir)
    for output in (inp, inp / "part-00000.parquet", data):
        with pytest.raises(ConfigError, match="output folder .* (contains|is) the input"):
            _select(run, output)
    assert files_under(inp) == before


def test_an_output_reached_through_a_symbolic_link_is_compared_by_its_real_path(
    scored, data, tmp_path
):
    inp, run = scored
    before = files_under(inp)
    (tmp_path / "alias").symlink_to(data)  # data/ holds the input folder
    with pytest.raises(ConfigError, match="output folder .* contains the input folder"):
        _select(run, tmp_path / "alias")
    (tmp_path / "alias-in").symlink_to(inp)
    with pytest.raises(ConfigError, match="run folder .* is inside the input folder"):
        api.score(tmp_path / "alias-in", inp / "run", options={"model": "x"})
    assert files_under(inp) == before


def test_object_storage_prefixes_are_compared_by_path_parts():
    from datafilter.io.guard import place, refuse_overlaps

    reads = [place("input", "s3://bucket/data/in")]
    for output in ("s3://bucket/data", "s3://bucket/data/in/", "s3://bucket/data/in/x"):
        with pytest.raises(ConfigError, match="output folder s3://bucket/data"):
            refuse_overlaps([place("output folder", output)], reads)
    for output in ("s3://bucket/data/in2", "s3://other/data/in", "s3://bucket/out"):
        refuse_overlaps([place("output folder", output)], reads)


def test_files_datafilter_did_not_write_are_never_deleted(scored, tmp_path):
    inp, run = scored
    out = tmp_path / "out"
    _select(run, out)
    foreign = {
        "other.parquet": (inp / "part-00001.parquet").read_bytes(),
        "extra/notes.parquet": (inp / "part-00002.parquet").read_bytes(),
    }
    for rel, data in foreign.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    (inp / "part-00003.parquet").unlink()  # its output shard is now stale: datafilter's own
    log: list[str] = []
    _select(run, out, log=log.append)
    assert "select: removing part-00003.parquet: its input shard is gone" in log
    assert not (out / "part-00003.parquet").exists()
    for rel, data in foreign.items():
        assert (out / rel).read_bytes() == data, f"{rel} was changed"


def test_a_stale_shard_changed_since_it_was_written_is_left_alone(scored, tmp_path):
    inp, run = scored
    out = tmp_path / "out"
    _select(run, out)
    stale = out / "part-00003.parquet"
    replacement = (inp / "part-00000.parquet").read_bytes()
    stale.write_bytes(replacement)  # someone put their own file there
    (inp / "part-00003.parquet").unlink()
    log: list[str] = []
    _select(run, out, log=log.append)
    assert stale.read_bytes() == replacement
    assert any(line.startswith("select: warning: leaving part-00003.parquet") for line in log)


def test_a_foreign_output_folder_is_refused_unless_overwrite_and_its_files_survive(
    scored, tmp_path
):
    inp, run = scored
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    shutil.copy(inp / "part-00001.parquet", out / "keep.parquet")
    before = files_under(out)
    with pytest.raises(ConfigError, match="already holds files datafilter did not write"):
        _select(run, out)
    assert files_under(out) == before
    manifest = _select(run, out, overwrite=True)
    assert manifest["totals"]["read"] > 0
    assert {k: v for k, v in files_under(out).items() if k in before} == before
    # A foreign file where a shard would go is never replaced, even with overwrite.
    other = tmp_path / "other"
    other.mkdir()
    (other / "part-00002.parquet").write_bytes(b"not datafilter's")
    with pytest.raises(ConfigError, match="already holds part-00002.parquet"):
        _select(run, other, overwrite=True)
    assert (other / "part-00002.parquet").read_bytes() == b"not datafilter's"


def test_a_foreign_run_folder_is_refused_unless_overwrite(data, tmp_path, kenlm_model_dir):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"run folder .* already holds files .*--overwrite"):
        _score(data / "in", run, kenlm_model_dir)
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]
    _score(data / "in", run, kenlm_model_dir, overwrite=True)
    assert (run / "notes.txt").read_text() == "mine"


def test_run_checks_every_folder_before_any_work(data, tmp_path, kenlm_model_dir):
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "input": str(data / "in"),
                "run_dir": str(tmp_path / "run"),
                "score": {"options": {"model": str(kenlm_model_dir)}},
                "select": {"output": str(data / "in" / "filtered"), "options": {"keep": 0.5}},
                "ray": {"executor": "local"},
            }
        )
    )
    line = _one_error_line(run_cli("run", config))
    assert "output folder" in line and "is inside the input folder" in line
    assert not (tmp_path / "run").exists()  # refused before scoring


def test_train_kenlm_overwrite_never_replaces_a_folder_of_other_files(data, tmp_path):
    from datafilter.kenlm.train import KenlmTrainingOptions, train_kenlm

    before = files_under(data)
    options = KenlmTrainingOptions(order=3, vocab_size=200, memory="256M")
    with pytest.raises(ConfigError, match="model folder .* contains the training input"):
        train_kenlm([data / "in"], data, options=options, overwrite=True, log=quiet)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ModelError, match="not a KenLM model folder"):
        train_kenlm([data / "in"], other, options=options, overwrite=True, log=quiet)
    assert (other / "notes.txt").read_text() == "mine"
    assert files_under(data) == before


def test_report_never_replaces_an_input_or_a_foreign_file(scored, tmp_path):
    pytest.importorskip("matplotlib")
    from datafilter import report

    inp, run = scored
    before = files_under(inp)
    with pytest.raises(ConfigError, match="report file .* is inside the input folder"):
        report(run, output=inp / "part-00000.parquet")
    mine = tmp_path / "notes.html"
    mine.write_text("<html>mine</html>")
    with pytest.raises(ConfigError, match="is not a datafilter report"):
        report(run, output=mine)
    assert mine.read_text() == "<html>mine</html>" and files_under(inp) == before
    report(run, output=tmp_path / "page.html")
    report(run, output=tmp_path / "page.html")  # an earlier report is replaced


def test_corr_sample_deletes_only_its_own_shards(data, tmp_path):
    from datafilter.correlation.domains import DomainSpec
    from datafilter.correlation.sample import sample_per_domain

    out = tmp_path / "sample"
    out.mkdir()
    (out / "theirs.parquet").write_bytes((data / "in" / "part-00000.parquet").read_bytes())
    spec = DomainSpec.from_args("domain", None)
    with pytest.raises(ConfigError, match="already holds files datafilter did not write"):
        sample_per_domain(data / "in", out, spec, per_domain=5)
    assert (out / "theirs.parquet").exists()
    fresh = tmp_path / "fresh"
    sample_per_domain(data / "in", fresh, spec, per_domain=5)
    (fresh / "sub").mkdir()
    (fresh / "sub" / "x.parquet").write_bytes(b"theirs")
    sample_per_domain(data / "in", fresh, spec, per_domain=3, seed=1)
    assert (fresh / "sub" / "x.parquet").read_bytes() == b"theirs"


# --------------------------------------------------------------------------- 2. locks


def test_score_is_refused_while_a_selection_reads_the_run_folder(scored, tmp_path, kenlm_model_dir):
    inp, run = scored
    api.thresholds(run)
    refused: list[Exception] = []

    def during_select(message: str) -> None:
        if message.startswith("select: ") and "shards to write" in message:
            with pytest.raises(RunLockedError, match="in use by another run") as info:
                _score(inp, run, kenlm_model_dir, overwrite=True, scorer_id="kenlm")
            refused.append(info.value)
            api.thresholds(run)  # shared with the selection: allowed

    _select(run, tmp_path / "out", log=during_select)
    assert len(refused) == 1


def test_a_shared_holder_blocks_score_but_not_thresholds(scored, kenlm_model_dir):
    from datafilter.io.lock import run_lock

    inp, run = scored
    with run_lock(RunLayout.at(run).lock_path, shared=True):
        with pytest.raises(RunLockedError):
            _score(inp, run, kenlm_model_dir)
        api.thresholds(run)
    _score(inp, run, kenlm_model_dir)


def test_a_score_shard_changed_after_planning_fails_that_shard(scored, tmp_path):
    from datafilter.selectors import make_selector
    from datafilter.stages.select import SelectJob, SelectSettings, select_shard

    inp, run = scored
    score_path = RunLayout.at(run).score_path("kenlm", "part-00000.parquet")
    job = SelectJob(
        shard_rel="part-00000.parquet",
        input_path=inp / "part-00000.parquet",
        score_path=score_path,
        output_path=tmp_path / "out" / "part-00000.parquet",
        marker_path=tmp_path / "out" / "_state" / "x.done.json",
        marker_fields={},
        planned_sha256={str(score_path): "0" * 64},
    )
    with pytest.raises(InputError, match="changed since the plan was made") as info:
        select_shard(job, make_selector("perplexity_band", {}), {}, SelectSettings(None, 0, False))
    assert str(score_path) in str(info.value)
    assert not job.output_path.exists()


# --------------------------------------------------------------------------- 3. models


def test_a_damaged_model_file_is_refused_before_scoring(data, tmp_path, kenlm_model_dir):
    model = tmp_path / "model"
    shutil.copytree(kenlm_model_dir, model)
    _keep_mtime(model / "model.bin", _flip_middle_bytes)
    run = tmp_path / "run"
    line = _one_error_line(
        run_cli("score", "--input", data / "in", "--output", run, "--model", model,
                "--executor", "local")  # fmt: skip
    )
    assert f"{model / 'model.bin'} does not match the sha256 recorded in recipe.json" in line
    assert not (run / "scores").exists()


def _other_model(tmp_path: Path) -> Path:
    from datafilter.kenlm.train import KenlmTrainingOptions, train_kenlm

    text = tmp_path / "other.txt"
    text.write_text("\n".join(f"another corpus line {i} of {i % 7} words" for i in range(300)))
    model = tmp_path / "other-model"
    options = KenlmTrainingOptions(order=3, vocab_size=200, memory="256M")
    train_kenlm([text], model, options=options, log=quiet)
    return model


def test_a_model_swapped_after_scoring_is_noticed(data, tmp_path, kenlm_model_dir):
    inp = data / "in"
    other = _other_model(tmp_path)
    # With checksums in the recipe: the swapped file does not match them.
    model = tmp_path / "model"
    shutil.copytree(kenlm_model_dir, model)
    _score(inp, tmp_path / "run", model)
    shutil.copy(other / "model.bin", model / "model.bin")
    with pytest.raises(ModelError, match="does not match the sha256"):
        _score(inp, tmp_path / "run", model)
    # Without checksums: the files' contents are the model's identity in the run record.
    bare = tmp_path / "bare"
    shutil.copytree(kenlm_model_dir, bare)
    recipe = json.loads((bare / "recipe.json").read_text())
    recipe["checksums"] = {}
    (bare / "recipe.json").write_text(json.dumps(recipe))
    _score(inp, tmp_path / "run-bare", bare)
    st = (bare / "model.bin").stat()
    shutil.copy(other / "model.bin", bare / "model.bin")  # the mtime set back, as cp -p would
    os.utime(bare / "model.bin", ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(ConfigError, match="holds scores made with other settings"):
        _score(inp, tmp_path / "run-bare", bare)
    log: list[str] = []
    _score(inp, tmp_path / "run-bare", bare, overwrite=True, log=log.append)
    assert f"score: {N_SHARDS} of {N_SHARDS} shards to score (0 done)" in log


def test_verified_model_hashes_are_cached_by_file_signature(tmp_path, monkeypatch):
    import hashlib

    from datafilter.io.hash_cache import cache_path, cached_sha256

    monkeypatch.setenv("DATAFILTER_CACHE_DIR", str(tmp_path / "cache"))
    weights = tmp_path / "weights.bin"
    weights.write_bytes(os.urandom(1 << 16))
    real = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert cached_sha256(weights) == real
    entries = json.loads(cache_path().read_text())
    assert entries[str(weights)]["sha256"] == real
    # While the signature is unchanged the file is not read: a planted digest is returned.
    entries[str(weights)]["sha256"] = "planted"
    cache_path().write_text(json.dumps(entries))
    assert cached_sha256(weights) == "planted"
    # Any change of the bytes changes the ctime, even with size and mtime set back.
    _keep_mtime(weights, _flip_middle_bytes)
    assert cached_sha256(weights) == hashlib.sha256(weights.read_bytes()).hexdigest() != real


class _OverflowScorer:
    """A scorer (the Scorer interface) whose model gives non-finite sums for some texts."""

    extra_columns = ()  # no columns beyond the score schema

    def score_batch(self, texts):
        from datafilter.scorers.base import BatchScores

        values = {"inf": -np.inf, "nan": np.nan, "huge": -1.4e24 * 1e290}
        return BatchScores(
            logprob_sum=np.array([values.get(t, -10.0) for t in texts]),
            n_tokens=np.full(len(texts), 5, dtype=np.int64),
        )


def test_non_finite_scores_are_a_counted_reject_reason(tmp_path):
    from datafilter.stages.score import ScoreSettings, ShardJob, score_shard

    shard = text_shard(tmp_path / "in" / "a.parquet", ["fine", "inf", "nan", "huge", "ok"])
    job = ShardJob(
        shard_rel="a.parquet",
        input_path=shard,
        output_path=tmp_path / "scores.parquet",
        marker_path=tmp_path / "a.done.json",
        marker_fields={},
    )
    stats = score_shard(job, _OverflowScorer(), ScoreSettings())
    assert stats["rejected"] == {"non_finite": 3} and stats["scored"] == 2
    table = pq.read_table(job.output_path)
    assert table["reject_reason"].to_pylist() == [None, "non_finite", "non_finite",
                                                  "non_finite", None]  # fmt: skip
    for column in ("logprob_sum", "ppl", "bpb"):
        values = table[column].to_numpy(zero_copy_only=False)
        assert not np.isinf(values).any()


# --------------------------------------------------------------------------- 4. artifacts


def test_a_truncated_score_shard_is_named_by_thresholds_and_redone_by_score(
    scored, kenlm_model_dir
):
    inp, run = scored
    shard = RunLayout.at(run).score_path("kenlm", "part-00001.parquet")
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    line = _one_error_line(run_cli("thresholds", "--run", run))
    assert "part-00001.parquet: its score shard is missing, damaged or changed" in line
    log: list[str] = []
    _score(inp, run, kenlm_model_dir, log=log.append)
    assert f"score: 1 of {N_SHARDS} shards to score ({N_SHARDS - 1} done)" in log
    assert api.thresholds(run)["n_docs"] > 0


def test_a_score_shard_damaged_in_place_is_redone(scored, kenlm_model_dir):
    inp, run = scored
    shard = RunLayout.at(run).score_path("kenlm", "part-00002.parquet")
    good = shard.read_bytes()
    _keep_mtime(shard, _flip_middle_bytes)
    log: list[str] = []
    _score(inp, run, kenlm_model_dir, log=log.append)
    assert f"score: 1 of {N_SHARDS} shards to score ({N_SHARDS - 1} done)" in log
    assert shard.read_bytes() == good


def test_a_truncated_output_shard_is_redone_on_rerun(scored, tmp_path):
    _, run = scored
    out = tmp_path / "out"
    first = _select(run, out)
    shard = out / "part-00002.parquet"
    good = shard.read_bytes()
    shard.write_bytes(good[: len(good) // 3])
    log: list[str] = []
    again = _select(run, out, log=log.append)
    assert f"select: 1 of {N_SHARDS} shards to write ({N_SHARDS - 1} done)" in log
    assert shard.read_bytes() == good
    assert again["totals"] == first["totals"]
    kept = sum(pq.read_table(p).num_rows for p in out.glob("*.parquet"))
    assert kept == again["totals"]["kept"]


# --------------------------------------------------------------------------- 5. smaller findings


def _plain_shard(path: Path, texts: list[str]) -> Path:
    """Uncompressed, plain-encoded, no statistics: a same-length text edit keeps the size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"id": [f"d{i}" for i in range(len(texts))], "text": texts})
    pq.write_table(
        table, path, compression="NONE", use_dictionary=False, write_statistics=False
    )
    return path


def test_a_same_size_edit_that_keeps_the_mtime_is_rescored(
    tmp_path, demo_corpus, kenlm_model_dir
):
    from helpers_corpus import real_texts

    texts = real_texts(demo_corpus, 40)
    inp, run = tmp_path / "in", tmp_path / "run"
    shard = _plain_shard(inp / "a.parquet", texts)
    _score(inp, run, kenlm_model_dir)
    edited = list(texts)
    edited[7] = edited[7].replace("e", "x")
    assert edited[7] != texts[7]
    _keep_mtime(shard, lambda p: _plain_shard(p, edited))
    log: list[str] = []
    _score(inp, run, kenlm_model_dir, log=log.append)
    assert "score: 1 of 1 shards to score (0 done)" in log
    log.clear()
    _score(inp, run, kenlm_model_dir, verify_inputs=True, log=log.append)
    assert "score: 0 of 1 shards to score (1 done)" in log


def test_symbolic_links_in_the_input_are_followed_loops_and_broken_links_refused(
    tmp_path, demo_corpus, kenlm_model_dir
):
    from datafilter.io.shards import discover_shards

    inp, elsewhere = tmp_path / "in", tmp_path / "elsewhere"
    split_pool(demo_corpus, inp, 2)
    split_pool(demo_corpus, elsewhere, 2)
    (inp / "linked").symlink_to(elsewhere)
    rels = [s.rel for s in discover_shards(inp)]
    assert rels == ["linked/part-00000.parquet", "linked/part-00001.parquet",
                    "part-00000.parquet", "part-00001.parquet"]  # fmt: skip
    summary = _score(inp, tmp_path / "run", kenlm_model_dir)
    assert summary["rows"] == 2 * pq.read_table(elsewhere).num_rows
    # A selection written into the linked folder would be read as input next time.
    with pytest.raises(ConfigError, match="is inside the input folder"):
        _select(tmp_path / "run", elsewhere / "out")

    (elsewhere / "back").symlink_to(inp)
    with pytest.raises(InputError, match="symbolic link loop"):
        discover_shards(inp)
    (elsewhere / "back").unlink()
    (inp / "gone.parquet").symlink_to(tmp_path / "missing.parquet")
    line = _one_error_line(
        run_cli("score", "--input", inp, "--output", tmp_path / "run2", "--model",
                kenlm_model_dir, "--executor", "local")  # fmt: skip
    )
    assert f"{inp / 'gone.parquet'}: broken symbolic link" in line


def test_a_glob_input_is_accepted(data, tmp_path, kenlm_model_dir):
    pattern = str(data / "in" / "part-0000[12].parquet")
    proc = run_cli("score", "--input", pattern, "--output", tmp_path / "run", "--model",
                   kenlm_model_dir, "--executor", "local")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "score: 2 of 2 shards to score (0 done)" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "run" / "scores" / "kenlm").iterdir()) == [
        "part-00001.parquet",
        "part-00002.parquet",
    ]


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ("keep: true", "keep"),
        ('keep: "0.5"', "keep"),
        ("keep: 0.5\n    keep: 0.3", "duplicate key 'keep'"),
    ],
)
def test_yaml_values_are_strict_and_duplicate_keys_refused(tmp_path, options, problem):
    from datafilter.config import load_config

    config = tmp_path / "run.yaml"
    config.write_text(
        f"input: in\nrun_dir: run\nselect:\n  output: out\n  options:\n    {options}\n"
    )
    from datafilter.selectors import make_selector

    with pytest.raises(ConfigError, match=problem):
        cfg = load_config(config)
        make_selector(cfg.select.selector, cfg.select.options)


def test_set_values_are_strict_and_given_once(scored, tmp_path):
    _, run = scored
    for sets in (["keep=true"], ["keep=0.5", "keep=0.3"]):
        args = [a for s in sets for a in ("--set", s)]
        proc = run_cli("select", "--run", run, "--output", tmp_path / "out", *args,
                       "--executor", "local")  # fmt: skip
        _one_error_line(proc)
    assert not (tmp_path / "out").exists()


def test_an_oversize_document_is_rejected_without_being_decoded(tmp_path, kenlm_model_dir):
    from datafilter.scorers import make_scorer
    from datafilter.stages.score import ScoreSettings, ShardJob, score_shard

    big = "word " * (8 << 20)  # 40 MB
    shard = text_shard(tmp_path / "in" / "a.parquet", ["a small document", big, "another one"])
    scorer = make_scorer("kenlm", {"model": str(kenlm_model_dir)})
    scorer.setup()
    job = ShardJob("a.parquet", shard, tmp_path / "s.parquet", tmp_path / "a.done.json", {})
    tracemalloc.start()
    try:
        stats = score_shard(job, scorer, ScoreSettings(max_doc_bytes=1 << 20, batch_rows=8))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stats["rejected"] == {"too_long": 1}
    assert pq.read_table(job.output_path)["n_bytes"][1].as_py() == len(big)
    assert peak < len(big) // 2, f"Python objects peaked at {peak / 1e6:.0f} MB"


def test_nul_characters_score_the_same_on_the_native_and_python_paths(tmp_path):
    from datafilter.kenlm.normalize import NormalizationRecipe
    from datafilter.kenlm.train import KenlmTrainingOptions, train_kenlm
    from datafilter.scorers import make_scorer

    texts = [f"line {i} about the bank a\x00b and\x00 shares {i % 7}" for i in range(300)]
    texts += [f"plain text number {i} about the markets" for i in range(300)]
    train = write_shard(tmp_path / "train.parquet", {"text": texts})
    keep_controls = NormalizationRecipe(remove_non_printing=False)
    options = KenlmTrainingOptions(
        order=3, vocab_size=200, memory="256M", normalization=keep_controls
    )
    train_kenlm([train], tmp_path / "model", options=options, log=quiet)
    scorer = make_scorer("kenlm", {"model": str(tmp_path / "model")})
    scorer.setup()
    if not scorer.native:
        pytest.skip("the native KenLM line scorer is not built (datafilter setup-kenlm)")
    docs = ["hello\x00world the bank", "a\x00b and shares", "\x00", "x \x00 y", "bank\x00"]
    units = [scorer._units(t) for t in docs]
    flat, per_doc = [line for doc in units for line in doc], [len(doc) for doc in units]
    python = scorer._score_python(flat, per_doc)
    native = scorer.score_batch(docs)
    assert native.n_tokens.tolist() == python[1]
    np.testing.assert_allclose(native.logprob_sum / np.log(10), python[0], rtol=0, atol=1e-4)


@pytest.mark.slow
def test_no_ray_process_outlives_a_killed_driver(data, tmp_path, kenlm_model_dir):
    psutil = pytest.importorskip("psutil")
    pytest.importorskip("ray")
    run = tmp_path / "run"
    markers = run / "_state" / "score" / "kenlm"
    proc = subprocess.Popen(
        cli_command("score", "--input", data / "in", "--output", run, "--model",
                    kenlm_model_dir, "--executor", "ray", "--num-actors", "1"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_until(lambda: any(markers.glob("*.done.json")) or proc.poll() is not None, 180)
        ray_procs = psutil.Process(proc.pid).children(recursive=True)
    finally:
        proc.send_signal(signal.SIGKILL)  # the driver alone, not its process group
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert len(ray_procs) >= 3  # GCS, raylet, agents, the actor ...
    # Before: the dashboard and runtime-env agents lived on for about 60 s.
    _, alive = psutil.wait_procs(ray_procs, timeout=30)
    assert alive == [], [p.name() for p in alive]


def test_every_stage_read_error_is_one_line_naming_the_file(scored, tmp_path):
    inp, run = scored
    api.thresholds(run, selector="perplexity_band")
    stages = (
        ("thresholds", "--run", run, "--group-by", "domain"),
        ("select", "--run", run, "--output", tmp_path / "out", "--executor", "local"),
    )
    for damaged in (RunLayout.at(run).score_path("kenlm", "part-00003.parquet"),
                    inp / "part-00003.parquet"):  # fmt: skip
        good = damaged.read_bytes()
        damaged.write_bytes(good[:100])
        for args in stages:
            line = _one_error_line(run_cli(*args))
            assert "part-00003.parquet" in line
        damaged.write_bytes(good)
