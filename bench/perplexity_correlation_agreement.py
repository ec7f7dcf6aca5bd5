"""How far datafilter's projections are from the ``perplexity-correlations`` package's.

    python bench/perplexity_correlation_agreement.py [--seeds 300]

Runs both ``linear`` and ``l2`` on the same inputs and prints, per suite, the cases compared,
how many differ and the largest absolute difference of a weight. Suites: ``random`` (every
estimator of the package on random bits-per-byte tables, three kinds of tau, atol 1e-12, 1e-9
and 1e-6), ``large`` (estimates from 1 to 1e7, where neighbouring floats near the bisection's
offset are as far apart as atol) and ``filled`` (sum(tau) = 1: every domain is filled to its
cap). The package's ``l2`` never returns in some cases (see ``projections.l2``): those are
found before calling it, by following its bisection, and only counted; datafilter's result
there is checked to lie within the caps and its distance of the mass to 1 is printed. The
package's ``linear`` fails where the running sum of tau stays below 1 by rounding: counted.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Iterator

import numpy as np

from datafilter.correlation import projections


def package_l2_returns(estimate: np.ndarray, tau: np.ndarray, atol: float) -> bool:
    """Whether the package's bisection ends: its bracket must be wider than atol at the start
    (else its result is never set) and every step must narrow it (else it repeats forever)."""
    low, high = -np.max(estimate), np.max(tau - estimate)
    if not high - low > atol:
        return False
    while high - low > atol:
        offset = (low + high) / 2
        if np.sum(np.clip(estimate + offset, 0, tau)) > 1:
            if offset == high:
                return False
            high = offset
        else:
            if offset == low:
                return False
            low = offset
    return True


def _random_cases(seeds: int) -> Iterator[tuple[np.ndarray, np.ndarray, float]]:
    import perplexity_correlations.estimation as estimation

    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        n, d = int(rng.integers(3, 60)), int(rng.integers(1, 800))
        X, y = rng.gamma(2.0, 0.6, size=(n, d)), rng.uniform(0.2, 0.9, size=n)
        if seed % 2:
            X, y = np.round(X, 1), np.round(y, 1)
        loose = rng.uniform(0.001, 3.0 / d + 0.01, size=d)
        loose = loose if loose.sum() >= 1 else loose / loose.sum() * 1.3
        taus = [loose, np.full(d, 1.0 / d) + 1e-9, np.full(d, 2.0)]
        for name in ("sign_cdf", "sign_sign", "spearmanr", "sign", "product"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                estimate = getattr(estimation, name)(X, y)
            for tau in taus:
                for atol in (1e-12, 1e-9, 1e-6):
                    yield estimate, tau, atol


def _scaled_cases(seeds: int, filled: bool) -> Iterator[tuple[np.ndarray, np.ndarray, float]]:
    rng = np.random.default_rng(10_000 + filled)
    for _ in range(seeds * 30):
        d = int(rng.integers(1, 50))
        estimate = 10.0 ** rng.uniform(0, 7) + rng.normal(size=d) * rng.choice([1e-3, 1.0, 10.0])
        tau = rng.uniform(0.01, 1.0, size=d)
        tau = tau / tau.sum() if filled else (tau if tau.sum() >= 1 else tau / tau.sum() * 1.2)
        if tau.sum() >= 1:
            yield estimate, tau, float(rng.choice([1e-12, 1e-10, 1e-9, 1e-6]))


def _compare(cases: Iterator[tuple[np.ndarray, np.ndarray, float]]) -> dict[str, float]:
    from perplexity_correlations.projection import l2, linear

    out = {"cases": 0, "l2_differ": 0, "l2_max": 0.0, "linear_differ": 0, "linear_max": 0.0}
    out |= {"package_never_returns": 0, "ours_there_worst_mass_error": 0.0}
    out |= {"linear_package_fails": 0}
    for estimate, tau, atol in cases:
        if atol == 1e-12:  # linear has no atol: once per input
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # its "slight violation of tau bounds"
                    theirs = linear(estimate, tau)
            except ValueError:  # the running sum of tau stays below 1 by rounding
                out["linear_package_fails"] += 1
            else:
                diff = float(np.max(np.abs(projections.linear(estimate, tau) - theirs)))
                out["linear_differ"] += diff > 0
                out["linear_max"] = max(out["linear_max"], diff)
        mine = projections.l2(estimate, tau, atol)
        if not package_l2_returns(estimate, tau, atol):
            out["package_never_returns"] += 1
            assert np.all((mine >= 0) & (mine <= tau))
            error = abs(float(mine.sum()) - 1)
            out["ours_there_worst_mass_error"] = max(out["ours_there_worst_mass_error"], error)
            continue
        out["cases"] += 1
        diff = float(np.max(np.abs(mine - l2(estimate, tau, atol))))
        out["l2_differ"] += diff > 0
        out["l2_max"] = max(out["l2_max"], diff)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=300)
    args = parser.parse_args()
    suites = {
        "random": _random_cases(args.seeds),
        "large": _scaled_cases(args.seeds, filled=False),
        "filled": _scaled_cases(args.seeds, filled=True),
    }
    print(
        f"{'suite':8} {'l2 cases':>9} {'differ':>7} {'max |diff|':>11} {'linear differ':>14} "
        f"{'max |diff|':>11} {'package fails':>14} {'l2 package loops':>17} "
        f"{'our worst |sum-1|':>18}"
    )
    for name, cases in suites.items():
        r = _compare(cases)
        print(
            f"{name:8} {r['cases']:9d} {r['l2_differ']:7d} {r['l2_max']:11.3g} "
            f"{r['linear_differ']:14d} {r['linear_max']:11.3g} {r['linear_package_fails']:14d} "
            f"{r['package_never_returns']:17d} {r['ours_there_worst_mass_error']:18.3g}"
        )


if __name__ == "__main__":
    main()
