"""Projections of the estimates onto sampling distributions ``p`` over domains with
``sum(p) = 1`` and ``0 <= p_j <= tau_j``, computed as the ``perplexity-correlations`` package
does (same operations, same float32 result of ``linear``), so the results are bitwise equal to
its results wherever it returns one (measured by ``bench/perplexity_correlation_agreement.py``).

``tau_j = (tokens_j / total_tokens) / keep_ratio = tokens_j / budget``: no domain is sampled
beyond the data it has.
"""

from __future__ import annotations

import numpy as np

from datafilter.errors import ConfigError, InputError

PROJECTIONS = ("linear", "l2")


def check_tau(estimate: np.ndarray, tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both as float64 vectors of one length; tau > 0 everywhere and sum(tau) >= 1."""
    estimate = np.asarray(estimate, dtype=np.float64)
    tau = np.asarray(tau, dtype=np.float64)
    if estimate.ndim != 1 or tau.ndim != 1 or estimate.shape != tau.shape:
        raise InputError(
            f"estimate {estimate.shape} and tau {tau.shape} must be vectors of the same length"
        )
    if estimate.size == 0:
        raise InputError("no domains to project")
    if not (np.isfinite(estimate).all() and np.isfinite(tau).all()):
        raise InputError("estimates and tau must be finite")
    if np.any(tau <= 0):
        raise InputError(
            f"{int(np.sum(tau <= 0))} domain(s) have tau <= 0; leave domains without data out"
        )
    if np.sum(tau) < 1:
        raise InputError(
            f"projection infeasible: sum(tau) = {np.sum(tau):.6g} < 1 (the budget is larger than "
            "the data of the domains that can be chosen)"
        )
    return estimate, tau


def linear(estimate: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Maximise <p, estimate>: fill domains to tau in descending order of the estimate until
    the mass is 1; the last one gets the rest. Depends only on the ranks. float32, as the
    package returns it."""
    estimate, tau = check_tau(estimate, tau)
    order = np.argsort(-1 * estimate)
    tau_sorted = tau[order]
    p = np.zeros_like(estimate, dtype=np.float32)
    reached = np.nonzero(np.cumsum(tau_sorted) >= 1)[0]
    # sum(tau) >= 1 but the running sum can fall short by rounding: then every domain is used
    # (the package fails there with an empty-array error).
    first_full = int(np.min(reached)) if len(reached) else len(tau_sorted) - 1
    if first_full == 0:
        p[order[0]] = 1
    else:
        p[order[:first_full]] = tau_sorted[:first_full]
        p[order[first_full]] = 1 - np.sum(p)
    return p


def l2(estimate: np.ndarray, tau: np.ndarray, atol: float = 1e-12) -> np.ndarray:
    """The Euclidean projection: ``clip(estimate + c, 0, tau)`` with the offset ``c`` found by
    bisection until the bracket is narrower than ``atol``, step for step as the package does,
    so the result is bitwise the package's wherever the package returns. It does not return
    where the bracket is narrower than ``atol`` from the start (its result is then unset) or
    where a bisection step would leave the bracket as it is (the estimates are so large that
    neighbouring floats are further apart than ``atol``: it loops forever). Here the first
    returns the projection at the bracket's midpoint, the second the projection at that step's
    offset."""
    estimate, tau = check_tau(estimate, tau)
    if not atol > 0:
        raise ConfigError(f"atol must be positive, got {atol}")
    low = -np.max(estimate)
    high = np.max(tau - estimate)
    projected = np.clip(estimate + (low + high) / 2, 0, tau)
    while high - low > atol:
        offset = (low + high) / 2
        projected = np.clip(estimate + offset, 0, tau)
        if np.sum(projected) > 1:
            if offset == high:
                break  # the package would repeat this step forever
            high = offset
        else:
            if offset == low:
                break
            low = offset
    return projected


def project(
    estimate: np.ndarray, tau: np.ndarray, method: str = "linear", atol: float = 1e-12
) -> np.ndarray:
    """The sampling distribution of ``method`` (one of PROJECTIONS), as float64."""
    if method == "linear":
        return linear(estimate, tau).astype(np.float64)
    if method == "l2":
        return l2(estimate, tau, atol)
    raise ConfigError(f"unknown projection {method!r}; choose one of {', '.join(PROJECTIONS)}")


def tau_for_budget(tokens: np.ndarray, budget: float) -> np.ndarray:
    """``tau_j = (tokens_j / total) / keep_ratio`` with ``keep_ratio = budget / total``."""
    if not budget > 0:
        raise ConfigError(f"the token budget must be positive, got {budget}")
    return np.asarray(tokens, dtype=np.float64) / float(budget)
