"""``select --write-dropped DIR``: the rows not kept, with the reason, one shard per input shard,
counted in the manifest; DIR obeys the output folder's ownership rules."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datafilter import api
from datafilter.errors import ConfigError
from datafilter.stages.select import REASON_COLUMN

LOCAL = {"executor": "local"}
BAND = {"selector": "perplexity_band", "options": {"criterion": "medium", "keep": 0.5}}


@pytest.fixture
def scored(tmp_path: Path, demo_corpus, kenlm_model_dir: Path) -> tuple[Path, Path]:
    pool = tmp_path / "pool"
    shutil.copytree(demo_corpus.pool_dir, pool)
    first = sorted(pool.glob("*.parquet"))[0]
    table = pq.read_table(first)
    texts = table["text"].to_pylist()
    texts[0], texts[1] = "", None  # rejected rows go to the dropped folder too
    column = table.schema.get_field_index("text")
    pq.write_table(table.set_column(column, "text", pa.array(texts)), first)
    run = tmp_path / "run"
    api.score(pool, run, options={"model": str(kenlm_model_dir)}, id_column="id", runtime=LOCAL)
    api.thresholds(run, **BAND)
    return pool, run


def test_dropped_rows_are_written_with_their_reason_and_counted(tmp_path: Path, scored) -> None:
    pool, run = scored
    out, dropped = tmp_path / "out", tmp_path / "dropped"
    manifest = api.select(run, out, write_dropped=str(dropped), runtime=LOCAL, **BAND)
    totals = manifest["totals"]
    inputs = sorted(p.name for p in pool.glob("*.parquet"))
    assert sorted(p.name for p in dropped.glob("*.parquet")) == inputs
    assert manifest["dropped_output"]["folder"] == str(dropped)
    assert manifest["dropped_output"]["shards"] == len(inputs)
    assert manifest["dropped_output"]["rows"] == totals["dropped"] + totals["rejected"] > 0
    assert set(manifest["dropped_output"]["files"]) == set(inputs)

    for name in inputs:
        source = pq.read_table(pool / name)
        kept = pq.read_table(out / name)
        gone = pq.read_table(dropped / name)
        assert gone.schema.names == [*source.schema.names, REASON_COLUMN]
        # Every input row is in exactly one of the two, with its values.
        ids = kept["id"].to_pylist() + gone["id"].to_pylist()
        assert sorted(ids) == sorted(source["id"].to_pylist())
        assert gone.drop_columns([REASON_COLUMN]).to_pylist() == [
            r for r in source.to_pylist() if r["id"] in set(gone["id"].to_pylist())
        ]
    reasons = Counter(
        r for name in inputs for r in pq.read_table(dropped / name)[REASON_COLUMN].to_pylist()
    )
    assert reasons == Counter({**totals["dropped_by_reason"], **totals["rejected_by_reason"]})
    assert reasons["empty_text"] == 1 and reasons["null_text"] == 1

    # A second run writes nothing new; the folder is datafilter's now.
    before = {p: p.stat().st_mtime_ns for p in dropped.glob("*.parquet")}
    again = api.select(run, out, write_dropped=str(dropped), runtime=LOCAL, **BAND)
    assert again["dropped_output"] == manifest["dropped_output"]
    assert {p: p.stat().st_mtime_ns for p in dropped.glob("*.parquet")} == before


def test_the_dropped_folder_obeys_the_output_rules(tmp_path: Path, scored) -> None:
    pool, run = scored
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="dropped folder .* already holds files datafilter"):
        api.select(run, tmp_path / "out", write_dropped=str(foreign), runtime=LOCAL, **BAND)
    with pytest.raises(ConfigError, match="dropped folder .* the input"):
        api.select(run, tmp_path / "out", write_dropped=str(pool / "x"), runtime=LOCAL, **BAND)
    with pytest.raises(ConfigError, match="output folder .* the dropped folder"):
        api.select(
            run, tmp_path / "o", write_dropped=str(tmp_path / "o" / "d"), runtime=LOCAL, **BAND
        )
    assert (foreign / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "out").exists()
