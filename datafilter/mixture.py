"""Gaussian mixtures fitted to a histogram by maximum likelihood on the exact bin probabilities.

The likelihood of a histogram under a mixture is ``sum_j n_j log P_j`` with ``P_j`` the mixture's
probability of bin ``j`` (differences of normal CDFs; the two end bins reach to -inf and +inf).
Unlike EM on bin centres, this likelihood is bounded (a component cannot collapse onto one bin)
and needs no correction for the bin width. It is maximised with scipy's truncated Newton method
from several starting points; each start reaches a local optimum and all of them are returned,
best first, so a caller can see when different readings of the data fit equally well.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class Gaussian:
    weight: float
    mean: float
    sd: float

    def as_dict(self) -> dict[str, float]:
        return {"weight": self.weight, "mean": self.mean, "sd": self.sd}


@dataclass(frozen=True)
class Mixture:
    """Components in ascending order of their means; ``loglik`` of the histogram it was fitted
    to, whose total count is ``n``."""

    components: tuple[Gaussian, ...]
    loglik: float
    n: float

    @property
    def n_params(self) -> int:
        return 3 * len(self.components) - 1

    def bic(self) -> float:
        """Bayesian information criterion (lower is better)."""
        return -2.0 * self.loglik + self.n_params * math.log(self.n)

    def pdf(self, x: np.ndarray | float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return sum(c.weight * _pdf((x - c.mean) / c.sd) / c.sd for c in self.components)

    def cdf(self, x: np.ndarray | float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return sum(c.weight * _ndtr((x - c.mean) / c.sd) for c in self.components)

    def as_dict(self) -> dict[str, object]:
        return {
            "components": [c.as_dict() for c in self.components],
            "loglik": self.loglik,
            "bic": self.bic(),
        }


def _ndtr(z):
    from scipy.special import ndtr

    return ndtr(z)


def _pdf(z):
    return INV_SQRT_2PI * np.exp(-0.5 * np.square(z))


Start = tuple[Sequence[float], Sequence[float], Sequence[float]]  # weights, means, sds


def fit_mixture(
    edges: np.ndarray, counts: np.ndarray, starts: Sequence[Start], *, tied: bool = False
) -> list[Mixture]:
    """The local optimum reached from each start (all starts with the same number of
    components), best likelihood first. ``tied``: one standard deviation shared by all
    components (the start's first one)."""
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
            args=(k, open_edges, counts, total, tied),
            jac=True,
            method="TNC",
            bounds=bounds,
            options={"maxfun": 400},
        )
        w, mu, sd = _unpack(result.x, k, tied)
        order = np.argsort(mu)
        components = tuple(Gaussian(float(w[i]), float(mu[i]), float(sd[i])) for i in order)
        fits.append(Mixture(components, -float(result.fun) * total, total))
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
    theta: np.ndarray, k: int, edges: np.ndarray, counts: np.ndarray, total: float, tied: bool
) -> tuple[float, np.ndarray]:
    """Minus the binned log-likelihood per document, and its gradient. ``edges`` run from
    -inf to +inf (the end bins are open)."""
    from scipy.special import ndtr

    w, mu, sd = _unpack(theta, k, tied)
    z = np.clip((edges - mu[:, None]) / sd[:, None], -40.0, 40.0)  # (k, bins + 1)
    # P(a < X < b) as a difference of CDFs, or of survival functions in the upper tail (no
    # cancellation there).
    cdf, sf = ndtr(z), ndtr(-z)
    prob = np.where(z[:, :-1] > 0, sf[:, :-1] - sf[:, 1:], cdf[:, 1:] - cdf[:, :-1])
    dens = INV_SQRT_2PI * np.exp(-0.5 * z * z)
    zdens = z * dens
    mixture = np.maximum(w @ prob, 1e-300)
    r = counts / mixture
    g_w = prob @ r
    g_eta = w * (g_w - w @ g_w)
    g_mu = w * ((dens[:, :-1] - dens[:, 1:]) @ r) / sd
    g_log_sd = w * ((zdens[:, :-1] - zdens[:, 1:]) @ r)
    grad = np.concatenate([g_eta[1:], g_mu, [g_log_sd.sum()] if tied else g_log_sd])
    return -float(counts @ np.log(mixture)) / total, -grad / total
