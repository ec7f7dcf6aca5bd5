"""Estimators and projections of perplexity-correlation selection: a hand-computed example, and
random and structured inputs compared bit for bit with the reference package
``perplexity-correlations`` (a test-only dependency)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from datafilter.correlation import estimators as est
from datafilter.correlation import projections as proj
from datafilter.errors import InputError

ref_est = pytest.importorskip("perplexity_correlations.estimation")
ref_proj = pytest.importorskip("perplexity_correlations.projection")


def _reference(name: str, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the package warns about bpb < 0 or errors outside [0,1]
        return getattr(ref_est, name)(X, y)


# Three models (errors 0.2, 0.5, 0.4) and two domains. Model 0, the best, has the lowest loss on
# domain A, so A must get a positive estimate; on B the best model is in the middle.
Y = np.array([0.2, 0.5, 0.4])
X = np.array([[1.0, 2.0], [3.0, 1.5], [2.0, 2.5]])
# Model pairs (k, l) with k < l: (0, 1), (0, 2), (1, 2); sign(y_l - y_k) = +1, +1, -1.
PAIR_SIGNS = (1, 1, -1)
PAIRS = 3  # N (N - 1) / 2


def _hand_computed() -> dict[str, tuple[float, float]]:
    s01, s02, s12 = PAIR_SIGNS
    # Domain A: x = 1, 3, 2 (ranks 1, 3, 2; CDF 1/3, 1, 2/3). Domain B: x = 2, 1.5, 2.5
    # (ranks 2, 1, 3; CDF 2/3, 1/3, 1).
    return {
        "sign_sign": (
            (s01 * 1 + s02 * 1 + s12 * -1) / PAIRS,
            (s01 * -1 + s02 * 1 + s12 * 1) / PAIRS,
        ),
        "sign": (
            (s01 * (3 - 1) + s02 * (2 - 1) + s12 * (2 - 3)) / PAIRS,
            (s01 * (1.5 - 2) + s02 * (2.5 - 2) + s12 * (2.5 - 1.5)) / PAIRS,
        ),
        "sign_cdf": (
            (s01 * (1 - 1 / 3) + s02 * (2 / 3 - 1 / 3) + s12 * (2 / 3 - 1)) / PAIRS,
            (s01 * (1 / 3 - 2 / 3) + s02 * (1 - 2 / 3) + s12 * (1 - 1 / 3)) / PAIRS,
        ),
        # y ranks 1, 3, 2: A's ranks match exactly (d = 0); B's differ by -1, 2, -1.
        "spearmanr": (1 - 6 * 0 / (3 * 8), 1 - 6 * (1 + 4 + 1) / (3 * 8)),
        "product": ((0.2 * 1 + 0.5 * 3 + 0.4 * 2) / 3, (0.2 * 2 + 0.5 * 1.5 + 0.4 * 2.5) / 3),
    }


@pytest.mark.parametrize("name", est.ESTIMATORS)
def test_hand_computed_example(name: str) -> None:
    expected = np.array(_hand_computed()[name])
    mine = est.estimate(X, Y, name)
    np.testing.assert_allclose(mine, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(_reference(name, X, Y), expected, rtol=0, atol=1e-12)
    if name != "product":  # the sign convention: A (best model has the lowest loss) is preferred
        assert mine[0] > 0 > mine[1]


def test_hand_computed_projections() -> None:
    # linear: fill by estimate (domain 0, then 2, then 1) up to tau until the mass is 1.
    e, tau = np.array([0.9, 0.1, 0.5]), np.array([0.5, 0.8, 0.4])
    np.testing.assert_allclose(proj.linear(e, tau), [0.5, 1 - 0.5 - 0.4, 0.4], atol=1e-7)
    # l2: no cap binds, so the offset is (1 - sum(e)) / 3 = 1/6.
    e, tau = np.array([0.3, 0.2, 0.0]), np.full(3, 0.6)
    np.testing.assert_allclose(proj.l2(e, tau), e + 1 / 6, atol=1e-9)
    np.testing.assert_allclose(proj.linear(e, tau), [0.6, 0.4, 0.0], atol=1e-7)


def _random_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random sizes; odd seeds round the values so that ties appear in X and y."""
    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(10, 45)), int(rng.integers(1, 600))
    X = rng.gamma(2.0, 0.6, size=(n, d))
    y = rng.uniform(0.2, 0.9, size=n)
    if seed % 2:
        X, y = np.round(X, 1), np.round(y, 1)
    return X, y


def _structured_cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    n = 12
    y = np.linspace(0.3, 0.8, n)
    y_ties = np.repeat([0.3, 0.5, 0.7], 4)
    base = rng.uniform(0.5, 3.0, size=(n, 5))
    columns = {
        "increasing": 1.0 + y,  # loss rises with error: the best case
        "decreasing": 3.0 - y,
        "constant": np.full(n, 1.7),
        "duplicate": base[:, 0],
        "same_again": base[:, 0],
        "huge": 1e6 + base[:, 1],
        "tiny": 1e-9 * base[:, 2],
        "two_levels": np.where(np.arange(n) % 2 == 0, 1.0, 2.0),
    }
    X = np.column_stack(list(columns.values()))
    return [
        ("structured", X, y),
        ("structured, tied errors", X, y_ties),
        ("two models", base[:2], y[:2]),
        ("one domain", base[:, :1], y),
        ("identical models", np.tile(base[:1], (n, 1)), y),
    ]


CASES = [(f"random seed {s}", *_random_case(s)) for s in range(10)] + _structured_cases()


@pytest.mark.parametrize(("label", "X", "y"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("name", est.ESTIMATORS)
def test_estimators_equal_the_package(label, X, y, name) -> None:
    mine = est.estimate(X, y, name, chunk=7)  # a small chunk crosses many block boundaries
    np.testing.assert_array_equal(mine, _reference(name, X, y))
    np.testing.assert_array_equal(est.estimate(X, y, name), mine)


def test_structured_signs() -> None:
    _, X, y = _structured_cases()[0]
    for name in ("sign_cdf", "sign_sign", "spearmanr", "sign"):
        theta = est.estimate(X, y, name)
        assert theta[0] > 0 > theta[1], name  # increasing loss-error relation is preferred
    assert est.estimate(X, y, "sign_sign")[0] == 1.0
    assert est.estimate(X, y, "spearmanr")[1] == -1.0
    assert est.estimate(X, y, "sign_sign")[2] == 0.0  # a constant domain says nothing


def _taus(seed: int, d: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1000 + seed)
    loose = rng.uniform(0.001, 3.0 / d + 0.01, size=d)
    loose = loose if loose.sum() >= 1 else loose / loose.sum() * 1.3
    tight = np.full(d, 1.0 / d) + 1e-9  # every domain filled
    return [loose, tight, np.full(d, 2.0)]


@pytest.mark.parametrize(("label", "X", "y"), CASES, ids=[c[0] for c in CASES])
def test_projections_equal_the_package(label, X, y) -> None:
    for name in est.ESTIMATORS:
        theta = _reference(name, X, y)
        for tau in _taus(len(label), X.shape[1]):
            mine = proj.linear(theta, tau)
            theirs = ref_proj.linear(theta, tau)
            assert mine.dtype == theirs.dtype
            np.testing.assert_array_equal(mine, theirs)
            for atol in (1e-12, 1e-6):
                if _package_l2_terminates(theta, tau, atol):
                    np.testing.assert_array_equal(
                        proj.l2(theta, tau, atol), ref_proj.l2(theta, tau, atol)
                    )
            # the whole path, data to weights, with this module's estimate
            np.testing.assert_array_equal(
                proj.project(est.estimate(X, y, name), tau, "linear"), theirs.astype(np.float64)
            )


def _package_l2_terminates(theta: np.ndarray, tau: np.ndarray, atol: float) -> bool:
    """Whether the package's l2 returns, found by following its bisection: the bracket must be
    wider than atol at the start and every step must narrow it (with estimates so large that
    floats near the offset are further apart than atol, e.g. ``product`` near 1e6, a step can
    leave it as it is, and the package repeats that step forever)."""
    low, high = -np.max(theta), np.max(tau - theta)
    if not high - low > atol:
        return False
    while high - low > atol:
        offset = (low + high) / 2
        if np.sum(np.clip(theta + offset, 0, tau)) > 1:
            if offset == high:
                return False
            high = offset
        else:
            if offset == low:
                return False
            low = offset
    return True


def test_l2_ends_where_the_package_would_loop() -> None:
    theta = np.array([5e5, 5e5 + 0.25, 5e5 - 3.0])
    tau = np.full(3, 0.6)
    assert not _package_l2_terminates(theta, tau, 1e-12)
    p = proj.l2(theta, tau)
    assert abs(p.sum() - 1) < 1e-9 and np.all((p >= 0) & (p <= tau))


def test_l2_equals_the_package_where_every_domain_is_filled() -> None:
    """README: l2 is bitwise the package's wherever the package returns. With sum(tau) = 1 and
    large estimates the bisection's last step lands on the bracket's upper end, which the
    package evaluates; the earlier datafilter stopped one step before and differed by up to
    1.9e-9 (bench/perplexity_correlation_agreement.py, suite ``filled``)."""
    cases = [
        (np.array([29971.0, 42269.0]), np.array([0.5, 0.5])),
        (np.array([414656.0, 734484.0]), np.array([0.5, 0.5])),
        (np.array([114933.0, 729015.0, 927424.0, 967926.0]), np.full(4, 0.25)),
    ]
    rng = np.random.default_rng(5)
    for _ in range(300):
        d = int(rng.integers(1, 30))
        theta = 10.0 ** rng.uniform(0, 7) + rng.normal(size=d)
        tau = rng.uniform(0.01, 1.0, size=d)
        cases.append((theta, tau / tau.sum()))
    compared = 0
    for theta, tau in cases:
        for atol in (1e-12, 1e-9):
            if tau.sum() >= 1 and _package_l2_terminates(theta, tau, atol):
                theirs = ref_proj.l2(theta, tau, atol)
                np.testing.assert_array_equal(proj.l2(theta, tau, atol), theirs)
                compared += 1
    assert compared > 300


def test_projection_constraints() -> None:
    rng = np.random.default_rng(3)
    theta = rng.normal(size=50)
    tau = rng.uniform(0.01, 0.1, size=50)
    for name in ("linear", "l2"):
        p = proj.project(theta, tau, name)
        assert abs(p.sum() - 1) < 1e-6
        assert np.all(p >= 0) and np.all(p <= tau + 1e-7)
    # linear keeps the highest estimates: every chosen domain outranks every unchosen one
    p = proj.project(theta, tau, "linear")
    assert theta[p > 0].min() > theta[p == 0].max()


def test_linear_when_rounding_leaves_the_running_sum_short() -> None:
    tau = np.full(10, 0.1)  # sum(tau) >= 1, but the running sum ends at 0.9999999999999999
    assert tau.sum() >= 1 and np.cumsum(tau)[-1] < 1
    p = proj.linear(np.arange(10.0), tau)
    np.testing.assert_allclose(p, np.full(10, 0.1), atol=1e-7)


def test_projection_errors() -> None:
    with pytest.raises(InputError, match="tau <= 0"):
        proj.linear(np.array([1.0, 2.0]), np.array([1.0, 0.0]))
    with pytest.raises(InputError, match="sum\\(tau\\)"):
        proj.l2(np.array([1.0, 2.0]), np.array([0.3, 0.3]))
    with pytest.raises(InputError, match="same length"):
        proj.linear(np.array([1.0]), np.array([1.0, 1.0]))
    assert np.array_equal(proj.tau_for_budget(np.array([50, 150]), 100), [0.5, 1.5])


def test_estimator_input_errors() -> None:
    with pytest.raises(InputError, match="finite"):
        est.estimate(np.array([[1.0, np.nan], [2.0, 1.0]]), np.array([0.1, 0.2]))
    with pytest.raises(InputError, match="3 benchmark errors"):
        est.estimate(np.ones((2, 4)), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(InputError, match="two models"):
        est.estimate(np.ones((1, 4)), np.array([0.1]))
