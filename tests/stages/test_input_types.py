"""Text stored in other Arrow types, empty shards and nested folders score like plain strings."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
from helpers_corpus import LOCAL, plan_and_select, quiet

from datafilter import api
from datafilter.kenlm.train import KenlmTrainingOptions, train_kenlm

TEXTS = ["The bank raised rates on Thursday.", "Shares fell in London.", "Shares fell in London."]


def test_large_string_dictionary_empty_and_nested_shards(tmp_path, kenlm_model_dir) -> None:
    inp = tmp_path / "in"
    (inp / "a" / "b").mkdir(parents=True)
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), inp / "empty.parquet")
    pq.write_table(pa.table({"text": pa.array(TEXTS, pa.large_string())}), inp / "a" / "l.parquet")
    dictionary = pa.table({"text": pa.array(TEXTS).dictionary_encode()})
    pq.write_table(dictionary, inp / "a" / "b" / "d.parquet")
    summary = api.score(inp, tmp_path / "run", options={"model": str(kenlm_model_dir)},
                        runtime=LOCAL)  # fmt: skip
    assert summary["rows"] == summary["scored"] == 6 and summary["failed_shards"] == []
    scores = {p.name: pq.read_table(p) for p in (tmp_path / "run" / "scores").rglob("*.parquet")}
    assert scores["empty.parquet"].num_rows == 0
    assert scores["l.parquet"]["logprob_sum"].equals(scores["d.parquet"]["logprob_sum"])
    manifest = plan_and_select(tmp_path / "run", tmp_path / "out")
    assert manifest["totals"]["read"] == 6
    assert pq.read_table(tmp_path / "out" / "a" / "b" / "d.parquet").schema.equals(
        dictionary.schema
    )
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["totals"]["kept"] == 3


def test_train_kenlm_reads_dictionary_text(tmp_path) -> None:
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"t": pa.array(TEXTS * 10).dictionary_encode()}), path)
    options = KenlmTrainingOptions(order=3, vocab_size=100)
    recipe = train_kenlm([path], tmp_path / "m", text_columns=["t"], options=options, log=quiet)
    assert recipe.training["documents"] == 30


def test_run_or_output_folder_inside_the_input_is_refused(tmp_path, kenlm_model_dir) -> None:
    import pytest

    from datafilter.errors import ConfigError

    inp = tmp_path / "in"
    inp.mkdir()
    pq.write_table(pa.table({"text": TEXTS}), inp / "x.parquet")
    with pytest.raises(ConfigError, match="inside the input folder"):
        api.score(inp, inp / "run", options={"model": str(kenlm_model_dir)})
    api.score(inp, tmp_path / "run", options={"model": str(kenlm_model_dir)}, runtime=LOCAL)
    with pytest.raises(ConfigError, match="output folder .* is inside the input folder"):
        api.select(tmp_path / "run", inp / "out", runtime=LOCAL)


def test_a_new_selection_into_the_same_folder_replaces_the_old_one(tmp_path, kenlm_model_dir):
    inp = tmp_path / "in"
    inp.mkdir()
    texts = [f"Document number {i} about the bank and the shares." * (1 + i % 3) for i in range(40)]
    pq.write_table(pa.table({"text": texts[:20]}), inp / "a.parquet")
    pq.write_table(pa.table({"text": texts[20:]}), inp / "b.parquet")
    run, out = tmp_path / "run", tmp_path / "out"
    api.score(inp, run, options={"model": str(kenlm_model_dir)}, runtime=LOCAL)
    low = {"criterion": "low", "keep": 0.2}
    for options in (low, {"criterion": "high", "keep": 0.9}, low):
        manifest = plan_and_select(run, out, options=options)
        on_disk = sum(pq.read_table(p).num_rows for p in out.glob("*.parquet"))
        assert on_disk == manifest["totals"]["kept"]
    (inp / "b.parquet").unlink()
    api.score(inp, run, options={"model": str(kenlm_model_dir)}, runtime=LOCAL)
    plan_and_select(run, out, options=low)
    assert sorted(p.name for p in out.glob("*.parquet")) == ["a.parquet"]


def test_unsupported_group_column_types_and_file_names(tmp_path, kenlm_model_dir) -> None:
    import pytest

    from datafilter.errors import InputError

    inp = tmp_path / "in"
    inp.mkdir()
    pq.write_table(pa.table({"text": TEXTS, "q": [1.0, 2.5, 1.0]}), inp / "x.parquet")
    api.score(inp, tmp_path / "run", options={"model": str(kenlm_model_dir)}, runtime=LOCAL)
    with pytest.raises(InputError, match="group column 'q' has type double"):
        api.thresholds(tmp_path / "run", group_by="q")
    pq.write_table(pa.table({"text": TEXTS}), inp / "y*.parquet")
    with pytest.raises(InputError, match=r"y\*\.parquet: file names with \*"):
        api.score(inp, tmp_path / "run", options={"model": str(kenlm_model_dir)})
