"""Exact counts and quantiles of score shards with pyarrow and numpy: the fast path of ScoreStats.

DuckDB's ``quantile_cont(x, [101 quantiles])`` selects each quantile with its own pass over a
group's values (10^8 values: minutes), and joining the group column in from the input shards on
(file, row) builds a hash table of every row. Here instead:

- score shards are row-aligned with their input shards (the score stage writes row k of input
  shard i as row k of score shard i), so the group of a score row is read by position, with
  pyarrow, as dictionary codes: no join;
- each metric's valid values are scattered into one array with each group's values contiguous,
  each group is sorted once (numpy's SIMD sort), and every quantile is read off the sorted
  values with DuckDB's formula: ``rn = (n - 1) * q``, ``lo + (hi - lo) * (rn - floor(rn))``.

Results are exact order statistics, equal to ``quantile_cont``'s up to the rounding of that
one interpolation (DuckDB builds may fuse its multiply-add; 1 ulp at most). Memory: the codes of
every valid row (4 bytes each), a validity mask per shard, and one metric's values (8 bytes
each) at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datafilter.errors import InputError


class ColumnarScores:
    """Valid rows of aligned score and input shards, grouped by one input column (or none)."""

    def __init__(
        self,
        score_files: list[str],
        input_files: list[str],
        group_by: str | None,
        all_label: str,
        null_label: str,
    ):
        self.score_files = score_files
        self.input_files = input_files
        self.group_by = group_by
        self._all, self._null = all_label, null_label
        self._loaded = False

    def _load(self) -> None:
        """Per shard: which rows are valid and their group codes; group names and counts."""
        if self._loaded:
            return
        code_of: dict[str, int] = {}
        self._valid: list[np.ndarray] = []
        self._codes: list[np.ndarray] = []
        reasons = _prefetch(_read_column, self.score_files, "reject_reason")
        for input_file, table in zip(self.input_files, reasons, strict=True):
            valid = table.column(0).is_null().to_numpy(zero_copy_only=False)
            self._valid.append(valid)
            if self.group_by is None:
                self._codes.append(np.zeros(int(valid.sum()), dtype=np.int32))
                code_of.setdefault(self._all, 0)
                continue
            codes = self._group_codes(input_file, len(valid), code_of)
            self._codes.append(codes[valid])
        self.names = list(code_of)
        if len(self.names) <= np.iinfo(np.int16).max:  # numpy sorts 16-bit keys by radix
            self._codes = [c.astype(np.int16) for c in self._codes]
        counts = np.zeros(len(self.names), dtype=np.int64)
        for codes in self._codes:
            counts += np.bincount(codes, minlength=len(self.names))
        self.counts = counts
        self._loaded = True

    def _group_codes(self, input_file: str, n_rows: int, code_of: dict[str, int]) -> np.ndarray:
        """Each input row's group as a code; names as DuckDB's ``CAST(x AS VARCHAR)`` prints
        them (the group column types are limited to those that print alike)."""
        try:
            kind = pq.read_schema(input_file).field(self.group_by).type
            textual = pa.types.is_string(kind) or pa.types.is_large_string(kind)
            as_dictionary = [self.group_by] if textual else None
            pf = pq.ParquetFile(input_file, read_dictionary=as_dictionary)
            column = pf.read(columns=[self.group_by]).column(0)
        except (pa.ArrowException, OSError) as exc:
            problem = f"cannot read column {self.group_by!r} ({exc})"
            raise InputError(problem, path=input_file) from exc
        if len(column) != n_rows:
            raise InputError(
                f"has {len(column)} rows but its score shard has {n_rows}: the score shard is "
                "not row-aligned with it; score it again",
                path=input_file,
            )
        out = np.empty(n_rows, dtype=np.int32)
        if pa.types.is_null(column.type):
            out[:] = code_of.setdefault(self._null, len(code_of))
            return out
        start = 0
        for chunk in column.chunks:
            if not pa.types.is_dictionary(chunk.type):
                chunk = pc.dictionary_encode(chunk)
            names = chunk.dictionary.cast(pa.string()).to_pylist()
            names = [self._null if v is None else v for v in names]
            table = [code_of.setdefault(v, len(code_of)) for v in names]
            table.append(code_of.setdefault(self._null, len(code_of)))  # index -1: a null row
            lut = np.asarray(table, dtype=np.int32)
            indices = pc.fill_null(chunk.indices, -1).to_numpy(zero_copy_only=False)
            out[start : start + len(chunk)] = lut[indices]
            start += len(chunk)
        return out

    def group_counts(self) -> dict[str, int]:
        """Valid rows per group (groups without one are left out), sorted by name."""
        self._load()
        return {n: int(c) for n, c in sorted(zip(self.names, self.counts, strict=True)) if c}

    def _grouped_values(self, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One metric's valid values in one array, each group's in its own segment: the values,
        the segment starts (one more at the end) and how many values each segment holds
        (fewer than its size where the metric is null: nulls are skipped, as by
        ``quantile_cont``)."""
        self._load()
        n_groups = len(self.names)
        offsets = np.zeros(n_groups + 1, dtype=np.int64)
        np.cumsum(self.counts, out=offsets[1:])
        out = np.empty(int(offsets[-1]), dtype=np.float64)
        write = offsets[:-1].copy()
        tables = _prefetch(_read_column, self.score_files, metric)
        for table, valid, codes in zip(tables, self._valid, self._codes, strict=True):
            column = table.column(0)
            values = np.asarray(column.to_numpy(), dtype=np.float64)[valid]
            if column.null_count:
                present = column.is_valid().to_numpy(zero_copy_only=False)[valid]
                values, codes = values[present], codes[present]
            if n_groups == 1:
                out[write[0] : write[0] + len(values)] = values
                write[0] += len(values)
                continue
            # This shard's values ordered by group, then each group's run copied to its segment.
            order = np.argsort(codes, kind="stable")
            values = values[order]
            here = np.bincount(codes, minlength=n_groups)
            start = 0
            for code in np.flatnonzero(here).tolist():
                n = int(here[code])
                out[write[code] : write[code] + n] = values[start : start + n]
                start += n
            write += here
        return out, offsets, write - offsets[:-1]

    def quantiles(self, qs: Sequence[float], metric: str) -> dict[str, list[float]]:
        """Per group (sorted by name), the exact quantiles ``qs`` of ``metric``."""
        values, offsets, filled = self._grouped_values(metric)
        q = np.asarray(list(qs), dtype=np.float64)
        out: dict[str, list[float]] = {}
        for code in sorted(range(len(self.names)), key=self.names.__getitem__):
            start = int(offsets[code])
            if not filled[code]:
                continue
            group = values[start : start + int(filled[code])]
            group.sort()
            out[self.names[code]] = interpolate(group, q).tolist()
        return out


def _read_column(path: str, column: str) -> pa.Table:
    # ParquetFile.read: about 3x faster than read_table on files of many small row groups.
    try:
        return pq.ParquetFile(path).read(columns=[column])
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"cannot read column {column!r} ({exc})", path=path) from exc


def _prefetch(read, paths: list[str], *args) -> Iterator:
    """``read(path, *args)`` for each path in order, the next one read in a background thread
    while the caller works on the current one (pyarrow releases the GIL while it reads)."""
    if not paths:
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(read, paths[0], *args)
        for path in paths[1:]:
            current, pending = pending, pool.submit(read, path, *args)
            yield current.result()
        yield pending.result()


def interpolate(sorted_values: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``quantile_cont`` on sorted values: ``lo + (hi - lo) * (rn - floor(rn))``,
    ``rn = (n - 1) * q``."""
    rn = (len(sorted_values) - 1) * q
    lo = np.floor(rn).astype(np.int64)
    hi = np.ceil(rn).astype(np.int64)
    a, b = sorted_values[lo], sorted_values[hi]
    with np.errstate(invalid="ignore"):
        return np.where(lo == hi, a, a + (b - a) * (rn - lo))
