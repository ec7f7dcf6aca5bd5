"""The command line is generated from the options models: every field is a flag with its help,
``-c FILE.yaml`` gives the same keys, flags override it, ``--set`` fills the plugin's options, and
no flag is matched by a prefix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers_corpus import LOCAL, run_cli

from datafilter import api, cli
from datafilter.runtime import RuntimeOptions
from datafilter.stages.score import ScoreOptions
from datafilter.stages.select import SelectOptions
from datafilter.stages.thresholds import ThresholdsOptions


def _help(command: str) -> str:
    parser = cli.build_parser([command])
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return sub.format_help()


@pytest.mark.parametrize(
    ("command", "models"),
    [
        ("score", (ScoreOptions, RuntimeOptions)),
        ("thresholds", (ThresholdsOptions,)),
        ("select", (SelectOptions, RuntimeOptions)),
    ],
)
def test_every_option_of_the_model_is_a_flag_with_its_meaning(command, models) -> None:
    text = " ".join(_help(command).split())
    for model in models:
        for name, field in model.model_fields.items():
            if name == "options":
                assert "--set KEY=VALUE" in text
                continue
            extra = field.json_schema_extra or {}
            flag = extra.get("flag") or "--" + name.replace("_", "-")
            assert flag in text, (command, name)
            assert " ".join(field.description.split()) in text, (command, name)
    assert "-c FILE.yaml" in text


def test_help_shows_defaults_and_choices() -> None:
    text = " ".join(_help("select").split())
    assert "(default: perplexity_band)" in text and "--with-scores, --no-with-scores" in text
    assert "--executor {auto,local,process,ray}" in text and "(default: 8000000)" in text


@pytest.fixture(scope="module")
def run(tmp_path_factory, demo_corpus, kenlm_model_dir):
    run = tmp_path_factory.mktemp("cli-options") / "run"
    api.score(demo_corpus.pool_dir, run, options={"model": str(kenlm_model_dir)},
              id_column="id", runtime=LOCAL)  # fmt: skip
    return run


def _request(proc) -> dict:
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)["plan"]
    return json.loads(Path(plan).read_text())["request"]


def test_a_config_file_flags_over_it_and_set(run, tmp_path) -> None:
    config = tmp_path / "thresholds.yaml"
    config.write_text(yaml.safe_dump({
        "group_by": "domain", "selector": "perplexity_band", "options": {"keep": 0.3},
        "quantiles": [0.333],
    }))  # fmt: skip
    request = _request(run_cli("thresholds", "--run", run, "-c", config))
    assert request["group_by"] == "domain" and request["options"]["keep"] == 0.3
    table = json.loads((run / "thresholds" / "kenlm.by-domain.json").read_text())
    assert "p33.3" in table["groups"]["business"]["ppl"]
    # Flags override the file; --set merges into its options.
    request = _request(run_cli("thresholds", "--run", run, "-c", config, "--group-by", "source",
                               "--set", "criterion=low"))  # fmt: skip
    assert request["group_by"] == "source"
    assert request["options"] == {"criterion": "low", "keep": 0.3, "metric": "ppl"}
    # The same keys drive select; its output from the file, runtime from a flag.
    select = tmp_path / "select.yaml"
    select.write_text(yaml.safe_dump({
        "output": str(tmp_path / "out"), "group_by": "source",
        "options": {"keep": 0.3, "criterion": "low"},
    }))  # fmt: skip
    proc = run_cli("select", "--run", run, "-c", select, "--executor", "local")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["output"] == str(tmp_path / "out")


def test_unknown_keys_and_prefixes_are_refused(run, tmp_path) -> None:
    proc = run_cli("thresholds", "--run", run, "--group", "domain")  # a prefix of --group-by
    assert proc.returncode == 2 and "unrecognized arguments: --group domain" in proc.stderr
    config = tmp_path / "bad.yaml"
    config.write_text("group_by: domain\nquantile: [0.5]\n")
    proc = run_cli("thresholds", "--run", run, "-c", config)
    assert proc.returncode == 2
    assert "invalid options for thresholds: quantile: Extra inputs" in proc.stderr
    proc = run_cli("select", "--run", run, "--executor", "local")
    assert proc.returncode == 2 and "required: --output" in proc.stderr
