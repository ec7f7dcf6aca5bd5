"""The five estimators of the per-domain weights theta, one number per domain (column of X).

``X`` is N models x D domains of bits per byte, ``y`` the N models' benchmark **error**. A high
(positive) estimate means that models with a lower loss on the domain tend to have a lower error:
the domain is worth keeping. The arithmetic follows the ``perplexity-correlations`` package
(Thrush et al.) operation for operation, so the results are bitwise equal to it, including its
ordinal ranks (``argsort`` of ``argsort``, so tied values get distinct ranks) and its Spearman
formula without a tie correction. Work is done in blocks of ``chunk`` domains: memory stays at
O(N x chunk) and no N x N x D array is ever built.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from datafilter.errors import InputError

ESTIMATORS = ("sign_cdf", "spearmanr", "sign_sign", "sign", "product")
DEFAULT_CHUNK = 2048


def check_inputs(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``X`` as a float64 N x D array and ``y`` as float64 N; an InputError if they don't fit."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2:
        raise InputError(f"bits-per-byte matrix has {X.ndim} dimensions; expected models x domains")
    if y.ndim != 1:
        raise InputError(f"benchmark errors have {y.ndim} dimensions; expected one per model")
    if X.shape[0] != y.shape[0]:
        raise InputError(f"{X.shape[0]} models in the bpb matrix but {y.shape[0]} benchmark errors")
    if X.shape[0] < 2:
        raise InputError("at least two models are needed to compare pairs of models")
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise InputError("bits per byte and benchmark errors must be finite numbers (no NaN)")
    return X, y


def ordinal_ranks(a: np.ndarray) -> np.ndarray:
    """Ranks 1..N along axis 0, ties in the order ``np.argsort`` leaves them (as the package)."""
    return np.argsort(np.argsort(a, axis=0), axis=0) + 1


def _blocks(D: int, chunk: int):
    """Column ranges of at most ``chunk`` (at least 2) columns, none of width 1 unless D == 1:
    numpy sums a one-column array pairwise but the rows of a wider one in order, and the
    package sums its whole D-column array."""
    chunk = max(chunk, 2)
    start = 0
    while start < D:
        stop = min(D, start + chunk)
        if D - stop == 1:
            stop = D
        yield start, stop
        start = stop


def product(X: np.ndarray, y: np.ndarray, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """Mean over models of ``y_k * x_kj`` (Plan et al.); proportional to theta, not robust."""
    X, y = check_inputs(X, y)
    return np.mean(y.T * X.T, axis=1)


def spearmanr(X: np.ndarray, y: np.ndarray, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """``1 - 6 sum_k (rank y_k - rank x_kj)^2 / (N (N^2 - 1))`` per domain."""
    X, y = check_inputs(X, y)
    N, D = X.shape
    y_ranks = ordinal_ranks(y)
    out = np.empty(D)
    for a, b in _blocks(D, chunk):
        x_ranks = ordinal_ranks(np.ascontiguousarray(X[:, a:b]))
        out[a:b] = 1 - 6 * np.sum((y_ranks.T - x_ranks.T) ** 2, axis=1) / (N * (N**2 - 1))
    return out


def _pairwise_sum(Z: np.ndarray, y: np.ndarray, chunk: int) -> np.ndarray:
    """``2 / (N (N-1)) * sum_{k<l} sign(y_l - y_k) (z_lj - z_kj)``, summed in the package's order
    (model by model, each a sum over the later models) so that the floats are identical."""
    N, D = Z.shape
    signs = np.sign(y[:, None] - y[None, :])  # signs[l, k] = sign(y_l - y_k)
    total = np.empty(D)
    for a, b in _blocks(D, chunk):
        block = np.ascontiguousarray(Z[:, a:b])
        acc = np.zeros(b - a)
        buffer = np.empty((N, b - a))
        for k in range(N):
            diff = buffer[: N - k]
            np.subtract(block[k:], block[k], out=diff)
            np.multiply(signs[k:, k][:, None], diff, out=diff)
            acc += np.sum(diff, axis=0)
        total[a:b] = acc
    return 2 * total / (N * (N - 1))


def sign(X: np.ndarray, y: np.ndarray, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """Mean over model pairs of ``sign(y_l - y_k) (x_lj - x_kj)`` (Chen & Banerjee); proportional
    to theta, robust to outliers in y only."""
    X, y = check_inputs(X, y)
    return _pairwise_sum(X, y, chunk)


def sign_cdf(X: np.ndarray, y: np.ndarray, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """The paper's estimator: mean over model pairs of ``sign(y_l - y_k) (F_j(x_lj) - F_j(x_kj))``
    with ``F_j`` the empirical CDF of column j (rank / N)."""
    X, y = check_inputs(X, y)
    N, D = X.shape
    out = np.empty(D)
    for a, b in _blocks(D, chunk):
        cdf = ordinal_ranks(np.ascontiguousarray(X[:, a:b])) / N
        out[a:b] = _pairwise_sum(cdf, y, chunk)
    return out


def sign_sign(X: np.ndarray, y: np.ndarray, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """Mean over model pairs of ``sign(y_l - y_k) sign(x_lj - x_kj)`` (Kendall-like). The sum is
    an integer, so counting comparisons gives the package's floats exactly."""
    X, y = check_inputs(X, y)
    N, D = X.shape
    signs = np.sign(y[:, None] - y[None, :])
    total = np.zeros(D)
    for a, b in _blocks(D, chunk):
        block = np.ascontiguousarray(X[:, a:b])
        for k in range(N - 1):
            later = block[k + 1 :]
            greater = (later > block[k]).view(np.int8)
            less = (later < block[k]).view(np.int8)
            total[a:b] += signs[k + 1 :, k] @ (greater - less)
    return 2 * total / (N * (N - 1))


_FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "sign_cdf": sign_cdf,
    "spearmanr": spearmanr,
    "sign_sign": sign_sign,
    "sign": sign,
    "product": product,
}


def estimate(
    X: np.ndarray, y: np.ndarray, method: str = "sign_cdf", chunk: int = DEFAULT_CHUNK
) -> np.ndarray:
    """The D estimates of ``method`` (one of ESTIMATORS) for bpb ``X`` and benchmark error ``y``."""
    if method not in _FUNCTIONS:
        from datafilter.errors import ConfigError

        raise ConfigError(f"unknown estimator {method!r}; choose one of {', '.join(ESTIMATORS)}")
    if chunk < 1:
        raise InputError(f"chunk must be at least 1, got {chunk}")
    return _FUNCTIONS[method](X, y, chunk)
