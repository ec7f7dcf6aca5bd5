"""Perplexity correlations on real KenLM scores of the demo corpus: the per-domain sample, the
DuckDB bpb aggregation, the weights and the selection through the CLI, and fastText distillation.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from helpers_corpus import (
    LOCAL,
    files_under,
    plan_and_select,
    run_cli,
    run_cli_select,
    write_shard,
)
from pyarrow import csv

from datafilter import api
from datafilter.correlation.domains import hosts_of, registered_domain
from datafilter.errors import ConfigError

# Sites per demo domain: several hosts of one registered domain, to exercise URL grouping.
SITES = {
    "business": ["www.ft.com", "markets.ft.com"],
    "entertainment": ["www.variety.com"],
    "politics": ["news.bbc.co.uk", "www.bbc.co.uk"],
    "sport": ["sport.bbc.co.uk", "www.espn.com"],
    "tech": ["www.wired.com", "arstechnica.com"],
}


def _cli(*args: str) -> dict:
    proc = run_cli_select(*args[1:]) if args[0] == "select" else run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def corr(tmp_path_factory, demo_corpus, kenlm_model_dir):
    """The demo pool with a URL column, its per-domain sample scored by two scorer ids, and the
    whole pool scored once (tokens per domain, selection)."""
    root = tmp_path_factory.mktemp("corr")
    pool = pq.read_table(demo_corpus.pool_dir)
    urls = []
    for i, (doc_id, domain) in enumerate(
        zip(pool["id"].to_pylist(), pool["domain"].to_pylist(), strict=True)
    ):
        hosts = SITES.get(domain, [f"{domain}.example.org"])
        urls.append(f"https://{hosts[i % len(hosts)]}/{doc_id}")
    pool = pool.append_column("url", pa.array(urls))
    corpus = root / "corpus"
    size = -(-pool.num_rows // 3)
    for k in range(3):
        write_shard(corpus / f"part-{k}.parquet", pool.slice(k * size, size))
    model = {"model": str(kenlm_model_dir)}
    _cli(
        "corr-sample",
        "--input",
        corpus,
        "--output",
        root / "sample",
        "--domain-column",
        "domain",
        "--per-domain",
        "12",
        "--id-column",
        "id",
        "-q",
    )
    for sid, mode in (("line", "per_line"), ("doc", "ccnet_compat")):
        options = {**model, "mode": mode}
        api.score(
            root / "sample",
            root / "sample-run",
            options=options,
            scorer_id=sid,
            id_column="id",
            runtime=LOCAL,
        )
    api.score(
        corpus,
        root / "run",
        options=model,
        scorer_id="kenlm",
        id_column="id",
        runtime=LOCAL,
    )
    return root, corpus, pool


def _outputs(folder):
    return pq.read_table(sorted(folder.glob("*.parquet")))


def _scores(run, sid):
    """Score rows of a run with their input columns, by reading the files in Python."""
    record = json.loads((run / "run.json").read_text())
    rows = []
    for score_file in sorted((run / "scores" / sid).rglob("*.parquet")):
        rel = score_file.relative_to(run / "scores" / sid)
        scores = pq.read_table(score_file).to_pylist()
        inputs = pq.read_table(f"{record['input']}/{rel}").to_pylist()
        for s, i in zip(scores, inputs, strict=True):
            rows.append({**i, **s, "score_file": str(score_file)})
    return rows


def test_sample_is_fixed_per_domain_and_seed(corr) -> None:
    root, corpus, pool = corr
    summary = json.loads((root / "sample" / "_sample.json").read_text())
    table = pq.read_table(root / "sample")
    counts = defaultdict(int)
    for d in table["domain"].to_pylist():
        counts[d] += 1
    available = defaultdict(int)
    for d in pool["domain"].to_pylist():
        available[d] += 1
    assert dict(counts) == {d: min(12, n) for d, n in available.items()}
    assert summary["documents"] == table.num_rows
    assert table.schema.names == pool.schema.names
    again = _cli(
        "corr-sample",
        "--input",
        corpus,
        "--output",
        root / "sample-again",
        "--domain-column",
        "domain",
        "--per-domain",
        "12",
        "--id-column",
        "id",
        "-q",
    )
    assert again["documents"] == summary["documents"]
    assert files_under(root / "sample") == files_under(root / "sample-again")
    other = api.corr_sample(
        corpus,
        root / "sample-seed1",
        domain_column="domain",
        per_domain=12,
        seed=1,
        id_column="id",
    )
    assert other["documents"] == summary["documents"]
    ids = set(table["id"].to_pylist())
    assert set(pq.read_table(root / "sample-seed1")["id"].to_pylist()) != ids
    by_url = api.corr_sample(
        corpus, root / "sample-url", url_column="url", per_domain=5, id_column="id"
    )
    assert by_url["domains"]["bbc.co.uk"]["sampled"] == 5
    assert by_url["domains"]["bbc.co.uk"]["available"] == available["politics"] + sum(
        1
        for u, d in zip(pool["url"].to_pylist(), pool["domain"].to_pylist(), strict=True)
        if d == "sport" and "bbc.co.uk/" in u
    )


@pytest.mark.parametrize("average", ["bytes", "documents"])
def test_bpb_per_domain_matches_a_plain_computation(corr, average) -> None:
    root, _, _ = corr
    out = root / f"bpb-{average}.csv"
    summary = _cli(
        "corr-bpb",
        "--run",
        root / "sample-run",
        "--output",
        out,
        "--domain-column",
        "domain",
        "--average",
        average,
        "-q",
    )
    assert summary["models"] == ["doc", "line"]
    got = csv.read_csv(out)
    for model in ("doc", "line"):
        rows = [r for r in _scores(root / "sample-run", model) if r["reject_reason"] is None]
        expected = {}
        for domain in {r["domain"] for r in rows}:
            mine = [r for r in rows if r["domain"] == domain]
            if average == "bytes":
                bits = -sum(r["logprob_sum"] for r in mine) / math.log(2)
                expected[domain] = bits / sum(r["n_bytes"] for r in mine)
            else:
                expected[domain] = float(np.mean([r["bpb"] for r in mine]))
        table = dict(zip(got["domain"].to_pylist(), got[model].to_pylist(), strict=True))
        assert table.keys() == expected.keys()
        for domain, value in expected.items():
            assert table[domain] == pytest.approx(value, rel=1e-12)


def test_bpb_by_registered_domain_of_url(corr) -> None:
    root, _, _ = corr
    out = root / "bpb-url.parquet"
    api.corr_bpb(root / "sample-run", out, url_column="url", models=["line"])
    got = pq.read_table(out)
    rows = [r for r in _scores(root / "sample-run", "line") if r["reject_reason"] is None]
    hosts = hosts_of(pa.array([r["url"] for r in rows])).to_pylist()
    groups = defaultdict(list)
    for r, h in zip(rows, hosts, strict=True):
        groups[registered_domain(h)].append(r)
    assert set(got["domain"].to_pylist()) == set(groups)
    assert "bbc.co.uk" in groups and "ft.com" in groups
    values = dict(zip(got["domain"].to_pylist(), got["line"].to_pylist(), strict=True))
    for domain, members in groups.items():
        bits = -sum(r["logprob_sum"] for r in members) / math.log(2)
        assert values[domain] == pytest.approx(bits / sum(r["n_bytes"] for r in members), 1e-12)


GOOD, BAD = ("politics", "business", "sport"), ("noise", "spam", "tokens")


def _tables(root, domains, n_models=12):
    """A bpb and a benchmark table in which loss on GOOD domains rises with the error and loss
    on BAD domains falls with it."""
    rng = np.random.default_rng(5)
    error = np.linspace(0.2, 0.7, n_models)
    models = [f"model-{k}" for k in range(n_models)]
    columns = {"domain": domains}
    for k, m in enumerate(models):
        values = []
        for d in domains:
            slope = 2.0 if d in GOOD else -2.0 if d in BAD else 0.0
            values.append(1.5 + slope * error[k] + rng.normal(0, 0.05))
        columns[m] = values
    pq.write_table(pa.table(columns), root / "bpb-synthetic.parquet")
    bench = pa.table({"model": models, "acc": 1 - error, "acc2": 1 - error + 0.01})
    pq.write_table(bench, root / "bench.parquet")
    return root / "bpb-synthetic.parquet", root / "bench.parquet"


def test_weights_and_selection_through_the_cli(corr) -> None:
    root, _, pool = corr
    domains = sorted(set(pool["domain"].to_pylist()))
    bpb, bench = _tables(root, domains)
    weights = root / "weights.parquet"
    summary = _cli(
        "corr-weights",
        "--bpb",
        bpb,
        "--benchmarks",
        bench,
        "--output",
        weights,
        "--tokens-run",
        root / "run",
        "--domain-column",
        "domain",
        "--keep-ratio",
        "0.3",
        "-q",
    )
    table = {r["domain"]: r for r in pq.read_table(weights).to_pylist()}
    assert {d for d, r in table.items() if r["rank"] <= 3} == set(GOOD)
    assert all(table[d]["estimate"] < 0 for d in BAD)
    assert summary["benchmarks"]["columns"] == ["acc", "acc2"]
    out = root / "selected"
    _cli(
        "select",
        "--run",
        root / "run",
        "--output",
        out,
        "--selector",
        "perplexity_correlation",
        "--set",
        f"weights={weights}",
        "--group-by",
        "domain",
        "--executor",
        "local",
        "-q",
    )
    manifest = json.loads((out / "manifest.json").read_text())
    t = manifest["totals"]
    assert t["kept"] + t["dropped"] + t["rejected"] == t["read"]
    kept = _outputs(out)
    assert set(kept["datafilter_corr_domain"].to_pylist()) == {
        d for d, r in table.items() if r["selected"]
    }
    # Each domain: the documents in (id_hash, score shard, row) order while within its quota.
    rows = [r for r in _scores(root / "run", "kenlm") if r["reject_reason"] is None]
    expected = set()
    for domain, entry in table.items():
        members = sorted(
            (r for r in rows if r["domain"] == domain),
            key=lambda r: (r["id_hash"], r["score_file"], r["row"]),
        )
        total = 0
        for r in members:
            total += r["n_tokens"]
            if total > entry["quota"]:
                break
            expected.add(r["id"])
        kept_tokens = manifest["groups"][domain]["kept_tokens"]
        assert kept_tokens <= entry["quota"]
        if entry["quota"] == entry["amount"]:
            assert kept_tokens == entry["amount"]
    assert set(kept["id"].to_pylist()) == expected
    assert sum(manifest["groups"][d]["kept_tokens"] for d in table) <= summary["budget"]
    reasons = t["dropped_by_reason"]
    assert reasons["perplexity_correlation:domain_not_selected"] > 0
    first = files_under(out, skip=lambda p: p.parts[0] == "_state")
    _cli(
        "select",
        "--run",
        root / "run",
        "--output",
        out,
        "--selector",
        "perplexity_correlation",
        "--set",
        f"weights={weights}",
        "--group-by",
        "domain",
        "--executor",
        "local",
        "-q",
    )
    assert files_under(out, skip=lambda p: p.parts[0] == "_state") == first


def test_selection_by_url_domain(corr) -> None:
    root, _, pool = corr
    hosts = hosts_of(pool["url"]).to_pylist()
    domains = sorted({registered_domain(h) for h in hosts})
    bpb, bench = _tables(root, domains)
    weights = root / "weights-url.parquet"
    api.corr_weights(
        bpb, bench, weights, tokens_run=root / "run", url_column="url", keep_ratio=0.4
    )
    chosen = {r["domain"] for r in pq.read_table(weights).to_pylist() if r["selected"]}
    manifest = plan_and_select(
        root / "run",
        root / "selected-url",
        selector="perplexity_correlation",
        options={"weights": str(weights), "domain_from": "url"},
        group_by="url",
        report_by="domain",
        runtime=LOCAL,
    )
    kept = _outputs(root / "selected-url")
    assert set(kept["datafilter_corr_domain"].to_pylist()) <= chosen
    kept_tokens = sum(e["kept_amount"] for e in manifest["thresholds"]["domains"].values())
    assert 0 < kept_tokens <= manifest["thresholds"]["budget"]


def test_cli_errors_are_one_line(corr, tmp_path) -> None:
    root, _, pool = corr
    domains = sorted(set(pool["domain"].to_pylist()))
    bpb, _ = _tables(tmp_path, domains, n_models=4)
    (tmp_path / "bench.csv").write_text(
        "model,acc\n" + "".join(f"model-{k},0.{k + 3}\n" for k in range(4))
    )
    args = [
        "corr-weights",
        "--bpb",
        bpb,
        "--benchmarks",
        tmp_path / "bench.csv",
        "--output",
        tmp_path / "w.parquet",
        "--tokens-run",
        root / "run",
        "--domain-column",
        "domain",
        "--budget",
        "1000",
    ]
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("datafilter: error: only 4 model(s)")
    assert run_cli(*args, "--min-models", "4").returncode == 0
    proc = run_cli(*args[:-2], "--budget", "10000000", "--min-models", "4")
    assert proc.returncode == 2 and "exceeds the" in proc.stderr
    proc = run_cli_select(
        "--run",
        root / "run",
        "--output",
        tmp_path / "out",
        "--selector",
        "perplexity_correlation",
        "--set",
        f"weights={tmp_path / 'w.parquet'}",
        "--executor",
        "local",
    )
    assert proc.returncode == 2 and "needs --group-by" in proc.stderr


def test_distilled_selection_takes_the_most_probable_documents(corr) -> None:
    pytest.importorskip("fasttext")
    root, _, pool = corr
    domains = sorted(set(pool["domain"].to_pylist()))
    bpb, bench = _tables(root, domains)
    weights = root / "weights-distill.parquet"
    api.corr_weights(
        bpb,
        bench,
        weights,
        tokens_run=root / "run",
        domain_column="domain",
        keep_ratio=0.3,
    )
    summary = _cli(
        "corr-distill",
        "--run",
        root / "run",
        "--weights",
        weights,
        "--output",
        root / "classifier",
        "--domain-column",
        "domain",
        "--epoch",
        "3",
        "-q",
    )
    assert summary["train"]["include"] > 0 and summary["train"]["exclude"] > 0
    assert summary["test"]["accuracy"] > 0.6
    manifest = plan_and_select(
        root / "run",
        root / "selected-distill",
        selector="perplexity_correlation",
        options={"weights": str(weights), "distill": str(root / "classifier")},
        group_by="domain",
        runtime=LOCAL,
    )
    plan = manifest["thresholds"]["distill"]
    kept = _outputs(root / "selected-distill")
    budget = manifest["thresholds"]["budget"]
    assert 0 < plan["kept_amount"] <= budget
    assert kept.num_rows == plan["kept_documents"]
    rows = [r for r in _scores(root / "run", "kenlm") if r["reject_reason"] is None]
    p_of = {}
    for shard in sorted((root / "classifier" / "probabilities").glob("*.parquet")):
        p = pq.read_table(shard)["p_include"].to_pylist()
        inputs = pq.read_table(root / "corpus" / shard.name)["id"].to_pylist()
        p_of.update(zip(inputs, p, strict=True))
    ranked = sorted(rows, key=lambda r: (-p_of[r["id"]], r["id_hash"], r["score_file"], r["row"]))
    total, expected = 0, set()
    for r in ranked:
        total += r["n_tokens"]
        if total > budget:
            break
        expected.add(r["id"])
    assert set(kept["id"].to_pylist()) == expected
    selected = {d for d, w in manifest["thresholds"]["weights"].items() if w > 0}
    share = np.mean([d in selected for d in kept["domain"].to_pylist()])
    assert share > 0.7  # the classifier mostly takes documents of the chosen domains


def test_corr_run_config_through_the_cli(corr, kenlm_model_dir, tmp_path) -> None:
    root, corpus, _ = corr
    (tmp_path / "bench.csv").write_text("model,acc\nline,0.62\ndoc,0.55\n")
    model = str(kenlm_model_dir)
    config = {
        "input": str(corpus),
        "work_dir": str(tmp_path / "work"),
        "domain_column": "domain",
        "id_column": "id",
        "sample": {"per_domain": 8},
        "models": {
            "line": {"scorer": "kenlm", "options": {"model": model}},
            "doc": {"scorer": "kenlm", "options": {"model": model, "mode": "ccnet_compat"}},
        },
        "corpus_scorer": "line",
        "benchmarks": {"table": str(tmp_path / "bench.csv")},
        "weights": {"keep_ratio": 0.3, "min_models": 2},
        "select": {"output": str(tmp_path / "out")},
        "ray": {"executor": "local"},
    }
    try:
        import fasttext  # noqa: F401

        config["distill"] = {"epoch": 2}
    except ImportError:
        pass
    path = tmp_path / "corr.yaml"
    path.write_text(yaml.safe_dump(config))
    result = _cli("corr-run", path, "-q")
    assert result["bpb"] == {"models": 2, "domains": result["sample"]["domains"]}
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["selector"]["name"] == "perplexity_correlation"
    assert result["select"]["kept"] == manifest["totals"]["kept"] > 0
    kept_tokens = sum(g["kept_tokens"] for g in manifest["groups"].values())
    assert kept_tokens <= result["weights"]["budget"]
    assert ("distill" in result) == ("distill" in config)
    bad = {**config, "weights": {"keep_ratio": 0.3}}  # min_models 10 by default
    path.write_text(yaml.safe_dump(bad))
    proc = run_cli("corr-run", path, "-q")
    assert proc.returncode == 2 and "only 2 model(s)" in proc.stderr


def test_selection_counts_bytes_when_asked(corr) -> None:
    root, _, pool = corr
    bpb, bench = _tables(root, sorted(set(pool["domain"].to_pylist())))
    weights = root / "weights-bytes.parquet"
    api.corr_weights(
        bpb,
        bench,
        weights,
        tokens_run=root / "run",
        domain_column="domain",
        unit="bytes",
        budget=400_000,
    )
    manifest = plan_and_select(
        root / "run",
        root / "selected-bytes",
        selector="perplexity_correlation",
        options={"weights": str(weights)},
        group_by="domain",
        runtime=LOCAL,
    )
    kept_bytes = sum(g["kept_bytes"] for g in manifest["groups"].values())
    assert 0.95 * 400_000 <= kept_bytes <= 400_000
    with pytest.raises(ConfigError, match="records no budget in tokens"):
        plan_and_select(
            root / "run",
            root / "selected-bytes-2",
            selector="perplexity_correlation",
            options={"weights": str(weights), "unit": "tokens"},
            group_by="domain",
            runtime=LOCAL,
        )
