"""The issue-4 selectors through `datafilter select` and `datafilter run` on real KenLM scores."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml
from helpers_corpus import LOCAL, run_cli, run_cli_select

from datafilter import api


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory, demo_corpus, kenlm_model_dir):
    """The demo pool scored twice: by the reference model, and as a stand-in second model."""
    root = tmp_path_factory.mktemp("selectors")
    run = root / "run"
    options = {"model": str(kenlm_model_dir)}
    api.score(demo_corpus.pool_dir, run, options=options, id_column="id", runtime=LOCAL)
    ccnet = {**options, "mode": "ccnet_compat"}
    api.score(demo_corpus.pool_dir, run, options=ccnet, scorer_id="doc", id_column="id",
              runtime=LOCAL)  # fmt: skip
    return root, run


def _select(run, out, selector, *sets, extra=()):
    args = ["--run", str(run), "--output", str(out), "--selector", selector,
            "--executor", "local", *extra]  # fmt: skip
    for s in sets:
        args += ["--set", s]
    proc = run_cli_select(*args)
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "manifest.json").read_text()), proc


def _outputs(out):
    return pq.read_table(sorted(out.glob("*.parquet")))


def _balanced(manifest) -> None:
    t = manifest["totals"]
    assert t["kept"] + t["dropped"] + t["rejected"] == t["read"]


def test_ccnet_buckets_label_and_select(scored_run, demo_corpus) -> None:
    root, run = scored_run
    manifest, _ = _select(
        run,
        root / "buckets",
        "ccnet_buckets",
        extra=("--scorer-id", "kenlm", "--group-by", "domain"),
    )
    _balanced(manifest)
    table = _outputs(root / "buckets")
    n = pq.read_table(demo_corpus.pool_dir).num_rows
    assert table.num_rows == n  # labelling only, by default
    counts = {
        b: table["datafilter_bucket"].to_pylist().count(b) for b in ("head", "middle", "tail")
    }
    assert counts["head"] == pytest.approx(0.3 * n, abs=12)  # 11 groups, one per-group rounding
    assert counts["middle"] == pytest.approx(0.3 * n, abs=12)
    head_only, _ = _select(
        run,
        root / "head",
        "ccnet_buckets",
        "keep=[head]",
        extra=("--scorer-id", "kenlm", "--group-by", "domain"),
    )
    assert head_only["totals"]["kept"] == counts["head"]
    assert set(head_only["totals"]["dropped_by_reason"]) == {
        "ccnet_buckets:middle", "ccnet_buckets:tail"
    }  # fmt: skip


def test_perplexity_sampling_is_deterministic_and_hits_its_target(scored_run) -> None:
    root, run = scored_run
    first, _ = _select(
        run,
        root / "s1",
        "perplexity_sampling",
        "target_keep=0.3",
        extra=("--scorer-id", "kenlm", "--seed", "7"),
    )
    second, _ = _select(
        run,
        root / "s2",
        "perplexity_sampling",
        "target_keep=0.3",
        extra=("--scorer-id", "kenlm", "--seed", "7"),
    )
    other, _ = _select(
        run,
        root / "s3",
        "perplexity_sampling",
        "target_keep=0.3",
        extra=("--scorer-id", "kenlm", "--seed", "8"),
    )
    _balanced(first)
    assert first["totals"]["kept"] / first["totals"]["read"] == pytest.approx(0.3, abs=0.04)
    for p in sorted((root / "s1").glob("*.parquet")):
        assert p.read_bytes() == (root / "s2" / p.name).read_bytes()
    ids = set(_outputs(root / "s1")["id"].to_pylist())
    assert ids != set(_outputs(root / "s3")["id"].to_pylist())
    probs = _outputs(root / "s1")["datafilter_keep_prob"].to_pylist()
    assert all(0 < p <= 1 for p in probs)


def test_harmful_outlier_flags_with_two_scorers(scored_run) -> None:
    root, run = scored_run
    manifest, proc = _select(
        run,
        root / "harm",
        "harmful_outlier",
        "action=flag",
        "clean_scorer_id=doc",
        extra=("--scorer-id", "kenlm"),
    )
    _balanced(manifest)
    assert manifest["extra_scorers"].keys() == {"doc"}
    entry = manifest["thresholds"]["groups"]["__all__"]
    assert {"mode", "fit", "cut", "flagged_share", "reason", "marks"} <= entry.keys()
    assert entry["mode"] == "automatic"
    table = _outputs(root / "harm")
    assert table.num_rows == manifest["totals"]["read"]  # flag: everything valid is kept
    assert {"datafilter_harmful_flag", "datafilter_harmful_z"} <= set(table.column_names)
    flagged = sum(table["datafilter_harmful_flag"].to_pylist())
    # One line says what decided: the cut and what it flags, or why nothing is flagged.
    if entry["cut"] is None:
        assert flagged == 0
        assert f"select: warning: group '__all__': automatic: nothing flagged: {entry['reason']}" \
            in proc.stderr
    else:
        assert flagged > 0 and "select: group '__all__': automatic cut" in proc.stderr


def test_unknown_extra_scorer_is_a_clear_error(scored_run) -> None:
    root, run = scored_run
    proc = run_cli("select", "--run", str(run), "--output", str(root / "x"), "--scorer-id",
                   "kenlm", "--selector", "harmful_outlier", "--set", "clean_scorer_id=nope",
                   "--executor", "local")  # fmt: skip
    assert proc.returncode == 2
    assert "no scores named 'nope'" in proc.stderr


def test_run_config_with_sampling(scored_run, demo_corpus, kenlm_model_dir) -> None:
    root, _ = scored_run
    config = {
        "input": str(demo_corpus.pool_dir),
        "run_dir": str(root / "run-config"),
        "score": {"options": {"model": str(kenlm_model_dir)}, "id_column": "id"},
        "select": {"output": str(root / "run-out"), "selector": "perplexity_sampling",
                   "options": {"method": "stepwise"}, "report_by": "source"},
        "ray": {"executor": "local"},
    }  # fmt: skip
    path = root / "sampling.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = run_cli("run", str(path))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["select"]["kept"] / result["select"]["read"] == pytest.approx(0.5, abs=0.05)
