"""datafilter.ray_data.ScoreBatches in a real Ray Data pipeline (a private local Ray) gives the
score stage's numbers and reject reasons on the same documents, empty, null and too long ones
included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datafilter import api
from datafilter.ray_data import ScoreBatches

ray = pytest.importorskip("ray", reason="the ray extra")

COLUMNS = ["logprob_sum", "n_tokens", "n_bytes", "ppl", "bpb", "reject_reason"]
MAX_BYTES = 2000


def _corpus(demo_corpus) -> pa.Table:
    table = pq.read_table(sorted(demo_corpus.pool_dir.glob("*.parquet"))[0]).slice(0, 150)
    texts = table["text"].to_pylist()
    texts[0], texts[1], texts[2] = "", None, "y" * (MAX_BYTES + 1)
    ids = table["id"].to_pylist()
    ids[3] = None  # null_id
    table = table.set_column(table.schema.get_field_index("text"), "text", pa.array(texts))
    return table.set_column(table.schema.get_field_index("id"), "id", pa.array(ids))


def test_ray_data_scores_equal_the_score_stage(tmp_path: Path, demo_corpus, kenlm_model_dir):
    table = _corpus(demo_corpus)
    (tmp_path / "in").mkdir()
    pq.write_table(table, tmp_path / "in" / "part.parquet")
    options = {"model": str(kenlm_model_dir)}
    api.score(tmp_path / "in", tmp_path / "run", options=options, id_column="id",
              max_doc_bytes=MAX_BYTES, runtime={"executor": "local"})  # fmt: skip
    stage = pq.read_table(tmp_path / "run" / "scores" / "kenlm" / "part.parquet")
    reasons = stage["reject_reason"].to_pylist()
    assert {"empty_text", "null_text", "too_long", "null_id"} <= set(reasons)

    if ray.is_initialized():  # a stage run on Ray earlier in this process keeps its Ray
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ds = ray.data.from_arrow(table).repartition(3)
        scored = ds.map_batches(
            ScoreBatches,
            fn_constructor_kwargs={"scorer": "kenlm", "options": options, "id_column": "id",
                                   "max_doc_bytes": MAX_BYTES},
            batch_format="pyarrow", batch_size=32, concurrency=1,
        ).to_arrow_refs()  # fmt: skip
        result = pa.concat_tables(ray.get(scored))
    finally:
        ray.shutdown()

    assert result.num_rows == table.num_rows
    assert result.column_names == table.column_names + [f"datafilter_{c}" for c in COLUMNS]
    assert result.select(table.column_names).equals(table)  # the documents, untouched, in order
    for c in COLUMNS:
        got, want = result[f"datafilter_{c}"], stage[c]
        if pa.types.is_floating(want.type):  # NaN where rejected, in both
            np.testing.assert_array_equal(got.to_numpy(), want.to_numpy())
        else:
            assert got.to_pylist() == want.to_pylist(), c


def test_batches_of_other_kinds_and_a_column_clash(kenlm_model_dir) -> None:
    scorer = ScoreBatches(options={"model": str(kenlm_model_dir)})
    texts = np.array(["a sentence of text", "", None], dtype=object)
    as_dict = scorer({"text": texts, "n": np.arange(3)})
    assert as_dict["datafilter_reject_reason"].tolist() == [None, "empty_text", "null_text"]
    assert list(as_dict["n"]) == [0, 1, 2]
    frame = scorer(pa.table({"text": ["a sentence of text"]}).to_pandas())
    assert frame["datafilter_n_tokens"].iloc[0] > 0
    with pytest.raises(Exception, match="already has a column datafilter_ppl"):
        scorer(pa.table({"text": ["x"], "datafilter_ppl": [1.0]}))
