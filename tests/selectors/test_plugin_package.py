"""A selector in a package of its own (one file, one entry point), installed with pip: score,
thresholds (its plan) and select run it end to end, and nothing in datafilter/ names it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
from helpers_corpus import cli_command

import datafilter

PYPROJECT = """\
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "datafilter-keep-short"
version = "0.1"

[project.entry-points."datafilter.selectors"]
keep_short = "keep_short:KeepShort"
"""

# The whole plugin: options, a plan from the corpus' statistics, a pure per-row decision.
MODULE = '''\
"""Keep the lowest-perplexity share of each group."""

import numpy as np
from pydantic import Field

from datafilter.selectors import Decision, Selector, SelectorOptions


class KeepShortOptions(SelectorOptions):
    share: float = Field(0.25, gt=0, lt=1, description="share of documents kept per group")


class KeepShort(Selector):
    name = "keep_short"
    Options = KeepShortOptions

    def plan(self, stats):
        cuts = stats.quantiles([self.options.share], "ppl")
        return {"groups": {g: {"below": v[0]} for g, v in cuts.items()}}

    def decide(self, scores, groups, plan, seed):
        keep = np.zeros(len(groups), dtype=bool)
        for group, params in plan["groups"].items():
            keep |= (groups == group) & (scores["ppl"] <= params["below"])
        return Decision(keep=keep, drop_reason="keep_short")
'''


def test_a_selector_installed_from_its_own_package_runs_end_to_end(
    tmp_path, demo_corpus, kenlm_model_dir
) -> None:
    source = tmp_path / "plugin"
    source.mkdir()
    (source / "pyproject.toml").write_text(PYPROJECT)
    (source / "keep_short.py").write_text(textwrap.dedent(MODULE))
    site = tmp_path / "site"  # a throwaway install target: the shared environment is untouched
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--target", str(site), str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    assert (site / "keep_short.py").is_file() and list(site.glob("*.dist-info"))
    repo = Path(datafilter.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(repo)])}

    def cli(*args) -> subprocess.CompletedProcess:
        proc = subprocess.run(cli_command(*args), env=env, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return proc

    assert "keep_short" in json.loads(cli("list").stdout)["selectors"]
    run, out = tmp_path / "run", tmp_path / "out"
    cli("score", "--input", demo_corpus.pool_dir, "--output", run, "--model", kenlm_model_dir,
        "--id-column", "id", "--executor", "local")  # fmt: skip
    request = ("--run", run, "--selector", "keep_short", "--set", "share=0.4", "--group-by",
               "domain")  # fmt: skip
    plan = json.loads(cli("thresholds", *request).stdout)["plan"]
    assert Path(plan).name.startswith("keep_short-")
    manifest = json.loads(cli("select", *request, "--output", out, "--executor", "local").stdout)
    totals = manifest["totals"]
    n = pq.read_table(demo_corpus.pool_dir).num_rows
    assert totals["read"] == n and 0.35 * n <= totals["kept"] <= 0.45 * n
    assert totals["dropped_by_reason"] == {"keep_short": totals["dropped"]}
    assert sum(pq.read_table(p).num_rows for p in out.glob("*.parquet")) == totals["kept"]
    # Nothing in the package names the plugin: one file and one entry point did it all.
    package = Path(datafilter.__file__).resolve().parent
    assert not [p for p in package.rglob("*.py") if "keep_short" in p.read_text()]
