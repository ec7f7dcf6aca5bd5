"""Order-preserving integer keys for float64 scores, and DuckDB's ``quantile_cont`` arithmetic.

``encode`` maps each double to a uint64 whose unsigned order is DuckDB's ``ORDER BY`` order:
negative numbers below positive ones, ``-0.0`` equal to ``0.0``, every NaN equal and above
``+inf``; a null (a missing value, ordered ``NULLS LAST``) maps to the largest key, ``NULL_KEY``.
Radix buckets over these keys are contiguous value ranges, so counting rows per bucket locates
any order statistic exactly.
"""

from __future__ import annotations

import contextlib

import numpy as np

SIGN = np.uint64(1 << 63)
LOW63 = np.int64((1 << 63) - 1)
NAN_KEY = np.uint64(0xFFF8000000000000)  # the key of every NaN (the canonical quiet NaN's)
INF_KEY = np.uint64(0xFFF0000000000000)  # +inf; keys above it up to NAN_KEY are never produced
NEG_NAN_LIMIT = np.uint64(0x000FFFFFFFFFFFFF)  # keys below it come from NaNs with the sign set
NULL_KEY = np.uint64(0xFFFFFFFFFFFFFFFF)
MAX_KEY = NULL_KEY


def encode(values: np.ndarray) -> np.ndarray:
    """uint64 keys of float64 ``values`` in DuckDB's sort order (see the module docstring)."""
    x = np.asarray(values, dtype=np.float64) + 0.0  # -0.0 + 0.0 is +0.0
    bits = x.view(np.int64)
    # Negative doubles: flip all bits (larger magnitude = smaller); positive: set the sign bit.
    keys = (bits ^ ((bits >> 63) & LOW63)).view(np.uint64) ^ SIGN
    nan = np.isnan(x)
    if nan.any():
        keys[nan] = NAN_KEY
    return keys


def decode(keys: np.ndarray) -> np.ndarray:
    """float64 values of keys made by ``encode`` (``NULL_KEY`` decodes to NaN)."""
    k = np.asarray(keys, dtype=np.uint64)
    bits = (k ^ SIGN).view(np.int64)
    out = (bits ^ ((bits >> 63) & LOW63)).view(np.float64).copy()
    out[k == NULL_KEY] = np.nan
    return out


def decode_one(key: int) -> float:
    return float(decode(np.array([key], dtype=np.uint64))[0])


def quantile_ranks(n: int, q: float) -> tuple[int, int, float]:
    """``quantile_cont``'s ranks for ``n`` values: floor and ceiling of ``rn = (n - 1) * q``
    (computed in float64, as DuckDB does) and the fraction ``rn - floor(rn)``."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q!r} is not between 0 and 1")
    rn = float(np.float64(n - 1) * np.float64(q))
    lo = int(np.floor(rn))
    hi = int(np.ceil(rn))
    return lo, hi, rn - lo


def interpolate(lo: float, hi: float, d: float, fused: bool = True) -> float:
    """DuckDB's linear interpolation of doubles, ``lo * (1 - d) + hi * d``.

    DuckDB's x86-64 wheels compile it with a fused multiply-add, ``fma(lo, 1 - d, hi * d)``
    (one rounding of ``lo * (1 - d) + round(hi * d)``); ``fused=False`` is the plain two-rounding
    form of builds without FMA. ``datafilter.aggregate.duckdb_fuses_interpolation`` tells
    which one the installed DuckDB uses."""
    one = np.array([lo], dtype=np.float64)
    return float(interpolate_many(one, np.array([hi], np.float64), np.array([d], np.float64),
                                  np.zeros(1, bool), fused)[0])


def interpolate_many(
    lo: np.ndarray, hi: np.ndarray, d: np.ndarray, same_rank: np.ndarray, fused: bool = True
) -> np.ndarray:
    """``interpolate`` of each element; where ``same_rank`` (floor and ceiling of the rank are
    one row), ``lo`` itself, as DuckDB returns it without interpolating."""
    out = np.array(lo, dtype=np.float64, copy=True)
    todo = np.flatnonzero(~np.asarray(same_rank, dtype=bool))
    if not len(todo):
        return out
    a, c = lo[todo], 1.0 - d[todo]
    p = hi[todo] * d[todo]
    plain = a * c + p
    if not fused:
        out[todo] = plain
        return out
    exact, unsure = _fma(a, c, p)
    exact = np.where(np.isfinite(exact) | ~unsure, exact, plain)
    rows = np.flatnonzero(unsure & np.isfinite(a) & np.isfinite(c) & np.isfinite(p))
    for k, x, y, z in zip(rows.tolist(), a[rows].tolist(), c[rows].tolist(), p[rows].tolist(),
                          strict=True):
        # The exact x * y + z as a fraction of integers; int / int rounds correctly, once.
        nx, dx = x.as_integer_ratio()
        ny, dy = y.as_integer_ratio()
        nz, dz = z.as_integer_ratio()
        exact[k] = plain[k]  # beyond the largest double: the plain form's infinity
        with contextlib.suppress(OverflowError):
            exact[k] = (nx * ny * dz + nz * dx * dy) / (dx * dy * dz)
    out[todo] = exact
    return out


def _two_sum(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``s = fl(x + y)`` and its exact error ``e``: ``x + y == s + e`` (Knuth)."""
    s = x + y
    v = s - x
    return s, (x - (s - v)) + (y - v)


def _split(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = 134217729.0 * x  # 2**27 + 1 (Veltkamp)
    hi = t - (t - x)
    return hi, x - hi


def _fma(a: np.ndarray, c: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``a * c + p`` rounded once, in double-double arithmetic; ``unsure`` marks the rare
    elements whose result lies too near a rounding boundary (or out of the safe range) to
    trust, for an exact computation."""
    with np.errstate(all="ignore"):
        x = a * c
        ah, al = _split(a)
        ch, cl = _split(c)
        y = ((ah * ch - x) + ah * cl + al * ch) + al * cl  # a * c == x + y exactly (Dekker)
        s, e = _two_sum(x, p)  # x + p == s + e
        t, err = _two_sum(e, y)  # the rest, e + y == t + err
        r, z = _two_sum(s, t)  # s + t == r + z; the exact sum is r + z + err
        magnitude = np.abs(r)
        up = np.spacing(magnitude)
        down = magnitude - np.nextafter(magnitude, 0.0)
        toward_zero = (z < 0) == (r > 0)
        half_gap = np.where(toward_zero, down, up) / 2
        safe = (np.abs(a) < 1e290) & (np.abs(c) < 1e290) & (np.abs(p) < 1e290) & (
            magnitude > 1e-290)
        unsure = ~safe | ~(np.abs(z) + np.abs(err) < half_gap * (1 - 2.0**-20))
    return r, unsure


# Two sorted values and a quantile whose interpolation rounds differently fused and unfused
# (found by search): ``datafilter.aggregate.duckdb_fuses_interpolation`` asks DuckDB for this
# quantile (``PROBE_N`` values: ``PROBE_LOW`` up to the floor rank, ``PROBE_HIGH`` above).
PROBE_LOW, PROBE_HIGH, PROBE_Q, PROBE_N = -126.5, -118.3, 0.544, 97
