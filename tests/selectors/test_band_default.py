"""The band selector's default criterion follows the reference kind recorded with the model:
``low`` for a model of clean reference text, ``medium`` for one of the corpus itself, and
``medium`` with a warning when unknown."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow.parquet as pq
from helpers_corpus import LOCAL, log_lines, write_shard

from datafilter import api
from datafilter.selectors import with_defaults
from datafilter.selectors.perplexity_band import default_criterion, reference_kind


def _kenlm(kind: str | None) -> dict:
    recipe = {} if kind is None else {"reference_kind": kind}
    return {"scorer": {"scorer": "kenlm", "model_recipe": recipe}}


def test_the_default_follows_the_recorded_reference_kind():
    assert default_criterion(_kenlm("clean_reference")) == ("low", None)
    assert default_criterion(_kenlm("corpus")) == ("medium", None)
    assert default_criterion({"scorer": {"scorer": "crossfit", "reference_kind": "corpus"}}) == (
        "medium",
        None,
    )
    criterion, warning = default_criterion(_kenlm(None))
    assert criterion == "medium" and "datafilter evaluate" in warning
    assert reference_kind({"scorer": {"scorer": "torch"}}) == "unknown"


def test_a_given_criterion_is_kept_and_other_selectors_are_untouched():
    given = {"criterion": "high", "keep": 0.3}
    assert with_defaults("perplexity_band", given, _kenlm("clean_reference")) == (given, None)
    assert with_defaults("ccnet_buckets", {}, _kenlm("clean_reference")) == ({}, None)


def test_a_kenlm_model_of_clean_reference_text_selects_the_low_band_by_default(
    tmp_path, demo_corpus, kenlm_model_dir
):
    recipe = json.loads((kenlm_model_dir / "recipe.json").read_text())
    assert recipe["reference_kind"] == "clean_reference"
    texts = pq.read_table(demo_corpus.pool_dir, columns=["id", "text"]).slice(0, 60)
    write_shard(tmp_path / "pool" / "part-0.parquet", texts)
    run = tmp_path / "run"
    api.score(tmp_path / "pool", run, options={"model": str(kenlm_model_dir)}, id_column="id",
              runtime=LOCAL)  # fmt: skip
    entry = json.loads((run / "run.json").read_text())["scorers"]["kenlm"]
    assert entry["scorer"]["model_recipe"]["reference_kind"] == "clean_reference"
    with log_lines() as lines:
        plan = api.thresholds(run, selector="perplexity_band", options={"keep": 0.5}, table=False)
    assert not [line for line in lines if "warning" in line]
    request = json.loads(Path(plan["plan"]).read_text())["request"]
    assert request["options"]["criterion"] == "low"
    manifest = api.select(run, tmp_path / "out", options={"keep": 0.5}, runtime=LOCAL)
    assert manifest["selector"]["options"]["criterion"] == "low"
    assert manifest["totals"]["kept"] == 30


def test_an_unknown_reference_kind_warns_and_keeps_the_medium_band(
    tmp_path, demo_corpus, kenlm_model_dir, caplog
):
    model = tmp_path / "model"
    model.mkdir()
    for f in kenlm_model_dir.iterdir():
        (model / f.name).write_bytes(f.read_bytes())
    recipe = json.loads((model / "recipe.json").read_text())
    del recipe["reference_kind"]  # a model folder written before the kind was recorded
    (model / "recipe.json").write_text(json.dumps(recipe))
    texts = pq.read_table(demo_corpus.pool_dir, columns=["id", "text"]).slice(0, 40)
    write_shard(tmp_path / "pool" / "part-0.parquet", texts)
    run = tmp_path / "run"
    api.score(tmp_path / "pool", run, options={"model": str(model)}, id_column="id",
              runtime=LOCAL)  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="datafilter"):
        plan = api.thresholds(run, selector="perplexity_band", table=False)
    assert "check it against low and high with datafilter evaluate" in caplog.text
    assert json.loads(Path(plan["plan"]).read_text())["request"]["options"]["criterion"] == "medium"
