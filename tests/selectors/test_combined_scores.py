"""Every registered selector makes its plan from, and selects by, a combined score id
(``datafilter combine``) exactly as from a scorer's: the demo pool scored by KenLM twice."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from helpers_corpus import LOCAL

from datafilter import api
from datafilter.errors import ConfigError
from datafilter.selectors import SELECTORS


@pytest.fixture(scope="module")
def combined_run(tmp_path_factory, demo_corpus, kenlm_model_dir):
    root = tmp_path_factory.mktemp("combined")
    run = root / "run"
    options = {"model": str(kenlm_model_dir)}
    api.score(demo_corpus.pool_dir, run, options=options, id_column="id", runtime=LOCAL)
    api.score(demo_corpus.pool_dir, run, options={**options, "mode": "ccnet_compat"},
              scorer_id="doc", id_column="id", runtime=LOCAL)  # fmt: skip
    summary = api.combine(run, name="mix", terms=["kenlm:ppl:low", "doc:bpb:both:0.5"],
                          group_by="domain")  # fmt: skip
    pq.write_table(pa.table({"domain": ["business", "sport"], "weight": [1.0, 1.0]}),
                   root / "weights.parquet")  # fmt: skip
    return root, run, summary


def _options(name: str, root) -> tuple[dict, str | None]:
    if name == "perplexity_correlation":
        return {"weights": str(root / "weights.parquet"), "budget": 20_000}, "domain"
    if name == "harmful_outlier":
        return {"clean_scorer_id": "kenlm"}, None
    if name == "perplexity_sampling":
        return {"target_keep": 0.5}, None
    if name == "perplexity_range":  # ppl = exp(combined value): below the typical document
        return {"max": 1.0}, None
    return {}, None


@pytest.mark.parametrize("name", SELECTORS.names())
def test_every_selector_accepts_the_combined_scores(combined_run, name) -> None:
    root, run, summary = combined_run
    assert summary["scored"] == summary["rows"] > 0
    options, group_by = _options(name, root)
    plan = api.thresholds(run, scorer_id="mix", selector=name, options=options,
                          group_by=group_by, table=False)["plan"]  # fmt: skip
    manifest = api.select(run, root / f"out-{name}", plan=plan, runtime=LOCAL)
    t = manifest["totals"]
    assert t["read"] == summary["rows"]
    assert t["kept"] + t["dropped"] + t["rejected"] == t["read"]
    assert 0 < t["kept"] <= t["read"]
    assert manifest["scorer_id"] == "mix"


def test_a_run_config_combine_section(combined_run, demo_corpus, kenlm_model_dir) -> None:
    root, run, summary = combined_run
    config = root / "run.yaml"
    config.write_text(yaml.safe_dump({
        "input": str(demo_corpus.pool_dir), "run_dir": str(run),
        "score": {"options": {"model": str(kenlm_model_dir)}, "id_column": "id"},
        "combine": {"name": "mix", "terms": ["kenlm:ppl:low", "doc:bpb:both:0.5"],
                    "group_by": "domain"},
        "select": {"output": str(root / "out-config"), "options": {"criterion": "low"}},
        "ray": {"executor": "local"},
    }))  # fmt: skip
    result = api.run(config, progress=False)
    assert result["combine"]["scorer_id"] == "mix"
    assert result["select"]["read"] == summary["rows"]
    manifest = json.loads((root / "out-config" / "manifest.json").read_text())
    assert manifest["scorer_id"] == "mix"
    changed = yaml.safe_load(config.read_text())
    changed["combine"]["terms"] = ["kenlm:ppl:low", "doc:bpb:both"]
    config.write_text(yaml.safe_dump(changed))
    with pytest.raises(ConfigError, match="combined otherwise"):
        api.run(config, progress=False)
