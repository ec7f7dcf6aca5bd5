"""Bad input: every case is a clear error naming the file, or a counted, documented rejection.

Nothing is dropped silently, and a shard that fails never costs the shards that finished.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers_corpus import (
    LOCAL,
    log_lines,
    plan_and_select,
    real_texts,
    run_cli,
    text_shard,
    write_shard,
)

from datafilter import api
from datafilter.errors import ConfigError, DatafilterError
from datafilter.io.layout import RunLayout
from datafilter.runtime import RuntimeOptions


@pytest.fixture(scope="module")
def texts(demo_corpus) -> list[str]:
    return real_texts(demo_corpus, 60)


def _score(input_dir: Path, run: Path, model: Path, **kw) -> dict:
    kw.setdefault("runtime", LOCAL)
    return api.score(input_dir, run, options={"model": str(model)}, **kw)


def _finished(run: Path, rel: str, sid: str = "kenlm") -> bool:
    layout = RunLayout.at(run)
    return layout.marker_path("score", sid, rel).is_file() and layout.score_path(sid, rel).is_file()


def _scores(run: Path, rel: str, sid: str = "kenlm") -> pa.Table:
    return pq.read_table(RunLayout.at(run).score_path(sid, rel))


def _select_all(run: Path, out: Path) -> dict:
    api.thresholds(run)
    return plan_and_select(run, out, options={"keep": 0.5})


def _assert_balanced(totals: dict, n_rows: int) -> None:
    assert totals["read"] == n_rows
    assert totals["kept"] + totals["dropped"] + totals["rejected"] == n_rows
    assert sum(totals["rejected_by_reason"].values()) == totals["rejected"]
    assert sum(totals["dropped_by_reason"].values()) == totals["dropped"]


# --------------------------------------------------------------------------- schema problems


def test_missing_text_column_fails_that_shard_only_and_a_rerun_scores_only_it(
    tmp_path, texts, kenlm_model_dir
):
    inp, run = tmp_path / "in", tmp_path / "run"
    text_shard(inp / "a.parquet", texts[:10])
    bad = write_shard(inp / "b.parquet", {"id": ["x", "y"], "body": ["one", "two"]})
    text_shard(inp / "c.parquet", texts[10:20])

    with pytest.raises(DatafilterError) as info:
        _score(inp, run, kenlm_model_dir)
    message = str(info.value)
    assert "1 of 3 shards failed" in message
    assert f"{bad}: column 'text' not found; columns are id, body" in message
    assert _finished(run, "a.parquet") and _finished(run, "c.parquet")
    assert not _finished(run, "b.parquet")
    summary = json.loads((RunLayout.at(run).root / "_state/score/kenlm/summary.json").read_text())
    assert summary["failed_shards"] == ["b.parquet"] and summary["rows"] == 20
    markers = {
        rel: RunLayout.at(run).marker_path("score", "kenlm", rel).read_bytes()
        for rel in ("a.parquet", "c.parquet")
    }

    text_shard(bad, ["fixed one", "fixed two"])
    with log_lines() as log:
        result = api.score(inp, run, options={"model": str(kenlm_model_dir)}, runtime=LOCAL)
    assert "score: 1 of 3 shards to score (2 done)" in log
    assert result["failed_shards"] == [] and result["rows"] == 22
    assert _finished(run, "b.parquet")
    for rel, before in markers.items():
        assert RunLayout.at(run).marker_path("score", "kenlm", rel).read_bytes() == before


def test_non_string_text_column_names_the_file_and_the_type(tmp_path, texts, kenlm_model_dir):
    inp, run = tmp_path / "in", tmp_path / "run"
    text_shard(inp / "a.parquet", texts[:5])
    bad = write_shard(inp / "b.parquet", {"id": ["1", "2"], "text": pa.array([1, 2], pa.int64())})
    with pytest.raises(DatafilterError) as info:
        _score(inp, run, kenlm_model_dir)
    assert f"{bad}: text column 'text' has type int64; expected string or binary" in str(info.value)
    assert _finished(run, "a.parquet")


def test_missing_id_column_names_the_file(tmp_path, texts, kenlm_model_dir):
    inp, run = tmp_path / "in", tmp_path / "run"
    bad = write_shard(inp / "a.parquet", {"text": texts[:3]})
    with pytest.raises(DatafilterError) as info:
        _score(inp, run, kenlm_model_dir, id_column="doc")
    assert f"{bad}: column 'doc' not found; columns are text" in str(info.value)


# --------------------------------------------------------------------------- rejected rows


def test_null_and_empty_texts_are_rejected_counted_and_kept_row_aligned(
    tmp_path, texts, kenlm_model_dir
):
    inp, run, out = tmp_path / "in", tmp_path / "run", tmp_path / "out"
    bad_rows = {
        2: (None, "null_text"),
        4: ("", "empty_text"),
        5: ("  \n\t \r\n ", "empty_text"),
        7: ("\x00\x01\x07\x7f", "no_tokens"),  # control characters only: normalised to nothing
        9: ("\x9f\x80\n\x00", "no_tokens"),  # C1 control characters only
    }
    good = iter(texts)
    column = [bad_rows[i][0] if i in bad_rows else next(good) for i in range(12)]
    text_shard(inp / "a.parquet", column)
    text_shard(inp / "b.parquet", texts[20:30])

    summary = _score(inp, run, kenlm_model_dir)
    assert summary["rejected"] == {"empty_text": 2, "no_tokens": 2, "null_text": 1}
    assert summary["rows"] == 22 and summary["scored"] == 17

    scores = _scores(run, "a.parquet")
    assert scores.num_rows == 12  # row-aligned with the input, rejected rows included
    assert scores["row"].to_pylist() == list(range(12))
    expected = [bad_rows[i][1] if i in bad_rows else None for i in range(12)]
    assert scores["reject_reason"].to_pylist() == expected
    for i, (ppl, n_tokens) in enumerate(
        zip(scores["ppl"].to_pylist(), scores["n_tokens"].to_pylist(), strict=True)
    ):
        if i in bad_rows:
            assert math.isnan(ppl) and n_tokens == 0
        else:
            assert ppl > 1 and n_tokens > 0

    manifest = _select_all(run, out)
    totals = manifest["totals"]
    assert totals["rejected_by_reason"] == {"empty_text": 2, "no_tokens": 2, "null_text": 1}
    _assert_balanced(totals, 22)
    # (Not pq.read_table(out): manifest.json beside the shards is not Parquet.)
    kept = pa.concat_tables(pq.read_table(p, columns=["id"]) for p in sorted(out.glob("*.parquet")))
    kept_ids = set(kept["id"].to_pylist())
    assert len(kept_ids) == totals["kept"]
    assert not kept_ids & {f"a-{i}" for i in bad_rows}


def test_invalid_utf8_rows_are_rejected_and_the_others_scored(tmp_path, texts, kenlm_model_dir):
    inp, run = tmp_path / "in", tmp_path / "run"
    raw = [texts[0].encode(), b"caf\xe9 au lait \xff\xfe", None, texts[1].encode()]
    write_shard(inp / "binary.parquet", {"id": list("abcd"), "text": pa.array(raw, pa.binary())})
    # pyarrow refuses to *cast* invalid bytes to string, but a zero-copy view skips the check and
    # the Parquet writer and reader pass the bytes through: the string column is really invalid.
    with pytest.raises(pa.ArrowInvalid):
        pa.array(raw, pa.binary()).cast(pa.string())
    bad_strings = pa.array(raw, pa.binary()).view(pa.string())
    write_shard(inp / "string.parquet", {"id": list("abcd"), "text": bad_strings})
    with pytest.raises(pa.ArrowInvalid):
        pq.read_table(inp / "string.parquet")["text"].combine_chunks().validate(full=True)

    _score(inp, run, kenlm_model_dir)
    for rel in ("binary.parquet", "string.parquet"):
        scores = _scores(run, rel)
        assert scores["reject_reason"].to_pylist() == [None, "invalid_utf8", "null_text", None]
        assert [n > 0 for n in scores["n_tokens"].to_pylist()] == [True, False, False, True]
        assert scores["n_bytes"][1].as_py() == len(raw[1])


def test_null_ids_are_rejected_as_null_id(tmp_path, texts, kenlm_model_dir):
    inp, run, out = tmp_path / "in", tmp_path / "run", tmp_path / "out"
    ids = ["d0", None, "d2", None, "d4", "d5"]
    column = [texts[0], texts[1], texts[2], None, texts[4], texts[5]]
    write_shard(inp / "a.parquet", {"doc": pa.array(ids, pa.string()), "text": column})
    _score(inp, run, kenlm_model_dir, id_column="doc")
    scores = _scores(run, "a.parquet")
    # A text problem is reported first; a usable text with no id is a null_id rejection.
    assert scores["reject_reason"].to_pylist() == [None, "null_id", None, "null_text", None, None]
    assert scores["doc_id"].to_pylist() == ids
    totals = _select_all(run, out)["totals"]
    assert totals["rejected_by_reason"] == {"null_id": 1, "null_text": 1}
    _assert_balanced(totals, 6)


def test_enormous_document_is_too_long_by_default_and_scored_when_allowed(
    tmp_path, texts, kenlm_model_dir
):
    # ~9 MB of real sentences on many lines: over the default 8 MiB limit, quick to score.
    block = "\n".join(texts).encode()
    doc = (block * (9_000_000 // len(block) + 1))[:9_000_000].decode("utf-8", errors="ignore")
    inp = tmp_path / "in"
    text_shard(inp / "a.parquet", [texts[0], doc, texts[1]])

    summary = _score(inp, tmp_path / "run-default", kenlm_model_dir)
    assert summary["rejected"] == {"too_long": 1}
    scores = _scores(tmp_path / "run-default", "a.parquet")
    assert scores["reject_reason"].to_pylist() == [None, "too_long", None]
    assert scores["n_bytes"][1].as_py() == len(doc.encode())

    summary = _score(inp, tmp_path / "run-big", kenlm_model_dir, max_doc_bytes=16 * 1024 * 1024)
    assert summary["rejected"] == {} and summary["scored"] == 3
    scores = _scores(tmp_path / "run-big", "a.parquet")
    assert scores["n_tokens"][1].as_py() > 1_000_000
    assert 1 < scores["ppl"][1].as_py() < 1e4


# --------------------------------------------------------------------------- unreadable files


def _unreadable_shards(folder: Path, texts: list[str]) -> dict[str, Path]:
    """A good shard plus random bytes, a Parquet file cut in half, and an empty file."""
    good = text_shard(folder / "a-good.parquet", texts[:20])
    data = good.read_bytes()
    random_bytes = folder / "b-random.parquet"
    random_bytes.write_bytes(os.urandom(4096))
    truncated = folder / "c-truncated.parquet"
    truncated.write_bytes(data[: len(data) // 2])
    empty = folder / "d-empty.parquet"
    empty.write_bytes(b"")
    text_shard(folder / "e-good.parquet", texts[20:30])
    return {"random": random_bytes, "truncated": truncated, "empty": empty}


def test_corrupt_and_truncated_files_are_named_and_other_shards_finish(
    tmp_path, texts, kenlm_model_dir
):
    inp, run = tmp_path / "in", tmp_path / "run"
    bad = _unreadable_shards(inp, texts)
    with pytest.raises(DatafilterError) as info:
        _score(inp, run, kenlm_model_dir)
    message = str(info.value)
    assert "3 of 5 shards failed" in message
    for path in bad.values():
        assert f"{path}: not a readable Parquet file" in message
    assert _finished(run, "a-good.parquet") and _finished(run, "e-good.parquet")
    for path in bad.values():
        assert not _finished(run, path.name)
    # Later stages refuse to run on a partly scored input rather than silently skip shards.
    with pytest.raises(ConfigError, match=r"3 shard\(s\) have no finished 'kenlm' scores"):
        api.thresholds(run)


def test_a_failing_shard_on_ray_does_not_lose_the_others(tmp_path, texts, kenlm_model_dir):
    ray = pytest.importorskip("ray")
    started_here = not ray.is_initialized()
    inp, run = tmp_path / "in", tmp_path / "run"
    bad = _unreadable_shards(inp, texts)
    missing = write_shard(inp / "f-no-text.parquet", {"id": ["x"], "body": ["no text column"]})
    try:
        with pytest.raises(DatafilterError) as info:
            _score(
                inp,
                run,
                kenlm_model_dir,
                runtime=RuntimeOptions(executor="ray", num_actors=1),
            )
    finally:
        if started_here:
            ray.shutdown()
    message = str(info.value)
    assert "4 of 6 shards failed" in message
    assert f"{bad['truncated']}: not a readable Parquet file" in message
    assert f"{missing}: column 'text' not found; columns are id, body" in message
    assert _finished(run, "a-good.parquet") and _finished(run, "e-good.parquet")
    assert _scores(run, "a-good.parquet").num_rows == 20


# --------------------------------------------------------------------------- CLI and names


def test_cli_missing_input_folder_is_one_line_and_exit_code_2(tmp_path, kenlm_model_dir):
    missing = tmp_path / "no-such-folder"
    run = tmp_path / "run"
    proc = run_cli(
        "score",
        "--input",
        missing,
        "--output",
        run,
        "--model",
        kenlm_model_dir,
        "--executor",
        "local",
    )
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("datafilter: error: ")
    assert str(missing) in lines[0] and "does not exist" in lines[0]
    assert proc.stdout == ""
    assert not run.exists()  # nothing written for a run that could not start


def test_cli_unknown_scorer_and_unknown_option_key(tmp_path, texts, kenlm_model_dir):
    inp = tmp_path / "in"
    text_shard(inp / "a.parquet", texts[:3])
    common = ("score", "--input", inp, "--output", tmp_path / "run", "--executor", "local")

    proc = run_cli(*common, "--scorer", "nope")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "datafilter: error: unknown scorer 'nope'; known scorers: crossfit, kenlm, torch, vllm"
    )

    proc = run_cli(*common, "--model", kenlm_model_dir, "--set", "bogus=1")
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith("datafilter: error: invalid options for scorer 'kenlm': bogus:")


def test_unknown_selector_and_selector_option(tmp_path, texts, kenlm_model_dir):
    inp, run, out = tmp_path / "in", tmp_path / "run", tmp_path / "out"
    text_shard(inp / "a.parquet", texts[:5])
    _score(inp, run, kenlm_model_dir)
    with pytest.raises(
        ConfigError, match="unknown selector 'nope'; known selectors: .*perplexity_band"
    ):
        api.select(run, out, selector="nope", runtime=LOCAL)
    with pytest.raises(ConfigError, match="invalid options for selector .*bogus"):
        api.select(run, out, options={"bogus": 1}, runtime=LOCAL)
    with pytest.raises(ConfigError, match="run has no scores named 'other'; it has: kenlm"):
        api.select(run, out, scorer_id="other", runtime=LOCAL)
