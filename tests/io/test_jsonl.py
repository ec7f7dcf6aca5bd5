"""JSONL input shards (plain, gzip, zstd): discovered by extension, scored row-aligned with their
lines, selected into JSONL shards of the same compression; a bad line is one error naming the
file and the line. Real KenLM, DuckDB and pyarrow's JSON reader and codecs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datafilter import api
from datafilter.errors import DatafilterError, InputError
from datafilter.io.jsonl import JsonlShard
from datafilter.io.shards import discover_shards

SUFFIXES = {".jsonl": None, ".jsonl.gz": "gzip", ".jsonl.zst": "zstd"}
LOCAL = {"executor": "local"}


def _write_jsonl(path: Path, rows: list[dict], codec: str | None, blank_lines: bool) -> None:
    text = "".join(json.dumps(r) + ("\n\n" if blank_lines else "\n") for r in rows)
    with pa.output_stream(str(path), compression=codec) as out:
        out.write(text.encode())


def _read_jsonl(path: Path, codec: str | None) -> list[dict]:
    with pa.input_stream(str(path), compression=codec) as stream:
        return [json.loads(line) for line in stream.read().decode().splitlines() if line.strip()]


def _rows(demo_corpus) -> list[dict]:
    table = pq.read_table(sorted(demo_corpus.pool_dir.glob("*.parquet"))[0])
    rows = table.slice(0, 120).to_pylist()
    for i, row in enumerate(rows):
        row["when"] = f"2024-01-{1 + i % 28:02d}T00:00:00"  # ISO strings stay strings
    rows[3]["text"] = None  # null_text
    rows[4]["text"] = "   "  # empty_text
    rows[5]["text"] = "x" * 5000  # too_long (max_doc_bytes below)
    return rows


@pytest.fixture
def jsonl_corpus(tmp_path: Path, demo_corpus) -> tuple[Path, list[dict]]:
    rows = _rows(demo_corpus)
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i, (suffix, codec) in enumerate(SUFFIXES.items()):
        _write_jsonl(folder / f"part-{i}{suffix}", rows[i * 40 : (i + 1) * 40], codec, i == 0)
    return folder, rows


def test_a_jsonl_corpus_round_trips_in_its_own_formats(
    tmp_path: Path, jsonl_corpus, kenlm_model_dir: Path
) -> None:
    folder, rows = jsonl_corpus
    shards = discover_shards(folder)
    assert [s.rel for s in shards] == ["part-0.jsonl", "part-1.jsonl.gz", "part-2.jsonl.zst"]
    run, out = tmp_path / "run", tmp_path / "out"
    options = {"model": str(kenlm_model_dir)}
    summary = api.score(folder, run, options=options, max_doc_bytes=4096, runtime=LOCAL)
    assert summary["rows"] == len(rows)
    long = sum(1 for r in rows if r["text"] and len(r["text"].encode()) > 4096)
    assert long >= 1
    assert summary["rejected"] == {"empty_text": 1, "null_text": 1, "too_long": long}

    # Row alignment: the same rows as one Parquet shard give the same scores, row for row.
    pq_in = tmp_path / "as-parquet"
    pq_in.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), pq_in / "all.parquet")
    api.score(pq_in, tmp_path / "pq-run", options=options, max_doc_bytes=4096, runtime=LOCAL)
    expected = pq.read_table(tmp_path / "pq-run" / "scores" / "kenlm" / "all.parquet")
    got = pa.concat_tables(
        pq.read_table(run / "scores" / "kenlm" / f"{s.rel}.parquet") for s in shards
    )
    for column in ("ppl", "bpb", "n_tokens"):  # NaN where rejected, in both
        np.testing.assert_array_equal(got[column].to_numpy(), expected[column].to_numpy())
    assert got["reject_reason"].to_pylist() == expected["reject_reason"].to_pylist()
    assert got["row"].to_pylist() == [r for i in range(3) for r in range(40)]

    api.thresholds(run, selector="perplexity_band", options={"criterion": "medium", "keep": 0.5})
    manifest = api.select(
        run, out, selector="perplexity_band", options={"criterion": "medium", "keep": 0.5},
        runtime=LOCAL,
    )  # fmt: skip
    totals = manifest["totals"]
    assert totals["read"] == len(rows) and totals["rejected"] == 2 + long
    kept_objects = []
    for i, (suffix, codec) in enumerate(SUFFIXES.items()):
        written = out / f"part-{i}{suffix}"
        assert written.is_file() and not list(out.glob(f"part-{i}*.parquet"))
        objects = _read_jsonl(written, codec)  # fails unless compressed as the name says
        shard_rows = rows[i * 40 : (i + 1) * 40]
        # Kept rows are input rows, in their order, with their values (strings stay strings).
        positions = [shard_rows.index(o) for o in objects]
        assert positions == sorted(positions)
        kept_objects += objects
    assert len(kept_objects) == totals["kept"]
    assert 0 < totals["kept"] < len(rows)
    # The report reads sample texts back from the JSONL shards.
    report = api.report(run, selection=str(out))
    assert Path(report["report"]).stat().st_size > 0


def test_a_bad_json_line_is_one_error_naming_file_and_line(tmp_path: Path, kenlm_model_dir) -> None:
    folder = tmp_path / "corpus"
    folder.mkdir()
    bad = folder / "bad.jsonl.gz"
    text = '{"text": "fine"}\n\n{"text": "also fine"}\n{"text": "broken\n{"text": "after"}\n'
    with pa.output_stream(str(bad), compression="gzip") as out:
        out.write(text.encode())
    with pytest.raises(InputError) as err:
        JsonlShard(bad)
    assert str(err.value) == (
        f"{bad}: line 4: not valid JSON: Unterminated string starting at (column 10)"
    )
    with pytest.raises(DatafilterError, match=r"bad\.jsonl\.gz: line 4: not valid JSON"):
        api.score(folder, tmp_path / "run", options={"model": str(kenlm_model_dir)}, runtime=LOCAL)
    (folder / "bad.jsonl.gz").unlink()
    (folder / "list.jsonl").write_text('{"text": "a"}\n[1, 2]\n')
    with pytest.raises(InputError, match=r"list\.jsonl: line 2: a JSON list, expected an object"):
        JsonlShard(folder / "list.jsonl")


def test_training_inputs_read_jsonl_shards_as_parquet_ones(tmp_path) -> None:
    """train-kenlm's text stream (io.texts) reads a folder of JSONL shards, gzip and zstd
    included, like a folder of Parquet shards: every non-empty text, none dropped."""
    from datafilter.io.texts import iter_texts

    rows = [{"text": f"document number {i}"} for i in range(7)] + [{"text": " "}]
    folder = tmp_path / "jsonl"
    folder.mkdir()
    for suffix, codec in SUFFIXES.items():
        _write_jsonl(folder / f"part{suffix}", rows, codec, blank_lines=False)
    texts = list(iter_texts([folder], ["text"]))
    assert texts == [r["text"] for r in rows[:7]] * len(SUFFIXES)


def test_a_run_config_grouping_jsonl_input_is_refused_before_any_work(tmp_path) -> None:
    """Group columns are read from Parquet input only: a run config that groups JSONL input says
    so in one line before anything is scored (no score shard, no run folder)."""
    from datafilter.config import load_config
    from datafilter.stages.run import check_config_columns

    (tmp_path / "in").mkdir()
    _write_jsonl(tmp_path / "in" / "part.jsonl", [{"text": "a b c", "domain": "x"}], None, False)
    config = tmp_path / "run.yaml"
    config.write_text(
        f"input: {tmp_path / 'in'}\nrun_dir: {tmp_path / 'run'}\n"
        "score: {options: {model: m}}\nthresholds: {group_by: [null, domain]}\n"
        f"select: {{output: {tmp_path / 'out'}}}\n"
    )
    with pytest.raises(DatafilterError, match=r"thresholds.group_by\[1\]: group columns are read"):
        check_config_columns(load_config(config))
    assert not (tmp_path / "run").exists()


def test_evaluate_targets_and_samples_read_jsonl_shards(tmp_path) -> None:
    from datafilter.proxy.texts import iter_texts

    folder = tmp_path / "targets"
    folder.mkdir()
    _write_jsonl(folder / "t.jsonl.gz", [{"text": "one"}, {"text": ""}, {"text": "two"}], "gzip",
                 False)  # fmt: skip
    assert list(iter_texts(folder, "text")) == ["one", "two"]
