"""Perplexity correlations: the bpb and benchmark tables, their errors, domains of URLs, and the
weights table."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datafilter.aggregate import NULL_GROUP
from datafilter.correlation.domains import HOST_PATTERN, hosts_of, registered_domain
from datafilter.correlation.tables import align, load_benchmarks, load_bpb_table
from datafilter.correlation.weights import domain_weights
from datafilter.errors import ConfigError, InputError

MODELS = [f"m{k:02d}" for k in range(12)]


def _bpb_csv(path, models=MODELS, domains=("a.com", "b.org", "c.net"), seed=0, cell=None):
    rng = np.random.default_rng(seed)
    lines = ["domain," + ",".join(models)]
    for j, d in enumerate(domains):
        values = [f"{v:.4f}" for v in rng.uniform(0.8, 2.5, size=len(models))]
        if cell is not None and cell[0] == j:
            values[cell[1]] = cell[2]
        lines.append(d + "," + ",".join(values))
    path.write_text("\n".join(lines) + "\n")
    return path


def _bench_csv(path, models=MODELS, seed=1):
    rng = np.random.default_rng(seed)
    rows = ["model,arc,hellaswag,piqa"]
    rows += [f"{m}," + ",".join(f"{v:.3f}" for v in rng.uniform(0.25, 0.9, 3)) for m in models]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_bpb_table_reads_csv_and_parquet(tmp_path) -> None:
    table = load_bpb_table(_bpb_csv(tmp_path / "bpb.csv"))
    assert table.models == MODELS and table.domains == ["a.com", "b.org", "c.net"]
    assert table.X.shape == (12, 3)
    pq.write_table(table.to_arrow(), tmp_path / "bpb.parquet")
    again = load_bpb_table(tmp_path / "bpb.parquet")
    np.testing.assert_array_equal(again.X, table.X)


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ((1, 3, ""), "model 'm03' has no value .* 1 domain\\(s\\): b.org"),
        ((2, 0, "nan"), "model 'm00' has no value .* c.net"),
        ((0, 5, "-1.2"), "model 'm05' has negative bits per byte for domain\\(s\\) a.com"),
        ((0, 5, "high"), "column 'm05' has type string; expected numbers"),
    ],
)
def test_bpb_table_errors_name_model_and_domain(tmp_path, cell, message) -> None:
    path = _bpb_csv(tmp_path / "bpb.csv", cell=cell)
    with pytest.raises(InputError, match=message) as info:
        load_bpb_table(path)
    assert str(path) in str(info.value)


def test_bpb_table_structure_errors(tmp_path) -> None:
    with pytest.raises(InputError, match="repeated 'domain' value\\(s\\): a.com"):
        load_bpb_table(_bpb_csv(tmp_path / "dup.csv", domains=("a.com", "b.org", "a.com")))
    (tmp_path / "nodomain.csv").write_text("site,m1\nx,1.0\n")
    with pytest.raises(InputError, match="no 'domain' column"):
        load_bpb_table(tmp_path / "nodomain.csv")
    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(InputError, match="unknown table format"):
        load_bpb_table(tmp_path / "t.json")
    with pytest.raises(InputError, match="file not found"):
        load_bpb_table(tmp_path / "missing.csv")


def test_benchmarks_choice_and_average(tmp_path) -> None:
    from pyarrow import csv

    path = _bench_csv(tmp_path / "bench.csv")
    table = csv.read_csv(path)
    acc = np.column_stack([table[c].to_numpy() for c in ("arc", "piqa")])
    mean = load_benchmarks(path, columns=["arc", "piqa"])
    np.testing.assert_allclose(mean.y, np.mean(1 - acc, axis=1))
    median = load_benchmarks(path, average="median")
    all3 = np.column_stack([table[c].to_numpy() for c in ("arc", "hellaswag", "piqa")])
    np.testing.assert_allclose(median.y, np.median(1 - all3, axis=1))
    as_error = load_benchmarks(path, columns=["arc"], metric="error")
    np.testing.assert_allclose(as_error.y, table["arc"].to_numpy())
    with pytest.raises(InputError, match="benchmark column\\(s\\) mmlu not found"):
        load_benchmarks(path, columns=["mmlu"])


def test_benchmark_errors(tmp_path) -> None:
    (tmp_path / "pct.csv").write_text("model,arc\nm1,55.0\nm2,0.4\n")
    with pytest.raises(InputError, match="outside \\[0, 1\\] for model\\(s\\) m1.*percentages"):
        load_benchmarks(tmp_path / "pct.csv")
    (tmp_path / "nan.csv").write_text("model,arc,piqa\nm1,0.5,\nm2,0.4,0.6\n")
    with pytest.raises(InputError, match="benchmark 'piqa' has no value .* model\\(s\\) m1"):
        load_benchmarks(tmp_path / "nan.csv")
    (tmp_path / "notes.csv").write_text("model,family,arc\nm1,llama,0.5\nm2,gpt,0.4\n")
    assert load_benchmarks(tmp_path / "notes.csv").columns == ["arc"]
    with pytest.raises(InputError, match="column 'family' has type string"):
        load_benchmarks(tmp_path / "notes.csv", columns=["family"])
    (tmp_path / "dup.csv").write_text("model,arc\nm1,0.5\nm1,0.4\n")
    with pytest.raises(InputError, match="repeated 'model'"):
        load_benchmarks(tmp_path / "dup.csv")


def test_align_names_and_model_count(tmp_path) -> None:
    bpb = load_bpb_table(_bpb_csv(tmp_path / "bpb.csv"))
    renamed = [m.upper() if m == "m07" else m for m in MODELS]
    bench = load_benchmarks(_bench_csv(tmp_path / "bench.csv", models=renamed))
    with pytest.raises(InputError, match="benchmark table .*'m07' \\(did you mean 'M07'"):
        align(bpb, bench)
    bench = load_benchmarks(_bench_csv(tmp_path / "bench.csv"))
    models, X, y = align(bpb, bench)
    assert models == MODELS and X.shape == (12, 3) and len(y) == 12
    with pytest.raises(InputError, match="only 4 model\\(s\\); at least 10 are required"):
        align(bpb, bench, models=MODELS[:4])
    models, X, _ = align(bpb, bench, models=["m03", "m01"], min_models=2)
    np.testing.assert_array_equal(X, bpb.X[[3, 1]])
    with pytest.raises(InputError, match="not in the bpb table .*'m99'"):
        align(bpb, bench, models=["m99", "m01"], min_models=2)
    (tmp_path / "flat.csv").write_text("model,arc\n" + "".join(f"{m},0.5\n" for m in MODELS))
    with pytest.raises(InputError, match="same benchmark error"):
        align(bpb, load_benchmarks(tmp_path / "flat.csv"))


URLS = [
    "https://News.BBC.co.uk/sport/1.html",
    "http://user:pw@www.example.com:8080/a?b#c",
    "example.com/path/page",
    "forums.example.com.",
    "https://foo.blogspot.com/2020",
    "http://127.0.0.1/x",
    "http://localhost:8000/",
    "  https://spaced.example.org  ",
    "mailto:someone@example.com",
    "",
    None,
]


def test_registered_domains() -> None:
    domains = [registered_domain(h) for h in hosts_of(pa.array(URLS)).to_pylist()]
    assert domains == [
        "bbc.co.uk",
        "example.com",
        "example.com",
        "example.com",
        "blogspot.com",  # private suffixes (blogspot.com) are not public suffixes here
        "127.0.0.1",
        "localhost",
        "example.org",
        "example.com",  # mailto:someone@example.com: the part after '@' is the host
        NULL_GROUP,
        NULL_GROUP,
    ]


def test_duckdb_and_arrow_read_the_same_hosts() -> None:
    con = duckdb.connect()
    from_duckdb = [
        r[0]
        for r in con.execute(
            "SELECT regexp_extract(u, $p, 1) FROM (SELECT unnest($urls) AS u)",
            {"p": HOST_PATTERN, "urls": URLS},
        ).fetchall()
    ]
    from_arrow = hosts_of(pa.array(URLS)).to_pylist()
    for a, b in zip(from_duckdb, from_arrow, strict=True):
        assert registered_domain(a or None) == registered_domain(b)


def test_weights_table(tmp_path) -> None:
    bpb = load_bpb_table(_bpb_csv(tmp_path / "bpb.csv", domains=("a", "b", "c", "d"), seed=4))
    bench = load_benchmarks(_bench_csv(tmp_path / "bench.csv"))
    amounts = {"a": 400, "b": 300, "c": 200, "d": 0, "e": 100}  # d has no data, e no estimate
    table, summary = domain_weights(bpb, bench, amounts, budget=500, projection="linear")
    rows = {r["domain"]: r for r in table.to_pylist()}
    assert rows["d"]["status"] == "no_data" and rows["d"]["weight"] == 0
    assert rows["e"]["status"] == "no_estimate" and rows["e"]["weight"] == 0
    for d in "abc":
        assert rows[d]["tau"] == amounts[d] / 500
    assert abs(sum(r["weight"] for r in rows.values()) - 1) < 1e-6
    assert sum(r["quota"] for r in rows.values()) == 500
    chosen = [r for r in rows.values() if r["selected"]]
    best = min(chosen, key=lambda r: r["rank"])
    assert best["quota"] == min(amounts[best["domain"]], 500)
    assert summary["budget"] == 500 and summary["domains_estimated"] == 3
    _, by_ratio = domain_weights(bpb, bench, amounts, keep_ratio=0.5)
    assert by_ratio["budget"] == 500
    with pytest.raises(InputError, match="budget \\(950\\) exceeds the 900 tokens"):
        domain_weights(bpb, bench, amounts, budget=950)
    with pytest.raises(ConfigError, match="exactly one of a budget and a keep ratio"):
        domain_weights(bpb, bench, amounts)
