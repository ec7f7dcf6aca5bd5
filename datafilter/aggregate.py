"""The only module that talks to DuckDB: quantiles and order statistics over score shards.

- :class:`Database`: one DuckDB connection (memory limit, spill folder, quiet progress bar),
  queries with bound parameters, Arrow tables registered by name, and running out of memory
  turned into one :class:`~datafilter.errors.ConfigError` line. Every other module that needs
  SQL (the perplexity-correlation aggregates, fastText distillation) uses it.
- :class:`ScoreSource`: the view ``scores(grp, ppl, bpb, id_hash, doc_id, row, score_file)``
  over every valid scored row of one scorer (joined with other scorers' rows), built from the
  score shards and, when grouping, the group column of the row-aligned input shards.
- :class:`ScoreStats`: what the thresholds stage, the selectors' plans and the report read from
  that view: :class:`Aggregates` (counts, quantiles, moments, histograms, samples) and
  :class:`DocumentLookups` (documents at ranks, near values, by id). Counts, quantiles, sort
  keys at ranks and samples of ppl/bpb come from :mod:`datafilter.order_stats` (exact, in
  streaming passes of bounded memory); the rest, and anything over other scorers' columns, from
  DuckDB.

DuckDB is imported where a connection is made, so ``import datafilter`` stays fast.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from datafilter.errors import ConfigError, InputError
from datafilter.logs import quiet_duckdb
from datafilter.order_stats import OrderStats, ScoreShards
from datafilter.order_stats.encoding import (
    PROBE_HIGH,
    PROBE_LOW,
    PROBE_N,
    PROBE_Q,
    interpolate,
    quantile_ranks,
)
from datafilter.order_stats.scan import check_group_column
from datafilter.scorers.columns import METRICS

ALL = "__all__"  # the one group when no group column is used
NULL_GROUP = "__null__"  # documents whose group value is null
# Group columns are read by position from Parquet input shards (a positional join).
JSONL_GROUPS = "group columns are read from Parquet input shards only, not JSONL"
PERCENTILES = [i / 100 for i in range(101)]
# Bytes the order-statistics passes may hold (histograms, collected rows; without a memory
# limit): the batches being read take about 120 MB more on two workers.
ORDER_STATS_BUDGET = 1 << 29


class ScoredDoc(NamedTuple):
    """One scored document: where its text is (input shard, row) and its scores."""

    group: str
    doc_id: str
    input_file: str
    row: int
    value: float  # the metric the query ordered by
    ppl: float
    bpb: float
    id_hash: int


# The columns of a ScoredDoc after ``group`` and ``value``, from the scores view joined with
# ``shard_map m`` (for the input file).
_DOC_FIELDS = "s.doc_id, m.input_file, s.row, s.ppl, s.bpb, s.id_hash"


@dataclass(frozen=True)
class ScoreFiles:
    """Score shards of one scorer and, row-aligned with each, the input shard it came from."""

    score_files: list[str]
    input_files: list[str]
    # Other scorers' shards for the same inputs (scorer id -> files aligned with score_files).
    extra: dict[str, list[str]] = field(default_factory=dict)
    # Per-fold calibration of cross-fitted scores (reference.calibration.fold_maps: fold ->
    # ppl shift, ppl scale, bpb shift, bpb scale): the view's ppl and bpb are calibrated.
    calibration: dict[int, tuple[float, float, float, float]] = field(default_factory=dict)


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Database:
    """One DuckDB connection: values are bound parameters, Arrow tables are registered by name,
    and running out of memory is one ConfigError line (``hint`` says what to raise)."""

    def __init__(
        self,
        *,
        memory_limit: str | None = None,
        temp_directory: str | None = None,
        hint: str = "raise --memory-limit (config: memory_limit)",
    ):
        import duckdb

        self.con = quiet_duckdb(duckdb.connect())
        self.hint = hint
        if memory_limit:
            self.con.execute(f"SET memory_limit = '{_checked_size(memory_limit)}'")
        if temp_directory:
            self.con.execute("SET temp_directory = $dir", {"dir": temp_directory})

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
        """All rows of ``sql`` with ``params`` bound."""
        import duckdb

        try:
            return self.con.execute(sql, params or {}).fetchall()
        except duckdb.OutOfMemoryException as exc:
            limit = self.con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
            raise ConfigError(
                f"DuckDB ran out of memory within its limit of {limit} "
                f"({str(exc).splitlines()[0]}); {self.hint}"
            ) from None

    def register(self, name: str, table: pa.Table) -> None:
        """Make an Arrow table readable as ``name`` in queries."""
        self.con.register(name, table)

    def unregister(self, name: str) -> None:
        self.con.unregister(name)


@contextmanager
def read_errors_named(what: str = "the scores") -> Iterator[None]:
    """A read error of Arrow or DuckDB (which name the file in their messages) becomes one
    InputError line instead of a traceback."""
    import duckdb

    try:
        yield
    except (pa.ArrowException, duckdb.IOException, duckdb.InvalidInputException) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read {what}: {first}") from exc


class ScoreSource:
    """The view ``scores(grp, metric columns, id_hash, doc_id, row, score_file)`` over every
    valid scored row, as a subquery re-read by each query (so memory stays bounded), and the
    counts per group."""

    def __init__(
        self,
        files: ScoreFiles,
        group_by: str | None = None,
        *,
        memory_limit: str | None = None,
        temp_directory: str | None = None,
    ):
        if not files.score_files:
            raise InputError("no finished score shards to compute thresholds from")
        self.group_by = group_by
        self.extra_ids = list(files.extra)
        self.fold_maps = dict(files.calibration)
        self._score_file_of = dict(zip(files.input_files, files.score_files, strict=True))
        self.db = Database(memory_limit=memory_limit, temp_directory=temp_directory)
        if group_by is not None:
            self._check_group_column(files.input_files)
        from datafilter.io.staging import LocalCopies

        self._copies = LocalCopies()
        local = _local_files(self._copies, files, group_by)
        self._source, self._params = self._source_query(local)
        self._given_score_file = dict(zip(local.score_files, files.score_files, strict=True))
        # Exact counts, quantiles and sort keys at ranks of ppl/bpb in streaming passes of
        # bounded memory (see datafilter.order_stats); not with other scorers' columns, whose
        # rejections also filter the rows, nor with calibrated (cross-fitted) scores.
        self._order = (
            None
            if self.extra_ids or self.fold_maps
            else OrderStats(
                ScoreShards(local.score_files, local.input_files, group_by, ALL, NULL_GROUP),
                METRICS,
                memory_budget=_order_stats_budget(memory_limit),
            )
        )
        self.rank_error: dict[tuple[str, str], int] = {}  # of the last approximate quantiles

    @property
    def con(self) -> Any:
        """The DuckDB connection (benchmarks tune it)."""
        return self.db.con

    @property
    def score_file_of(self) -> dict[str, str]:
        """Input shard -> its score shard (as given, not local copies)."""
        return dict(self._score_file_of)

    def _source_query(self, files: ScoreFiles) -> tuple[str, dict[str, Any]]:
        """The subquery over all valid scored rows; re-read per query so memory stays bounded."""
        columns = {"score_file": files.score_files, "input_file": files.input_files}
        columns.update({f"x{i}_file": files.extra[sid] for i, sid in enumerate(self.extra_ids)})
        self.db.register("shard_map", pa.table(columns))
        params: dict[str, Any] = {"scores": files.score_files}
        select = ["s.ppl", "s.bpb", "s.id_hash", "s.doc_id", "s.row", "s.filename AS score_file"]
        joins, valid = [], ["s.reject_reason IS NULL"]
        grp = f"'{ALL}'"
        if self.extra_ids:
            joins.append("JOIN shard_map m ON s.filename = m.score_file")
        if self.group_by is not None:
            # Score shards are row-aligned with their input shards, in the same order: a
            # positional scan of both reads the group column with no join (a hash join on
            # (file, row) held every row in memory: 17 GB for 10^8 rows).
            self._check_aligned(files)
            column = _quote_identifier(self.group_by)
            grp = f"coalesce(CAST(i.{column} AS VARCHAR), '{NULL_GROUP}')"
            joins.insert(
                0,
                f"POSITIONAL JOIN (SELECT {column} FROM "
                "read_parquet($inputs, union_by_name=true)) i",
            )
            params["inputs"] = files.input_files
        for i, sid in enumerate(self.extra_ids):
            joins.append(
                f"JOIN read_parquet($x{i}, filename=true) e{i} "
                f"ON e{i}.filename = m.x{i}_file AND e{i}.row = s.row"
            )
            select += [f"e{i}.ppl AS x{i}_ppl", f"e{i}.bpb AS x{i}_bpb"]
            valid.append(f"e{i}.reject_reason IS NULL")
            params[f"x{i}"] = files.extra[sid]
        if self.fold_maps:  # cross-fitted scores: each fold's scale mapped onto a common one
            self.db.register("fold_maps", _fold_map_table(self.fold_maps))
            select[:2] = [f"{CALIBRATED_PPL} AS ppl", f"{CALIBRATED_BPB} AS bpb"]
            joins.append("JOIN fold_maps c ON s.fold = c.fold")
        source = (
            f"(SELECT {grp} AS grp, {', '.join(select)} "
            f"FROM read_parquet($scores, filename=true) s {' '.join(joins)} "
            f"WHERE {' AND '.join(valid)}) AS scores"
        )
        return source, params

    def _check_aligned(self, files: ScoreFiles) -> None:
        """Each score shard has as many rows as its input shard (from the Parquet footers)."""
        rows = dict(
            self.db.query(
                "SELECT file_name, num_rows FROM parquet_file_metadata($files)",
                {"files": [*files.score_files, *files.input_files]},
            )
        )
        for score_file, input_file in zip(files.score_files, files.input_files, strict=True):
            if rows[score_file] != rows[input_file]:
                raise InputError(
                    f"has {rows[input_file]} rows but its score shard {score_file} has "
                    f"{rows[score_file]}: the score shard is not row-aligned with it; score it "
                    "again",
                    path=input_file,
                )

    def metric_sql(self, metric: str) -> str:
        """SQL for a metric: ``ppl``/``bpb``, ``<scorer id>:ppl`` of an extra scorer, or
        ``log_ratio:<scorer id>`` = ln(that scorer's ppl) - ln(ppl)."""
        if metric in METRICS:
            return metric
        kind, _, sid = metric.partition(":")
        if kind == "log_ratio" and sid in self.extra_ids:
            return f"(ln(x{self.extra_ids.index(sid)}_ppl) - ln(ppl))"
        sid, _, column = metric.rpartition(":")
        if column in METRICS and sid in self.extra_ids:
            return f"x{self.extra_ids.index(sid)}_{column}"
        known = [
            *METRICS,
            *(f"{x}:ppl" for x in self.extra_ids),
            *(f"log_ratio:{x}" for x in self.extra_ids),
        ]
        raise ConfigError(f"unknown metric {metric!r}; choose one of {', '.join(known)}")

    def _query(self, sql: str, extra: dict[str, Any] | None = None) -> list[tuple]:
        """Run ``sql`` with ``{scores}`` replaced by the source subquery; values are bound."""
        return self.db.query(sql.format(scores=self._source), {**self._params, **(extra or {})})

    def _doc(self, *fields) -> ScoredDoc:
        """A ScoredDoc naming its input shard as given (not by a local copy's name)."""
        doc = _scored_doc(*fields)
        return doc._replace(input_file=self._copies.name_of(doc.input_file))

    def _check_group_column(self, input_files: list[str]) -> None:
        from datafilter.io.jsonl import is_jsonl
        from datafilter.io.shards import open_parquet
        from datafilter.io.storage import location

        for path in input_files:
            if is_jsonl(path):
                raise InputError(
                    f"{JSONL_GROUPS} (group column {self.group_by!r}); convert the JSONL shards "
                    "to Parquet, or run without a group column",
                    path=path,
                )
            check_group_column(open_parquet(location(path)).schema_arrow, self.group_by, path)

    def counts(self) -> dict[str, int]:
        """Valid scored documents per group."""
        if self._order is not None:
            return self._order.counts()
        return dict(self._query("SELECT grp, count(*) FROM {scores} GROUP BY grp ORDER BY grp"))


class Aggregates(ScoreSource):
    """Per-group aggregates of a metric: quantiles, moments, histograms, a fixed sample."""

    def quantiles(
        self, qs: Sequence[float], metric: str = "ppl", approx: bool = False
    ) -> dict[str, list[float]]:
        """Per group, the quantiles ``qs`` of ``metric``: exact by default (``quantile_cont``'s
        ranks, interpolated as ``lo + (hi - lo) * d``); ``approx`` estimates them from the first
        pass's histogram and sets ``rank_error[(metric, group)]``, a bound on how many ranks off
        each estimate is."""
        return self.quantiles_many({metric: qs}, approx)[metric]

    def quantiles_many(
        self, wanted: Mapping[str, Sequence[float]], approx: bool = False
    ) -> dict[str, dict[str, list[float]]]:
        """``quantiles`` of several metrics (metric -> quantiles), ppl and bpb found in the
        same streaming passes."""
        out: dict[str, dict[str, list[float]]] = {}
        native = {m: qs for m, qs in wanted.items() if m in METRICS}
        if self._order is not None and native:
            out.update(self._order.quantiles_many(native, approx, formula="numpy"))
            if approx:
                self.rank_error = dict(self._order.last_rank_error)
        for metric, qs in wanted.items():
            if metric not in out:
                out[metric] = self._sql_quantiles(qs, metric, approx)
        return out

    def _sql_quantiles(
        self, qs: Sequence[float], metric: str, approx: bool
    ) -> dict[str, list[float]]:
        col = self.metric_sql(metric)
        fn = f"approx_quantile({col}, $qs::FLOAT[])" if approx else f"quantile_cont({col}, $qs)"
        rows = self._query(
            f"SELECT grp, {fn} FROM {{scores}} GROUP BY grp ORDER BY grp", {"qs": list(qs)}
        )
        return {g: [float(v) for v in vals] for g, vals in rows}

    def moments(self, metric: str = "ppl") -> dict[str, dict[str, float]]:
        """Per group: count, mean, min and max of ``metric`` and mean of its log."""
        col = self.metric_sql(metric)
        rows = self._query(
            f"SELECT grp, count(*), avg({col}), min({col}), max({col}), avg(ln({col})) "
            "FROM {scores} GROUP BY grp ORDER BY grp"
        )
        keys = ("n_docs", "mean", "min", "max", "mean_log")
        return {r[0]: dict(zip(keys, r[1:], strict=True)) for r in rows}

    def histogram(
        self, metric: str = "ppl", bins: int = 100, log: bool = True
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per group: ``bins + 1`` edges from min to max of the (log of the) metric, and counts.

        Non-finite values (and, with ``log``, non-positive ones) are left out.
        """
        if self._order is not None and metric in METRICS:
            return self._order.histogram(metric, bins, log)
        col = self.metric_sql(metric)
        x = f"ln({col})" if log else col
        rows = self._query(
            f"WITH v AS (SELECT grp, {x} AS x FROM {{scores}} WHERE isfinite({x})), "
            "b AS (SELECT grp, min(x) AS lo, max(x) AS hi FROM v GROUP BY grp) "
            "SELECT v.grp, b.lo, b.hi, CAST(least($bins - 1, CASE WHEN b.hi > b.lo THEN "
            "floor((v.x - b.lo) / (b.hi - b.lo) * $bins) ELSE 0 END) AS INTEGER) AS bin, "
            "count(*) FROM v JOIN b ON v.grp = b.grp GROUP BY ALL ORDER BY 1, 4",
            {"bins": bins},
        )
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for grp, lo, hi, b, n in rows:
            if grp not in out:
                out[grp] = (np.linspace(lo, hi, bins + 1), np.zeros(bins, dtype=np.int64))
            out[grp][1][b] = n
        return out

    def shared_histogram(
        self,
        metric: str = "ppl",
        bins: int = 60,
        log: bool = True,
        lo: float | None = None,
        hi: float | None = None,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``bins + 1`` edges shared by all groups (over ln(metric) with ``log``; from the
        smallest to the largest value unless ``lo``/``hi`` are given; values outside fall in the
        end bins) and each group's counts. Non-finite (and, with ``log``, non-positive) values
        are left out."""
        if self._order is not None and metric in METRICS:
            return self._order.shared_histogram(metric, bins, log, lo, hi)
        col = self.metric_sql(metric)
        x = f"ln(CASE WHEN {col} > 0 THEN {col} END)" if log else col
        rows = self._query(
            f"WITH v AS (SELECT grp, {x} AS x FROM {{scores}} WHERE isfinite({x})), "
            "b AS (SELECT coalesce(CAST($lo AS DOUBLE), min(x)) AS lo, "
            "coalesce(CAST($hi AS DOUBLE), max(x)) AS hi FROM v) "
            "SELECT v.grp, b.lo, b.hi, CAST(greatest(0, least($bins - 1, CASE WHEN b.hi > b.lo "
            "THEN floor((v.x - b.lo) / (b.hi - b.lo) * $bins) ELSE 0 END)) AS INTEGER) AS bin, "
            "count(*) FROM v, b GROUP BY ALL ORDER BY 1, 4",
            {"bins": bins, "lo": lo, "hi": hi},
        )
        if not rows:
            return np.linspace(0.0, 1.0, bins + 1), {}
        counts: dict[str, np.ndarray] = {}
        for grp, _, _, b, n in rows:
            counts.setdefault(grp, np.zeros(bins, dtype=np.int64))[b] = n
        return np.linspace(rows[0][1], rows[0][2], bins + 1), counts

    def mean_std(self, metric: str) -> dict[str, tuple[float, float]]:
        """Per group: mean and (population) standard deviation of the metric."""
        col = self.metric_sql(metric)
        rows = self._query(
            f"SELECT grp, avg({col}), coalesce(stddev_pop({col}), 0) FROM {{scores}} "
            f"WHERE isfinite({col}) GROUP BY grp ORDER BY grp"
        )
        return {g: (float(m), float(s)) for g, m, s in rows}

    def median_mad(self, metric: str, log: bool = False) -> dict[str, tuple[int, float, float]]:
        """Per group: count, median and median absolute deviation from that median of the
        metric (of its natural log with ``log``); exact (``quantile_cont``: the mean of the two
        middle values of an even count). Two passes over the scores, never a join of rows."""
        col = self.metric_sql(metric)
        x = f"ln({col})" if log else col
        rows = self._query(
            f"SELECT grp, count(*), quantile_cont({x}, 0.5) FROM {{scores}} "
            "GROUP BY grp ORDER BY grp"
        )
        centres = pa.table({"grp": [r[0] for r in rows], "centre": [float(r[2]) for r in rows]})
        self.db.register("centres", centres)
        spreads = dict(
            self._query(
                f"SELECT scores.grp, quantile_cont(abs({x} - c.centre), 0.5) FROM {{scores}} "
                "JOIN centres c ON scores.grp = c.grp GROUP BY scores.grp"
            )
        )
        self.db.unregister("centres")
        return {g: (int(n), float(m), float(spreads[g])) for g, n, m in rows}

    def sample_size(self, n: int) -> int:
        """Documents per group ``sample`` takes when asked for ``n``: fewer when ``n`` for
        every group would not fit the memory budget."""
        return n if self._order is None else self._order.sample_size(n)

    def sample(self, metric: str, n: int) -> dict[str, np.ndarray]:
        """Per group: the metric of up to ``sample_size(n)`` documents, a fixed pseudo-random
        subset (smallest id hashes; ties by score file and row), all of them when the group is
        smaller."""
        if self._order is not None and metric in METRICS:
            return self._order.sample(metric, n)
        col = self.metric_sql(metric)
        rows = self._query(
            f"SELECT grp, list(v) FROM (SELECT grp, {col} AS v, row_number() OVER "
            "(PARTITION BY grp ORDER BY id_hash) AS rn FROM {scores}) WHERE rn <= $n "
            "GROUP BY grp ORDER BY grp",
            {"n": n},
        )
        return {g: np.array(v, dtype=np.float64) for g, v in rows}


class DocumentLookups(ScoreSource):
    """Single documents: at given ranks or quantiles of the ranking, near given values, by id."""

    def nearest(
        self, metric: str, values: dict[str, float], k: int = 5
    ) -> dict[str, list[tuple[str, float]]]:
        """Per group: the ``k`` (doc_id, metric) pairs closest to that group's value."""
        if not values:
            return {}
        if self._order is not None and metric in METRICS:
            return self._nearest_streamed(metric, values, k)
        col = self.metric_sql(metric)
        self.db.register(
            "targets",
            pa.table({"grp": list(values), "target": [float(v) for v in values.values()]}),
        )
        rows = self._query(
            f"SELECT grp, doc_id, v FROM (SELECT scores.grp, doc_id, {col} AS v, row_number() "
            f"OVER (PARTITION BY scores.grp ORDER BY abs({col} - target), id_hash) AS rn "
            "FROM {scores} JOIN targets t ON scores.grp = t.grp) WHERE rn <= $k ORDER BY grp, rn",
            {"k": k},
        )
        self.db.unregister("targets")
        out: dict[str, list[tuple[str, float]]] = {}
        for grp, doc_id, v in rows:
            out.setdefault(grp, []).append((doc_id, float(v)))
        return out

    def _nearest_streamed(
        self, metric: str, values: dict[str, float], k: int
    ) -> dict[str, list[tuple[str, float]]]:
        """``nearest`` in one streaming pass; the ids of the few rows found are read from
        their score shards."""
        found = self._order.nearest(metric, values, k)
        rows = {(f, r) for docs in found.values() for f, r, _ in docs}
        fields = self._row_fields(rows)
        return {g: [(fields[(f, r)]["doc_id"], v) for f, r, v in docs]
                for g, docs in found.items()}  # fmt: skip

    def _row_fields(self, rows: set[tuple[str, int]]) -> dict[tuple[str, int], dict[str, Any]]:
        """doc_id, ppl, bpb and id_hash of a few rows (local score file, ``row`` value), read
        from their score shards one shard at a time."""
        import pyarrow.parquet as pq

        wanted: dict[str, set[int]] = {}
        for score_file, row in rows:
            wanted.setdefault(score_file, set()).add(row)
        out: dict[tuple[str, int], dict[str, Any]] = {}
        columns = ["doc_id", "row", "ppl", "bpb", "id_hash"]
        for score_file, want in wanted.items():
            table = pq.ParquetFile(score_file).read(columns=columns)
            at = {r: i for i, r in enumerate(table.column("row").to_pylist()) if r in want}
            for r in want:
                out[(score_file, r)] = {c: table.column(c)[at[r]].as_py() for c in columns}
        return out

    def lookup(self, metric: str, ids: Sequence[str]) -> list[tuple[str, str, float]]:
        """(doc_id, group, metric) of each valid scored document whose id is in ``ids`` (a few
        thousand at most: they are the build side of the join, the scores stream past)."""
        if not ids:
            return []
        col = self.metric_sql(metric)
        self.db.register("wanted_ids", pa.table({"wanted": pa.array(list(ids), pa.string())}))
        rows = self._query(
            f"SELECT doc_id, grp, {col} FROM {{scores}} "
            "JOIN wanted_ids w ON scores.doc_id = w.wanted ORDER BY doc_id, grp"
        )
        self.db.unregister("wanted_ids")
        return [(str(d), str(g), float(v)) for d, g, v in rows]

    def keys_at_ranks(
        self, wanted: dict[str, list[int]], metric: str = "ppl"
    ) -> dict[tuple[str, int], tuple[float, int, str, int]]:
        """The full sort key (metric, id_hash, score file, row) at each 0-based rank of each
        group, ascending: unique per document even when ids and scores repeat."""
        if self._order is not None and metric in METRICS:
            keys = self._order.keys_at_ranks(wanted, metric)
            return {
                at: (value, id_hash, self._given_score_file[score_file], row)
                for at, (value, id_hash, score_file, row) in keys.items()
            }
        docs = self.documents_at_ranks(wanted, metric)
        return {
            key: (doc.value, doc.id_hash, self._score_file_of[doc.input_file], doc.row)
            for key, doc in docs.items()
        }

    def documents_at_ranks(
        self, wanted: dict[str, list[int]], metric: str = "ppl"
    ) -> dict[tuple[str, int], ScoredDoc]:
        """The document at each 0-based rank of each group, ordered by (metric, id_hash, score
        file, row)."""
        pairs = [(g, r) for g, ranks in wanted.items() for r in ranks]
        if not pairs:
            return {}
        if self._order is not None and metric in METRICS:
            keys = self._order.keys_at_ranks(wanted, metric)
            fields = self._row_fields({(f, r) for _, _, f, r in keys.values()})
            input_of = {s: i for i, s in self._score_file_of.items()}
            out = {}
            for (g, rank), (value, _, local, row) in keys.items():
                doc = fields[(local, row)]
                out[(g, rank)] = ScoredDoc(
                    g, str(doc["doc_id"]), input_of[self._given_score_file[local]], row,
                    value, _float(doc["ppl"]), _float(doc["bpb"]), int(doc["id_hash"]),
                )
            return out
        col = self.metric_sql(metric)
        self.db.register(
            "wanted_docs", pa.table({"grp": [g for g, _ in pairs], "rnk": [r for _, r in pairs]})
        )
        rows = self._query(
            f"SELECT s.grp, s.rnk, s.v, {_DOC_FIELDS} FROM (SELECT *, {col} AS v, row_number() "
            f"OVER (PARTITION BY grp ORDER BY {col}, id_hash, score_file, row) - 1 AS rnk "
            "FROM {scores} "
            "WHERE grp IN (SELECT grp FROM wanted_docs)) s "
            "JOIN wanted_docs w ON s.grp = w.grp AND s.rnk = w.rnk "
            "JOIN shard_map m ON m.score_file = s.score_file"
        )
        self.db.unregister("wanted_docs")
        return {(g, int(r)): self._doc(g, v, *rest) for g, r, v, *rest in rows}

    def documents_at_quantiles(
        self, qs: Sequence[float], metric: str = "ppl"
    ) -> dict[str, list[ScoredDoc]]:
        """Per group, the document at each quantile ``q`` of the ranking (rank
        ``round(q * (n - 1))``), e.g. one per decile with ``qs = 0, 0.1, ..., 1``."""
        counts = self.counts()
        ranks = {g: [round(q * (n - 1)) for q in qs] for g, n in counts.items()}
        docs = self.documents_at_ranks({g: sorted(set(r)) for g, r in ranks.items()}, metric)
        return {g: [docs[(g, r)] for r in rs] for g, rs in ranks.items()}

    def documents_near(
        self,
        targets: dict[str, list[tuple[float, int | None]]],
        metric: str = "ppl",
        k: int = 3,
    ) -> dict[tuple[str, int], list[ScoredDoc]]:
        """For each group's targets (value, optional id_hash tie-breaker), by position in the
        list: the ``k`` documents ranked just before the target and the ``k`` at or after it,
        in ascending (metric, id_hash) order."""
        items = [(g, i, v, h) for g, ts in targets.items() for i, (v, h) in enumerate(ts)]
        if not items:
            return {}
        col = self.metric_sql(metric)
        self.db.register(
            "near_targets",
            pa.table(
                {
                    "grp": [g for g, *_ in items],
                    "idx": [i for _, i, *_ in items],
                    "target": [float(v) for _, _, v, _ in items],
                    "h": pa.array([h or 0 for *_, h in items], pa.uint64()),
                }
            ),
        )
        doc = (
            "struct_pack(v := s.v, doc_id := s.doc_id, input_file := m.input_file, row := s.row, "
            "ppl := s.ppl, bpb := s.bpb, id_hash := s.id_hash)"
        )
        key = "struct_pack(v := s.v, h := s.id_hash)"
        before = "s.v < t.target OR (s.v = t.target AND s.id_hash < t.h)"
        rows = self._query(
            f"SELECT t.grp, t.idx, arg_max({doc}, {key}, $k) FILTER (WHERE {before}), "
            f"arg_min({doc}, {key}, $k) FILTER (WHERE NOT ({before})) "
            f"FROM (SELECT *, {col} AS v FROM {{scores}} WHERE isfinite({col})) s "
            "JOIN shard_map m ON m.score_file = s.score_file "
            "JOIN near_targets t ON s.grp = t.grp GROUP BY t.grp, t.idx",
            {"k": k},
        )
        self.db.unregister("near_targets")
        out: dict[tuple[str, int], list[ScoredDoc]] = {}
        for g, i, below, above in rows:
            docs = list(reversed(below or [])) + list(above or [])
            out[(g, int(i))] = [self._doc(g, *d.values()) for d in docs]
        return out


class ScoreStats(Aggregates, DocumentLookups):
    """Everything the thresholds stage, a selector's plan and the report read from the scores."""


def _checked_size(value: str) -> str:
    import re

    if not re.fullmatch(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", value.strip()):
        raise ConfigError(f"memory limit {value!r} is not a size such as '4GB'")
    return value.strip()


_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}  # fmt: skip


def _order_stats_budget(memory_limit: str | None) -> int:
    """The order-statistics budget: ``ORDER_STATS_BUDGET``, or half the memory limit when
    that is smaller (a small budget takes more passes)."""
    if memory_limit is None:
        return ORDER_STATS_BUDGET
    import re

    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(\w+)", _checked_size(memory_limit)).groups()
    return min(ORDER_STATS_BUDGET, int(float(number) * _UNITS[unit]) // 2)


@cache
def duckdb_fuses_interpolation() -> bool:
    """Whether the installed DuckDB's ``quantile_cont`` rounds ``lo * (1 - d) + hi * d`` once
    (a fused multiply-add, as its x86-64 and arm64 wheels do) or twice: asked once, on values
    where the two differ (``order_stats.encoding``'s probe)."""
    lo, _, d = quantile_ranks(PROBE_N, PROBE_Q)
    fused = interpolate(PROBE_LOW, PROBE_HIGH, d, True)
    plain = interpolate(PROBE_LOW, PROBE_HIGH, d, False)
    if fused == plain:  # not a probe on this machine's arithmetic: the wheels' default
        return True
    values = [PROBE_LOW] * (lo + 1) + [PROBE_HIGH] * (PROBE_N - lo - 1)
    got = Database().query(
        "SELECT quantile_cont(v, $q) FROM (SELECT unnest($v::DOUBLE[]) AS v)",
        {"q": PROBE_Q, "v": values},
    )[0][0]
    return got != plain


def _local_files(copies, files: ScoreFiles, group_by: str | None) -> ScoreFiles:
    """The same files as local paths DuckDB can read (remote ones copied; of a remote input
    only its group column, and only when grouping)."""
    inputs = files.input_files
    if group_by is not None:
        inputs = [copies.column(f, group_by) for f in inputs]
    return ScoreFiles(
        [copies.file(f) for f in files.score_files],
        inputs,
        {sid: [copies.file(f) for f in names] for sid, names in files.extra.items()},
        files.calibration,
    )


def _scored_doc(group, value, doc_id, input_file, row, ppl, bpb, id_hash) -> ScoredDoc:
    return ScoredDoc(
        str(group),
        str(doc_id),
        str(input_file),
        int(row),
        float(value),
        _float(ppl),
        _float(bpb),
        int(id_hash),
    )


def _float(value: float | None) -> float:
    """A score as a float: ``math.nan`` (one object, so documents compare equal) for null."""
    return math.nan if value is None else float(value)


# The calibrated scores of a row ``s`` of a score shard and its fold's map ``c``: the one
# expression of both the thresholds' view and select's per-shard values (the same DuckDB
# arithmetic, so a threshold key compares equal to the document it came from).
CALIBRATED_PPL = "exp(c.ppl_shift + c.ppl_scale * ln(s.ppl))"
CALIBRATED_BPB = "(c.bpb_shift + c.bpb_scale * s.bpb)"
FOLD_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def _fold_map_table(maps: dict[int, tuple[float, float, float, float]]) -> pa.Table:
    folds = sorted(maps)
    names = ("ppl_shift", "ppl_scale", "bpb_shift", "bpb_scale")
    return pa.table(
        {
            "fold": pa.array(folds, pa.int32()),
            **{n: pa.array([float(maps[f][i]) for f in folds]) for i, n in enumerate(names)},
        }
    )


def has_fold_column(score_file: str) -> bool:
    """Whether a score shard carries the ``fold`` column (cross-fitted scores)."""
    from datafilter.io.shards import open_parquet
    from datafilter.io.storage import location

    return "fold" in open_parquet(location(score_file)).schema_arrow.names


def fold_statistics(score_files: list[str], **db_options: Any) -> dict[int, dict[str, Any]]:
    """Per fold of cross-fitted score shards, over valid scored rows: n_docs, median, MAD and
    mean of ln(ppl), median and MAD of bpb, and quantiles of ln(ppl) (FOLD_QUANTILES)."""
    from datafilter.io.staging import LocalCopies

    copies = LocalCopies()
    db = Database(**db_options)
    rows = db.query(
        "SELECT fold, count(*), median(ln(ppl)), mad(ln(ppl)), avg(ln(ppl)), median(bpb), "
        "mad(bpb), quantile_cont(ln(ppl), $qs) FROM read_parquet($files) "
        "WHERE reject_reason IS NULL AND fold IS NOT NULL GROUP BY fold ORDER BY fold",
        {"files": [copies.file(f) for f in score_files], "qs": list(FOLD_QUANTILES)},
    )
    keys = ("n_docs", "ppl_median_log", "ppl_mad_log", "ppl_mean_log", "bpb_median", "bpb_mad")
    out: dict[int, dict[str, Any]] = {}
    for fold, *values, qs in rows:
        entry: dict[str, Any] = {k: float(v) for k, v in zip(keys, values, strict=True)}
        entry["n_docs"] = int(values[0])
        entry["quantiles_log_ppl"] = {
            f"p{round(q * 100):g}": float(v) for q, v in zip(FOLD_QUANTILES, qs, strict=True)
        }
        out[int(fold)] = entry
    return out


def calibrated_scores(
    scores: pa.Table, maps: dict[int, tuple[float, float, float, float]]
) -> tuple[np.ndarray, np.ndarray]:
    """ppl and bpb of a score shard's rows calibrated by their fold's map (NaN where a row has
    no fold or no valid score), computed as the thresholds' view computes them."""
    db = Database()
    index = pa.array(np.arange(scores.num_rows, dtype=np.int64))
    db.register("s_rows", scores.select(["ppl", "bpb", "fold"]).append_column("i", index))
    db.register("fold_maps", _fold_map_table(maps))
    valid = "s.fold IS NOT NULL AND isfinite(s.ppl) AND s.ppl > 0"
    rows = db.con.sql(
        f"SELECT CASE WHEN {valid} THEN {CALIBRATED_PPL} END AS ppl, "
        f"CASE WHEN {valid} THEN {CALIBRATED_BPB} END AS bpb "
        "FROM s_rows s LEFT JOIN fold_maps c ON s.fold = c.fold ORDER BY s.i"
    ).to_arrow_table()
    return tuple(  # type: ignore[return-value]
        rows.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in ("ppl", "bpb")
    )
