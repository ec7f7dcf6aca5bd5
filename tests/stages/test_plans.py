"""The plan is the thresholds stage's artifact: select applies it, never makes one, and refuses a
missing plan, one made from other scores and one made for other options, saying how to make it."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from helpers_corpus import LOCAL, run_cli

from datafilter import api
from datafilter.errors import ConfigError
from datafilter.selectors.base import Selector

BAND = {"criterion": "low", "keep": 0.3}


@pytest.fixture(scope="module")
def scored(tmp_path_factory, demo_corpus, kenlm_model_dir):
    root = tmp_path_factory.mktemp("plans")
    api.score(demo_corpus.pool_dir, root / "run", options={"model": str(kenlm_model_dir)},
              id_column="id", runtime=LOCAL)  # fmt: skip
    return root / "run"


@pytest.fixture
def run(scored, tmp_path):
    """A copy of the scored run (tests change it); its input is the demo pool, unchanged."""
    shutil.copytree(scored, tmp_path / "run")
    return tmp_path / "run"


def test_thresholds_writes_the_plan_with_what_it_was_made_from(run) -> None:
    summary = api.thresholds(run, selector="perplexity_band", options=BAND, group_by="domain")
    path = run / "thresholds" / "plans"
    [plan_file] = list(path.glob("perplexity_band-*.json"))
    assert summary["plan"] == str(plan_file)
    data = json.loads(plan_file.read_text())
    assert data["request"] == {
        "selector": "perplexity_band",
        "options": {**BAND, "metric": "ppl"},
        "scorer_id": "kenlm",
        "group_by": "domain",
        "extra_scorers": [],
    }
    shards = data["scores"]["shards"]["kenlm"]
    markers = sorted((run / "_state" / "score" / "kenlm").glob("*.done.json"))
    assert {m.name.removesuffix(".done.json"): json.loads(m.read_text())["output"]["sha256"]
            for m in markers} == shards  # fmt: skip
    assert len(data["scores"]["fingerprint"]) == 64 and data["datafilter_version"]
    assert data["created"].endswith("Z") and "kenlm" in data["scorers"]
    groups = data["plan"]["groups"]
    assert "business" in groups and {"rank_start", "rank_stop", "lower", "upper"} <= groups[
        "business"
    ].keys()
    # The same request, the defaults spelled out: the same file, left as it is.
    before = plan_file.read_bytes()
    again = api.thresholds(run, selector="perplexity_band", options={**BAND, "metric": "ppl"},
                           group_by="domain")  # fmt: skip
    assert again["plan"] == str(plan_file) and plan_file.read_bytes() == before


def test_select_applies_the_plan_and_never_makes_one(run, tmp_path, monkeypatch) -> None:
    made = api.thresholds(run, selector="perplexity_band", options=BAND)["plan"]

    def no_plan(self, stats):
        raise AssertionError("select made a plan")

    monkeypatch.setattr(Selector, "plan", no_plan)
    for cls in Selector.__subclasses__():
        monkeypatch.setattr(cls, "plan", no_plan)
    manifest = api.select(run, tmp_path / "out", options=BAND, runtime=LOCAL)
    body = json.loads(Path(made).read_text())["plan"]
    assert manifest["thresholds"] == body
    assert manifest["plan"]["path"] == made and len(manifest["plan"]["sha256"]) == 64
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["plan"] == manifest["plan"]
    n = manifest["totals"]["read"]
    assert manifest["totals"]["kept"] == int(0.3 * n + 0.5)


def test_a_missing_plan_is_refused_with_the_command_that_makes_it(run, tmp_path) -> None:
    out = tmp_path / "out"
    args = ["select", "--run", run, "--output", out, "--set", "criterion=low", "--set",
            "keep=0.3", "--group-by", "domain", "--executor", "local"]  # fmt: skip
    proc = run_cli(*args)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    line = proc.stderr.strip()
    assert line.startswith("datafilter: error: no plan of selector 'perplexity_band'")
    command = line.split("make it first: ", 1)[1]
    assert command == (
        f"datafilter thresholds --run {run} --scorer-id kenlm --selector perplexity_band "
        "--set criterion=low --set keep=0.3 --group-by domain"
    )
    assert not out.exists()
    proc = run_cli(*shlex.split(command)[1:])  # the command it names makes the plan
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["totals"]["kept"] > 0


def test_a_plan_made_from_other_scores_is_refused(run, tmp_path, kenlm_model_dir) -> None:
    api.thresholds(run, selector="perplexity_band", options=BAND)
    record = json.loads((run / "run.json").read_text())
    other = {"model": str(kenlm_model_dir), "mode": "ccnet_compat"}  # other scores
    api.score(record["input"], run, options=other, id_column="id", overwrite=True,
              runtime=LOCAL)  # fmt: skip
    with pytest.raises(ConfigError) as info:
        api.select(run, tmp_path / "out", options=BAND, runtime=LOCAL)
    message = str(info.value)
    assert "was made from other scores" in message
    assert message.endswith(
        f"datafilter thresholds --run {run} --scorer-id kenlm --selector perplexity_band "
        "--set criterion=low --set keep=0.3"
    )
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_a_deleted_plan_is_refused(run, tmp_path) -> None:
    plan = api.thresholds(run, selector="ccnet_buckets")["plan"]
    api.select(run, tmp_path / "a", selector="ccnet_buckets", runtime=LOCAL)
    (run / "thresholds" / "plans" / plan.rsplit("/", 1)[1]).unlink()
    with pytest.raises(ConfigError, match="no plan of selector 'ccnet_buckets'"):
        api.select(run, tmp_path / "b", selector="ccnet_buckets", runtime=LOCAL)


def test_a_plan_for_other_options_is_refused(run, tmp_path) -> None:
    plan = api.thresholds(run, selector="perplexity_band", options=BAND)["plan"]
    with pytest.raises(ConfigError, match="made for options"):
        api.select(run, tmp_path / "out", plan=plan, options={"keep": 0.9}, runtime=LOCAL)
    with pytest.raises(ConfigError, match="made for group_by None, not 'domain'"):
        api.select(run, tmp_path / "out", plan=plan, group_by="domain", runtime=LOCAL)
    with pytest.raises(ConfigError, match="no plan of selector 'perplexity_band'"):
        api.select(run, tmp_path / "out", options={"keep": 0.9}, runtime=LOCAL)


def test_a_hand_edited_plan_is_applied(run, tmp_path) -> None:
    """ccnet_buckets' cuts moved above every document: all are 'head'."""
    plan = json.loads(Path(api.thresholds(run, selector="ccnet_buckets")["plan"]).read_text())
    for cut in plan["plan"]["groups"].values():
        cut["head_below"] = cut["middle_below"] = 1e300
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(plan))
    proc = run_cli("select", "--run", run, "--output", tmp_path / "out", "--plan", edited,
                   "--executor", "local")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    table = pq.read_table(sorted((tmp_path / "out").glob("*.parquet")))
    assert set(table["datafilter_bucket"].to_pylist()) == {"head"}
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["plan"]["path"] == str(edited)
    assert manifest["selector"]["name"] == "ccnet_buckets"
