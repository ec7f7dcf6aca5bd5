"""Speed of the perplexity-correlation estimators and projections against the reference package.

    python bench/perplexity_correlation_speed.py [--models 100] [--domains 100000] [--repeat 3]

For each estimator: the best of ``--repeat`` wall times of datafilter's implementation and of
``perplexity-correlations`` on the same random X (models x domains, bits per byte) and y
(benchmark errors), whether the two results are bitwise equal, and the peak memory each
allocates (tracemalloc). Then the two projections on the sign_cdf estimate.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
import warnings

import numpy as np

from datafilter.correlation import estimators, projections


def _best(fn, repeat: int) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def _peak_mb(fn) -> float:
    """Peak memory allocated while ``fn`` runs (numpy reports its buffers to tracemalloc)."""
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--domains", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import perplexity_correlations.estimation as ref_est
    import perplexity_correlations.projection as ref_proj

    rng = np.random.default_rng(args.seed)
    X = rng.gamma(4.0, 0.3, size=(args.models, args.domains))
    y = rng.uniform(0.3, 0.8, size=args.models)
    print(f"X: {args.models} models x {args.domains} domains ({X.nbytes / 1e6:.0f} MB)")
    print(
        f"{'estimator':<10} {'datafilter s':>12} {'package s':>10} {'equal':>6} "
        f"{'peak MB':>8} {'package peak MB':>16}"
    )
    theta = None
    for name in estimators.ESTIMATORS:
        mine_s, mine = _best(lambda n=name: estimators.estimate(X, y, n), args.repeat)
        ref_s, ref = _best(lambda n=name: getattr(ref_est, n)(X, y), args.repeat)
        peak = _peak_mb(lambda n=name: estimators.estimate(X, y, n))
        ref_peak = _peak_mb(lambda n=name: getattr(ref_est, n)(X, y))
        equal = np.array_equal(mine, ref)
        print(
            f"{name:<10} {mine_s:>12.2f} {ref_s:>10.2f} {str(equal):>6} {peak:>8.1f} "
            f"{ref_peak:>16.1f}"
        )
        if name == "sign_cdf":
            theta = mine
    tau = rng.uniform(0.5, 3.0, size=args.domains) / args.domains * 4
    for name in projections.PROJECTIONS:
        mine_s, mine = _best(lambda n=name: projections.project(theta, tau, n), args.repeat)
        ref_s, ref = _best(lambda n=name: getattr(ref_proj, n)(theta, tau), args.repeat)
        equal = np.array_equal(mine, np.asarray(ref, dtype=np.float64))
        print(f"{name:<10} {mine_s:>12.3f} {ref_s:>10.3f} {str(equal):>6}")


if __name__ == "__main__":
    main()
