"""Mistakes as sentences: pydantic's errors, names, and columns, each naming the key, the bad
value, the valid choices and the likely intended one."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datafilter.config import RunConfig
from datafilter.errors import ConfigError, InputError
from datafilter.registry import parse_options
from datafilter.selectors.ccnet_buckets import CcnetBucketsOptions
from datafilter.selectors.perplexity_band import PerplexityBandOptions
from datafilter.stages.score import ScoreOptions
from datafilter.validation import check_columns, did_you_mean, unknown_choice


def _message(model, values) -> str:
    with pytest.raises(ConfigError) as info:
        parse_options(model, values, "w")
    return str(info.value)


@pytest.mark.parametrize(
    ("model", "values", "expected"),
    [
        (ScoreOptions, {"text_colum": "t"},
         "invalid options for w: unknown option 'text_colum'; valid options: batch_rows, "
         "id_column, max_doc_bytes, options, overwrite, scorer, scorer_id, text_column, "
         "verify_inputs; did you mean 'text_column'?"),
        (ScoreOptions, {"batch_rows": "x"},
         "invalid options for w: batch_rows='x': input should be a valid integer"),
        (PerplexityBandOptions, {"keep": "0.5"},
         "invalid options for w: keep='0.5': input should be a valid number (a number, not "
         "text: leave out the quotes)"),
        (PerplexityBandOptions, {"keep": 1.5},
         "invalid options for w: keep=1.5: input should be less than or equal to 1"),
        (PerplexityBandOptions, {"criterion": "Low"},
         "invalid options for w: criterion='Low': input should be 'low', 'medium' or 'high'; "
         "did you mean 'low'?"),
        (CcnetBucketsOptions, {"keep": ["hed"]},
         "invalid options for w: keep.0='hed': input should be 'head', 'middle' or 'tail'; "
         "did you mean 'head'?"),
        (CcnetBucketsOptions, {"cuts": [0.7, 0.2]},
         "invalid options for w: cuts must satisfy 0 <= low <= high <= 1"),
        (RunConfig, {"input": "x", "run_dir": "y", "select": {"output": "o"}, "scor": {}},
         "invalid options for w: unknown option 'scor'; valid options: combine, demo_corpus, "
         "evaluate, input, ray, run_dir, score, select, storage, thresholds, train_kenlm; "
         "did you mean 'score'?"),
        (RunConfig, {"input": "x", "run_dir": "y"},
         "invalid options for w: option 'select' is required"),
    ],
)  # fmt: skip
def test_pydantic_errors_become_sentences(model, values, expected) -> None:
    assert _message(model, values) == expected


def test_names_and_choices() -> None:
    assert did_you_mean("kep", ["keep", "metric"]) == "; did you mean 'keep'?"
    assert did_you_mean("zzz", ["keep", "metric"]) == ""
    assert did_you_mean("perplexity", ["perplexity_band", "ccnet_buckets"]) == (
        "; did you mean 'perplexity_band'?"
    )  # the start of one name
    assert unknown_choice("selector", "band", ["ccnet_buckets", "perplexity_band"]) == (
        "unknown selector 'band'; known selectors: ccnet_buckets, perplexity_band"
    )


def test_columns_against_the_first_shard(tmp_path) -> None:
    pq.write_table(pa.table({"id": ["a"], "body": ["x"]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"other": [1]}), tmp_path / "b.parquet")  # never opened
    check_columns(tmp_path, {"text_column": "body", "id_column": None})
    with pytest.raises(InputError) as info:
        check_columns(tmp_path, {"text_column": "Body"})
    assert str(info.value) == (
        f"{tmp_path / 'a.parquet'}: text_column 'Body': no such column in the first input "
        "shard; its columns are id, body; did you mean 'body'?"
    )
