"""Mixtures of Gaussian or Student-t components fitted to a histogram by maximum likelihood on
the exact bin probabilities.

The likelihood of a histogram under a mixture is ``sum_j n_j log P_j`` with ``P_j`` the mixture's
probability of bin ``j`` (differences of CDFs; the two end bins reach to -inf and +inf). Unlike
EM on bin centres, this likelihood is bounded (a component cannot collapse onto one bin) and
needs no correction for the bin width. It is maximised with scipy's truncated Newton method from
several starting points; each start reaches a local optimum and all of them are returned, best
first, so a caller can see when different readings of the data fit equally well.

Student-t components (``nu`` degrees of freedom, shared by all components, fixed during a fit)
let one component carry a mode with heavy tails, which two Gaussians would split into a core
and a wide "tail" component.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class Component:
    """Weight, location and scale (the standard deviation of a Gaussian component)."""

    weight: float
    mean: float
    sd: float

    def as_dict(self) -> dict[str, float]:
        return {"weight": self.weight, "mean": self.mean, "sd": self.sd}


@dataclass(frozen=True)
class Mixture:
    """Components in ascending order of their means; ``nu`` None for Gaussians, else the
    Student-t degrees of freedom; ``loglik`` of the histogram it was fitted to, whose total
    count is ``n``."""

    components: tuple[Component, ...]
    loglik: float
    n: float
    nu: float | None = None

    @property
    def n_params(self) -> int:
        return 3 * len(self.components) - 1 + (self.nu is not None)

    def bic(self) -> float:
        """Bayesian information criterion (lower is better)."""
        return -2.0 * self.loglik + self.n_params * math.log(self.n)

    def pdf(self, x: np.ndarray | float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return sum(
            c.weight * standard_pdf((x - c.mean) / c.sd, self.nu) / c.sd for c in self.components
        )

    def cdf(self, x: np.ndarray | float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return sum(c.weight * standard_cdf((x - c.mean) / c.sd, self.nu) for c in self.components)

    def as_dict(self) -> dict[str, object]:
        return {
            "components": [c.as_dict() for c in self.components],
            "nu": self.nu,
            "loglik": self.loglik,
            "bic": self.bic(),
        }


def standard_cdf(z, nu: float | None):
    """CDF of the standard normal (``nu`` None) or Student t."""
    from scipy.special import ndtr, stdtr

    return ndtr(z) if nu is None else stdtr(nu, z)


def standard_pdf(z, nu: float | None):
    """Density of the standard normal (``nu`` None) or Student t."""
    z = np.asarray(z, dtype=np.float64)
    if nu is None:
        return INV_SQRT_2PI * np.exp(-0.5 * z * z)
    norm = math.exp(math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2)) / math.sqrt(nu * math.pi)
    return norm * (1.0 + z * z / nu) ** (-(nu + 1) / 2)


Start = tuple[Sequence[float], Sequence[float], Sequence[float]]  # weights, means, sds


def fit_mixture(
    edges: np.ndarray,
    counts: np.ndarray,
    starts: Sequence[Start],
    *,
    tied: bool = False,
    nu: float | None = None,
) -> list[Mixture]:
    """The local optimum reached from each start (all starts with the same number of
    components), best likelihood first. ``tied``: one scale shared by all components (the
    start's first one); ``nu``: Student-t components with these degrees of freedom."""
    from scipy.optimize import minimize

    edges = np.asarray(edges, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    total = float(counts.sum())
    width = float(edges[1] - edges[0])
    span = float(edges[-1] - edges[0])
    open_edges = np.concatenate([[-np.inf], edges[1:-1], [np.inf]])
    fits = []
    for weights, means, sds in starts:
        k = len(weights)
        w0 = np.maximum(np.asarray(weights, dtype=np.float64), 1e-9)
        sds = np.maximum(sds, width / 2)[: 1 if tied else k]
        theta = np.r_[np.log(w0[1:] / w0[0]), means, np.log(sds)]
        bounds = (
            [(-25.0, 25.0)] * (k - 1)
            + [(edges[0] - span, edges[-1] + span)] * k
            + [(math.log(width / 4), math.log(4 * span))] * len(sds)
        )
        result = minimize(
            _negative_loglik,
            theta,
            args=(k, open_edges, counts, total, tied, nu),
            jac=True,
            method="TNC",
            bounds=bounds,
            options={"maxfun": 400},
        )
        w, mu, sd = _unpack(result.x, k, tied)
        order = np.argsort(mu)
        components = tuple(Component(float(w[i]), float(mu[i]), float(sd[i])) for i in order)
        fits.append(Mixture(components, -float(result.fun) * total, total, nu))
    fits.sort(key=lambda m: -m.loglik)
    return fits


def _unpack(
    theta: np.ndarray, k: int, tied: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    eta = np.empty(k)
    eta[0] = 0.0
    eta[1:] = theta[: k - 1]
    w = np.exp(eta - eta.max())
    sd = np.exp(theta[2 * k - 1 :])
    return w / w.sum(), theta[k - 1 : 2 * k - 1], np.repeat(sd, k) if tied else sd


def _negative_loglik(
    theta: np.ndarray,
    k: int,
    edges: np.ndarray,
    counts: np.ndarray,
    total: float,
    tied: bool,
    nu: float | None,
) -> tuple[float, np.ndarray]:
    """Minus the binned log-likelihood per document, and its gradient. ``edges`` run from
    -inf to +inf (the end bins are open)."""
    w, mu, sd = _unpack(theta, k, tied)
    limit = 40.0 if nu is None else 1e8  # beyond it the CDF is 0 or 1 to double precision
    z = np.clip((edges - mu[:, None]) / sd[:, None], -limit, limit)  # (k, bins + 1)
    # P(a < X < b) as a difference of CDFs, or of survival functions in the upper tail (no
    # cancellation there).
    cdf, sf = standard_cdf(z, nu), standard_cdf(-z, nu)
    prob = np.where(z[:, :-1] > 0, sf[:, :-1] - sf[:, 1:], cdf[:, 1:] - cdf[:, :-1])
    dens = standard_pdf(z, nu)
    zdens = z * dens
    mixture = np.maximum(w @ prob, 1e-300)
    r = counts / mixture
    g_w = prob @ r
    g_eta = w * (g_w - w @ g_w)
    g_mu = w * ((dens[:, :-1] - dens[:, 1:]) @ r) / sd
    g_log_sd = w * ((zdens[:, :-1] - zdens[:, 1:]) @ r)
    grad = np.concatenate([g_eta[1:], g_mu, [g_log_sd.sum()] if tied else g_log_sd])
    return -float(counts @ np.log(mixture)) / total, -grad / total
