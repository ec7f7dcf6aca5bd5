"""The bounded-memory order statistics against a straightforward full sort, DuckDB and ScoreStats.

Random score shards with heavy ties (rounded scores, one value shared by a third of the rows,
repeated id hashes), rejected rows (NaN scores and a reason), null scores, a null group, an
empty shard and input shards whose row groups differ from their score shards'. Memory budgets
from ample down to a few bytes force every path: collecting rows, counting sub-ranges over
each key word, counting distinct values; the answers must not change by a bit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datafilter.aggregate import duckdb_fuses_interpolation
from datafilter.errors import InputError
from datafilter.order_stats import OrderStats as Engine
from datafilter.order_stats import ScoreShards
from datafilter.order_stats import scan as scan_module
from datafilter.order_stats.encoding import (
    decode,
    encode,
    interpolate,
    quantile_ranks,
)
from datafilter.scorers.columns import SCORE_SCHEMA

# DuckDB's interpolation as the installed DuckDB rounds it (what formula='duckdb' matches).
OrderStats = partial(Engine, fused=duckdb_fuses_interpolation())
QS = [i / 100 for i in range(101)] + [0.333, 1 / 3, 0.0001, 0.9999]
GROUP_NAMES = np.array(["news", "web", "", "wiki", None], dtype=object)


@dataclass
class Corpus:
    """The shards and, for the reference, every valid row as arrays."""

    shards: ScoreShards
    group: np.ndarray  # group name per valid row
    ppl: np.ndarray
    bpb: np.ndarray  # NaN where null
    bpb_null: np.ndarray
    id_hash: np.ndarray
    file: np.ndarray  # score file name
    row: np.ndarray


def write_corpus(root: Path, seed: int, sizes=(900, 0, 1, 2500, 40, 1300), groups=GROUP_NAMES,
                 grouped: bool = True) -> Corpus:
    rng = np.random.default_rng(seed)
    (root / "scores").mkdir(parents=True)
    (root / "input").mkdir(parents=True)
    score_files, input_files, parts = [], [], []
    for i, n in enumerate(sizes):
        ppl = np.round(rng.lognormal(5.0, 1.0, n), 1)
        ppl[rng.random(n) < 0.3] = 150.0  # one heavy tie
        bpb = np.round(rng.normal(1.0, 0.5, n), 2)  # negative values and -0.0 too
        bpb[rng.random(n) < 0.02] = -0.0
        bpb_null = rng.random(n) < 0.05
        rejected = rng.random(n) < 0.1
        ppl[rejected] = np.nan
        bpb[rejected] = np.nan
        id_hash = rng.integers(0, 2**64, n, dtype=np.uint64)
        repeat = rng.random(n) < 0.5  # repeated ids: ties on (metric, id_hash) too
        id_hash[repeat] = rng.integers(0, 40, int(repeat.sum())).astype(np.uint64) << np.uint64(58)
        rows = rng.permutation(n).astype(np.int64) - (n // 3)  # any order, negatives too
        group = rng.choice(groups, n) if grouped else np.full(n, "__all__", dtype=object)
        table = pa.table(
            {
                "doc_id": [f"d{i}-{r}" for r in range(n)],
                "row": rows,
                "id_hash": pa.array(id_hash, pa.uint64()),
                "logprob_sum": np.zeros(n),
                "n_tokens": np.ones(n, dtype=np.int64),
                "n_bytes": np.ones(n, dtype=np.int64),
                "ppl": ppl,
                "bpb": pa.array(bpb, pa.float64(), mask=bpb_null),
                "reject_reason": pa.array(np.where(rejected, "empty_text", None), pa.string()),
            },
            schema=SCORE_SCHEMA,
        )
        score = root / "scores" / f"part-{i:02d}.parquet"
        pq.write_table(table, score, row_group_size=300)
        source = root / "input" / f"part-{i:02d}.parquet"
        pq.write_table(pa.table({"domain": pa.array(group, pa.string())}), source,
                       row_group_size=170)
        score_files.append(str(score))
        input_files.append(str(source))
        keep = ~rejected
        parts.append((np.where(pd_isnull(group), "__null__", group)[keep], ppl[keep],
                      np.where(bpb_null, np.nan, bpb)[keep], bpb_null[keep], id_hash[keep],
                      np.full(int(keep.sum()), str(score), dtype=object), rows[keep]))
    cat = [np.concatenate([p[k] for p in parts]) for k in range(7)]
    group_by = "domain" if grouped else None
    shards = ScoreShards(score_files, input_files if grouped else None, group_by)
    return Corpus(shards, cat[0].astype(str), *cat[1:])


def pd_isnull(values: np.ndarray) -> np.ndarray:
    return np.array([v is None for v in values], dtype=bool)


def reference_quantiles(corpus: Corpus, metric: str, qs) -> dict[str, list[float]]:
    values = corpus.ppl if metric == "ppl" else corpus.bpb
    null = np.zeros(len(values), bool) if metric == "ppl" else corpus.bpb_null
    fused = duckdb_fuses_interpolation()
    out = {}
    for g in sorted(set(corpus.group.tolist())):
        v = np.sort(values[(corpus.group == g) & ~null])
        if not len(v):
            continue
        row = []
        for q in qs:
            lo, hi, d = quantile_ranks(len(v), q)
            row.append(float(v[lo]) if lo == hi else interpolate(v[lo], v[hi], d, fused))
        out[g] = row
    return out


def reference_order(corpus: Corpus, group: str, metric: str = "ppl") -> np.ndarray:
    """Indices of the group's valid rows in ORDER BY metric, id_hash, score_file, row."""
    mine = np.flatnonzero(corpus.group == group)
    values = corpus.ppl if metric == "ppl" else corpus.bpb
    keys = encode(values[mine])
    if metric == "bpb":
        keys[corpus.bpb_null[mine]] = np.iinfo(np.uint64).max
    return mine[np.lexsort((corpus.row[mine], corpus.file[mine], corpus.id_hash[mine], keys))]


def same_bits(got: list[float], want: list[float]) -> bool:
    """Bit for bit, but for the sign of a zero: DuckDB keeps whichever of -0.0 and 0.0 (equal
    in its order) its selection lands on."""
    a, b = np.asarray(got, np.float64) + 0.0, np.asarray(want, np.float64) + 0.0
    return a.shape == b.shape and bool((a.view(np.uint64) == b.view(np.uint64)).all())


BUDGETS = {"ample": (1 << 30, 1 << 15), "small": (20_000, 1 << 15), "distinct": (20_000, 1),
           "tiny": (64, 1 << 15)}


@pytest.mark.parametrize("budget", list(BUDGETS))
@pytest.mark.parametrize("grouped", [True, False], ids=["groups", "global"])
def test_counts_quantiles_and_keys_equal_a_full_sort(tmp_path, budget, grouped) -> None:
    memory, distinct_min_rows = BUDGETS[budget]
    corpus = write_corpus(tmp_path, seed=3, grouped=grouped)
    stats = OrderStats(corpus.shards, ("ppl", "bpb"), memory_budget=memory, batch_rows=700,
                       workers=2, distinct_min_rows=distinct_min_rows)
    names, counts = np.unique(corpus.group, return_counts=True)
    assert stats.counts() == dict(zip(names.tolist(), counts.tolist(), strict=True))
    got = stats.quantiles_many({"ppl": QS, "bpb": QS})
    for metric in ("ppl", "bpb"):
        want = reference_quantiles(corpus, metric, QS)
        assert list(got[metric]) == list(want)
        for g in want:
            assert same_bits(got[metric][g], want[g]), (metric, g)
    rng = np.random.default_rng(0)
    wanted = {
        g: sorted({0, n - 1, *rng.integers(0, n, 15).tolist()}) for g, n in stats.counts().items()
    }
    for metric in ("ppl", "bpb"):
        keys = stats.keys_at_ranks(wanted, metric)
        for g, ranks in wanted.items():
            order = reference_order(corpus, g, metric)
            for r in ranks:
                i = order[r]
                value = corpus.ppl[i] if metric == "ppl" else corpus.bpb[i]
                want = (float(value), int(corpus.id_hash[i]), corpus.file[i], int(corpus.row[i]))
                assert _same_key(keys[(g, r)], want), (metric, g, r)
    if budget == "tiny":
        assert len(stats.passes) > 3  # the tiny budget really went through the narrowing
    if budget == "distinct":
        assert sum(p.settled_by_distinct for p in stats.passes) > 0


def _same_key(got, want) -> bool:
    (gv, *g_rest), (wv, *w_rest) = got, want
    if np.isnan(wv):
        return np.isnan(gv) and g_rest == w_rest
    return (gv == wv or (gv == 0 and wv == 0)) and g_rest == w_rest


def test_quantiles_are_duckdb_quantile_cont_bit_for_bit(tmp_path) -> None:
    corpus = write_corpus(tmp_path, seed=5)
    stats = OrderStats(corpus.shards, ("ppl", "bpb"), memory_budget=4096, batch_rows=500)
    got = stats.quantiles_many({"ppl": QS, "bpb": QS})
    con = duckdb.connect()
    con.register("t", pa.table({"g": corpus.group, "ppl": corpus.ppl,
                                "bpb": pa.array(corpus.bpb, mask=corpus.bpb_null)}))
    for metric in ("ppl", "bpb"):
        rows = con.execute(
            f"SELECT g, quantile_cont({metric}, $qs) FROM t GROUP BY g HAVING count({metric}) > 0",
            {"qs": QS},
        ).fetchall()
        assert len(rows) == len(got[metric])
        for g, values in rows:
            assert same_bits(got[metric][g], values), (metric, g)


def test_the_same_as_score_stats(tmp_path) -> None:
    """The current method (datafilter.thresholds.ScoreStats) on the same shards."""
    from datafilter.aggregate import ScoreFiles, ScoreStats

    corpus = write_corpus(tmp_path, seed=11)
    files = ScoreFiles(list(corpus.shards.score_files), list(corpus.shards.input_files))
    old = ScoreStats(files, "domain")
    old._order = None  # DuckDB's own quantile_cont
    new = OrderStats(corpus.shards, ("ppl", "bpb"), memory_budget=10_000, batch_rows=400)
    assert new.counts() == old.counts()
    for metric in ("ppl", "bpb"):
        got, want = new.quantiles(QS, metric), old.quantiles(QS, metric)
        assert list(got) == [g for g in want if want[g][0] is not None]
        assert all(same_bits(got[g], want[g]) for g in got)
    wanted = {g: sorted({0, n // 2, n - 1}) for g, n in new.counts().items()}
    assert new.keys_at_ranks(wanted, "ppl") == old.keys_at_ranks(wanted, "ppl")
    from datafilter.columnar_stats import ColumnarScores

    # The in-memory numpy method ScoreStats used before (it interpolates as numpy does).
    fast = ColumnarScores(files.score_files, files.input_files, "domain", "__all__", "__null__")
    for metric in ("ppl", "bpb"):
        got = new.quantiles(QS, metric, formula="numpy")
        want = fast.quantiles(QS, metric)
        assert list(got) == list(want) and all(same_bits(got[g], want[g]) for g in want)


def test_approximate_quantiles_state_their_rank_error(tmp_path) -> None:
    corpus = write_corpus(tmp_path, seed=2, sizes=(5000, 7000))
    stats = OrderStats(corpus.shards, ("ppl",), grid_cells=256)
    got = stats.quantiles([0.1, 0.5, 0.9], "ppl", approx=True)
    assert len(stats.passes) == 1
    for g, values in got.items():
        v = np.sort(corpus.ppl[corpus.group == g])
        err = stats.last_rank_error[("ppl", g)]
        assert 0 < err < len(v)
        for q, x in zip([0.1, 0.5, 0.9], values, strict=True):
            r = q * (len(v) - 1)
            below, upto = np.searchsorted(v, x, "left"), np.searchsorted(v, x, "right")
            assert below - err - 1 <= r <= upto + err, (g, q)


def test_a_thousand_groups_and_many_shards_with_few_open_files(tmp_path, monkeypatch) -> None:
    groups = np.array([f"g{i:04d}" for i in range(1000)], dtype=object)
    corpus = write_corpus(tmp_path, seed=4, sizes=[400] * 60, groups=groups)
    opened = []
    real = scan_module._batch

    def spy(*args, **kwargs):
        opened.append(len(os.listdir("/proc/self/fd")))
        return real(*args, **kwargs)

    monkeypatch.setattr(scan_module, "_batch", spy)
    before = len(os.listdir("/proc/self/fd"))
    stats = OrderStats(corpus.shards, ("ppl",), memory_budget=200_000, workers=2)
    got = stats.quantiles([0.0, 0.25, 0.5, 0.9, 1.0], "ppl")
    want = reference_quantiles(corpus, "ppl", [0.0, 0.25, 0.5, 0.9, 1.0])
    assert got.keys() == want.keys() and all(same_bits(got[g], want[g]) for g in want)
    assert max(opened) <= before + 2 * 2 + 2  # two workers, a score and an input shard each
    assert len(os.listdir("/proc/self/fd")) <= before


def test_empty_groups_and_rejected_shards(tmp_path) -> None:
    corpus = write_corpus(tmp_path, seed=8, sizes=(0, 3, 0))
    stats = OrderStats(corpus.shards, ("ppl", "bpb"), memory_budget=64)
    names = set(corpus.group.tolist())
    assert set(stats.counts()) == names
    assert set(stats.quantiles([0.5], "ppl")) == names


def test_a_missing_column_or_misaligned_input_is_an_error(tmp_path) -> None:
    corpus = write_corpus(tmp_path, seed=1, sizes=(50, 60))
    with pytest.raises(InputError, match="column 'nope' not found"):
        OrderStats(corpus.shards, ("nope",)).counts()
    pq.write_table(pa.table({"domain": ["a"] * 7}), corpus.shards.input_files[1])
    with pytest.raises(InputError, match="not row-aligned") as err:
        OrderStats(corpus.shards, ("ppl",)).counts()
    assert corpus.shards.input_files[1] in str(err.value)


def test_encoding_orders_like_duckdb() -> None:
    values = np.array([np.nan, np.inf, 1.5, 0.0, -0.0, -1e300, -np.inf, 5e-324, -np.nan, 2.0])
    keys = encode(values)
    con = duckdb.connect()
    con.register("t", pa.table({"x": values, "i": np.arange(len(values))}))
    duck = [i for (i,) in con.execute("SELECT i FROM t ORDER BY x, i").fetchall()]
    ours = np.lexsort((np.arange(len(values)), keys)).tolist()
    assert ours == duck
    back = decode(keys)
    finite = np.isfinite(values)
    assert (back[finite] == values[finite]).all() and np.isnan(back[np.isnan(values)]).all()


def test_shards_on_object_storage(tmp_path, s3_bucket) -> None:
    from datafilter.io.storage import location

    corpus = write_corpus(tmp_path, seed=6, sizes=(800, 0, 1500))
    remote = []
    for kind in ("scores", "input"):
        files = corpus.shards.score_files if kind == "scores" else corpus.shards.input_files
        names = []
        for f in files:
            name = f"{s3_bucket}/{kind}/{Path(f).name}"
            location(name).upload(Path(f))
            names.append(name)
        remote.append(names)
    shards = ScoreShards(remote[0], remote[1], "domain")
    stats = OrderStats(shards, ("ppl",), memory_budget=4096, workers=2)
    local = OrderStats(corpus.shards, ("ppl",))
    assert stats.counts() == local.counts()
    got = stats.quantiles(QS, "ppl")
    want = reference_quantiles(corpus, "ppl", QS)
    assert got.keys() == want.keys() and all(same_bits(got[g], want[g]) for g in want)
    wanted = {g: [0, n - 1] for g, n in local.counts().items()}
    keys = stats.keys_at_ranks(wanted, "ppl")
    names = {Path(r).name: r for r in remote[0]}
    for (g, r), (value, id_hash, file, row) in local.keys_at_ranks(wanted, "ppl").items():
        assert keys[(g, r)] == (value, id_hash, names[Path(file).name], row)


@pytest.mark.parametrize("log", [True, False], ids=["log", "linear"])
def test_histograms_equal_score_stats(tmp_path, log) -> None:
    from datafilter.aggregate import ScoreFiles, ScoreStats

    corpus = write_corpus(tmp_path, seed=12)
    files = ScoreFiles(list(corpus.shards.score_files), list(corpus.shards.input_files))
    old = ScoreStats(files, "domain")
    old._order = None  # DuckDB over every row
    new = OrderStats(corpus.shards, ("ppl",), batch_rows=500)
    for metric in ("ppl", "bpb"):
        got, want = new.histogram(metric, 30, log), old.histogram(metric, 30, log)
        assert list(got) == list(want)
        for g in want:
            assert np.array_equal(got[g][0], want[g][0]) and np.array_equal(got[g][1], want[g][1])
        edges, counts = new.shared_histogram(metric, 20, log)
        want_edges, want_counts = old.shared_histogram(metric, 20, log)
        assert np.array_equal(edges, want_edges) and list(counts) == list(want_counts)
        assert all(np.array_equal(counts[g], want_counts[g]) for g in want_counts)
    edges, counts = new.shared_histogram("ppl", 10, True, lo=3.0, hi=6.0)
    want_edges, want_counts = old.shared_histogram("ppl", 10, True, lo=3.0, hi=6.0)
    assert np.array_equal(edges, want_edges)
    assert all(np.array_equal(counts[g], want_counts[g]) for g in want_counts)


def test_documents_at_ranks_are_duckdbs(tmp_path) -> None:
    """The report's documents at ranks (streaming passes, then a read of the few rows) equal
    DuckDB's window over every row, ties on the metric and on id_hash included."""
    from datafilter.aggregate import ScoreFiles, ScoreStats

    corpus = write_corpus(tmp_path, seed=12)
    files = ScoreFiles(list(corpus.shards.score_files), list(corpus.shards.input_files))
    new, old = ScoreStats(files, "domain"), ScoreStats(files, "domain")
    old._order = None
    assert new._order is not None
    for metric in ("ppl", "bpb"):
        wanted = {g: sorted({0, 1, n // 3, n // 2, n - 1})
                  for g, n in new._order.value_counts(metric).items()}
        got = new.documents_at_ranks(wanted, metric)
        assert got == old.documents_at_ranks(wanted, metric)
        assert len(got) == sum(len(r) for r in wanted.values())
    assert new.documents_at_quantiles(QS[:11]) == old.documents_at_quantiles(QS[:11])


def test_samples_of_many_groups_shrink_to_the_budget(tmp_path) -> None:
    """A sample too large for the budget in every group shrinks to what fits, and is then the
    same rows a sample of that size takes (the smallest id hashes)."""
    corpus = write_corpus(tmp_path, seed=13, sizes=(6000, 5000, 4000))
    groups = len(OrderStats(corpus.shards, ("ppl",)).counts())
    assert groups == 5  # news, web, "", wiki and the null group
    small = OrderStats(corpus.shards, ("ppl",), memory_budget=320 * 2000 * groups, workers=2)
    taken = small.sample_size(5000)
    assert taken == 2000
    got = small.sample("ppl", 5000)
    want = OrderStats(corpus.shards, ("ppl",)).sample("ppl", taken)
    assert got.keys() == want.keys() and max(len(v) for v in got.values()) == taken
    for g in got:
        assert np.array_equal(got[g], want[g], equal_nan=True)
