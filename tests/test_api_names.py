"""Every public API name stays the function it names after any stage has run (no submodule of
the same name shadows it), and each is callable again."""

from __future__ import annotations

import inspect
import json

import pytest
import yaml

import datafilter
from datafilter.errors import DatafilterError


def _functions() -> dict[str, object]:
    return {name: getattr(datafilter, name) for name in datafilter.__all__}


def test_every_api_name_is_a_function_before_and_after_the_stages_run(
    tmp_path, demo_corpus, kenlm_model_dir
) -> None:
    before = _functions()
    assert all(inspect.isfunction(f) for f in before.values()), before
    run, out = tmp_path / "run", tmp_path / "out"
    local = {"executor": "local"}
    datafilter.score(demo_corpus.pool_dir, run, options={"model": str(kenlm_model_dir)},
                     id_column="id", runtime=local)  # fmt: skip
    datafilter.thresholds(run, selector="perplexity_band")
    datafilter.select(run, out, runtime=local)
    after = _functions()
    assert after == before  # the same objects: nothing shadowed them

    # Each name once more, after the stages: real calls where cheap, else a refused one (a
    # module in its place would fail with "'module' object is not callable" instead).
    assert datafilter.thresholds(run, group_by="domain")["n_docs"] > 0
    assert datafilter.select(run, out, runtime=local)["totals"]["read"] > 0
    assert datafilter.score(demo_corpus.pool_dir, run, options={"model": str(kenlm_model_dir)},
                            id_column="id", runtime=local)["shards"] == 4  # fmt: skip
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "input": str(demo_corpus.pool_dir), "run_dir": str(run),
        "score": {"options": {"model": str(kenlm_model_dir)}, "id_column": "id"},
        "select": {"output": str(out)}, "ray": local,
    }))  # fmt: skip
    assert datafilter.run(config, progress=False)["select"]["read"] > 0
    assert datafilter.report(run, output=tmp_path / "r.html")["bytes"] > 0
    assert "perplexity_band" in datafilter.list_plugins()["selectors"]
    assert datafilter.describe("perplexity_band")[0]["kind"] == "selector"
    assert datafilter.train_kenlm([demo_corpus.reference_dir], kenlm_model_dir).order == 3
    assert datafilter.build_demo_corpus(demo_corpus.root).pool_dir == demo_corpus.pool_dir
    refused = {
        "combine": lambda f: f(run, name="mix", terms=["nope:ppl:low"]),
        "import_kenlm": lambda f: f(tmp_path / "none.bin", tmp_path / "none.model", tmp_path / "m"),
        "train_reference": lambda f: f(demo_corpus.reference_dir, tmp_path / "ref", preset="x"),
        "corr_sample": lambda f: f(demo_corpus.pool_dir, tmp_path / "sample"),
        "corr_bpb": lambda f: f(run, tmp_path / "bpb.parquet"),
        "corr_weights": lambda f: f(tmp_path / "b.csv", tmp_path / "m.csv", tmp_path / "w.csv"),
        "corr_distill": lambda f: f(run, tmp_path / "w.parquet", tmp_path / "clf"),
        "corr_run": lambda f: f(tmp_path / "missing.yaml"),
        "evaluate": lambda f: f(run, candidates=[]),
    }
    for name, call in refused.items():
        with pytest.raises(DatafilterError):
            call(getattr(datafilter, name))
    assert _functions() == before
    assert json.loads((out / "manifest.json").read_text())["plan"]["path"].startswith(str(run))
