"""Every plugin option has its meaning; ``describe`` and ``list`` show them; the results of
``run`` and of each stage command are labelled JSON with seconds and output paths."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from helpers_corpus import LOCAL

from datafilter import api, cli
from datafilter.plugin_info import option_rows
from datafilter.scorers import SCORERS
from datafilter.selectors import SELECTORS


@pytest.mark.parametrize(
    ("registry", "name"),
    [(SCORERS, n) for n in SCORERS.names()] + [(SELECTORS, n) for n in SELECTORS.names()],
)
def test_every_plugin_option_has_a_meaning(registry, name) -> None:
    rows = option_rows(registry.get(name).Options)
    missing = [row["name"] for row in rows if not row["meaning"]]
    assert rows and not missing, missing


def test_describe_prints_type_default_and_meaning(capfd) -> None:
    assert cli.main(["describe", "perplexity_band"]) == 0
    out = capfd.readouterr().out.splitlines()
    assert out[0].startswith("selector perplexity_band: Perplexity pruning")
    keep = next(line.split() for line in out if line.strip().startswith("keep "))
    assert keep[:3] == ["keep", "float", "0.5"] and "fraction of documents kept" in " ".join(keep)
    assert cli.main(["describe", "perplexity_bnad"]) == 2
    err = capfd.readouterr().err
    assert "unknown plugin 'perplexity_bnad'" in err and "did you mean 'perplexity_band'?" in err


def test_list_shows_one_line_summaries(capfd) -> None:
    assert cli.main(["list"]) == 0
    listed = json.loads(capfd.readouterr().out)
    assert listed["scorers"]["kenlm"].startswith("KenLM scorer")
    assert all(text and "\n" not in text for text in listed["selectors"].values())


def test_run_result_is_labelled_with_seconds_and_outputs(tmp_path, demo_corpus, kenlm_model_dir):
    table = pq.read_table(demo_corpus.pool_dir, columns=["id", "text", "domain"]).slice(0, 60)
    (tmp_path / "in").mkdir()
    pq.write_table(table, tmp_path / "in" / "a.parquet")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "input": str(tmp_path / "in"),
        "run_dir": str(tmp_path / "run"),
        "score": {"options": {"model": str(kenlm_model_dir)}},
        "thresholds": {"group_by": [None, "domain"]},
        "select": {"output": str(tmp_path / "out"), "group_by": "domain"},
        "ray": {"executor": "local"},
    }))  # fmt: skip
    result = api.run(config, progress=False)
    groups = result["groups"]
    assert set(groups) == set(table["domain"].to_pylist())
    assert all(set(c) == {"read", "kept"} for c in groups.values())
    assert sum(c["read"] for c in groups.values()) == result["select"]["read"] == 60
    assert set(result["seconds"]) == {"score", "thresholds", "select", "total"}
    assert all(s >= 0 for s in result["seconds"].values())
    outputs = result["outputs"]
    for key in ("scores", "plan", "selection", "manifest"):
        assert Path(outputs[key]).exists(), key
    assert [t["group_by"] for t in result["thresholds"]] == [None, "domain"]
    assert all(Path(t["table"]).exists() and t["documents"] == 60 for t in result["thresholds"])


def test_stage_commands_give_seconds_and_paths(capfd, tmp_path, demo_corpus, kenlm_model_dir):
    table = pq.read_table(demo_corpus.pool_dir, columns=["id", "text"]).slice(0, 30)
    (tmp_path / "in").mkdir()
    pq.write_table(table, tmp_path / "in" / "a.parquet")
    run, out = tmp_path / "run", tmp_path / "out"

    def call(*args) -> dict:
        assert cli.main([str(a) for a in args]) == 0
        return json.loads(capfd.readouterr().out)

    scored = call("score", "--input", tmp_path / "in", "--output", run, "--model",
                  kenlm_model_dir, "--executor", "local")  # fmt: skip
    assert scored["rows"] == 30 and Path(scored["output"]).is_dir() and scored["seconds"] >= 0
    made = call("thresholds", "--run", run, "--selector", "perplexity_band")
    assert Path(made["table"]).exists() and Path(made["plan"]).exists()
    selected = call("select", "--run", run, "--output", out, "--executor", "local")
    assert Path(selected["manifest"]).exists() and selected["totals"]["read"] == 30
    assert selected["seconds"] >= 0
    assert api.select(run, out, runtime=LOCAL)["totals"] == selected["totals"]


@pytest.mark.parametrize("command", [c.name for c in cli.COMMANDS])
def test_every_flag_of_every_command_has_help(command) -> None:
    parser = cli.build_parser([command])
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    blank = [a.option_strings or a.dest for a in sub._actions if not (a.help or "").strip()]
    assert not blank
    assert not sub.allow_abbrev
