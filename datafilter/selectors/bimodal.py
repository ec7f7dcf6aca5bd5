"""Does a histogram hold a separate LOW mode, and where does it end?

Used by ``harmful_outlier`` on log-perplexity under a model of harmful text: harmful documents
form a small mode at the low end. One component and a mixture of two are fitted to the binned
counts (:mod:`.mixture`), from several starts, one at the extreme low tail, so that a
mode of 0.5 % of the documents is found. Readings of the two-component fit:

- the best local optimum, or another within ``tie_loglik`` nats of it that is more separated: a
  small mode beside a large one and a slightly skewed large one can fit a histogram equally
  well, and only the first reading isolates the small mode;
- the fit with one spread shared by both components, when a likelihood-ratio test does not
  reject equal spreads (at 1 %): with few harmful documents the free fit tends to widen the
  small component until it overlaps the large one;
- Student-t components (8 or 4 degrees of freedom) instead of Gaussians where they fit better
  by more than the BIC's price of a parameter: a clean mode with heavy tails otherwise takes
  both Gaussians (a core and a wide tail) and the harmful mode is missed.

The most separated reading is then accepted only when

- two components fit clearly better than the best single one, Gaussian or t (BIC gain >=
  ``min_bic_gain``);
- they are apart: Ashman's D >= ``min_separation`` (computed on the scales). A two-component
  fit to ONE skewed mode (skew-normal, gamma, log-normal, Gumbel, ex-Gaussian, beta) has D of
  1.0-1.8 and to one heavy-tailed mode (Student t, Laplace, logistic) D near 0, while two
  Gaussian modes d' = 3 standard deviations apart give D near 3;
- the low component is a minority of a plausible size (``min_share``/``min_docs`` to
  ``max_share`` of the documents);
- the data do not fill the valley the fit draws at the cut (observed count near the cut at most
  ``max_fill`` times the fitted one, or not significantly more).

The cut is where the F1 score of "below the cut = low component" is highest under the fitted
mixture (``cut="f1"``), or where the low component's posterior falls below 0.5
(``cut="posterior"``: fewer errors in total, but lower recall of a small mode). The synthetic
battery (:mod:`datafilter.selectors.mixture_battery`) decided these choices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from datafilter.selectors.mixture import Component, Mixture, fit_mixture, standard_cdf, standard_pdf

FIT_BINS = 128  # the fit runs on the histogram merged down to at most this many bins
# Two-component starts: the quantiles where the histogram is split into two parts.
FREE_STARTS = (0.002, 0.01, 0.05, 0.2, 0.5, 0.9)
EQUAL_SPREAD_STARTS = (0.01, 0.05, 0.2)
# Component shapes: Gaussian (None) and Student t with these degrees of freedom.
TAILS = (None, 8.0, 4.0)
MIN_DOCS_TO_FIT = 50
EQUAL_SPREAD_LR = 6.63  # chi-square(1) at 0.99: equal spreads are not rejected below this


@dataclass(frozen=True)
class LowModeRules:
    """When a fitted low mode is accepted, and how its cut is placed."""

    min_separation: float = 2.0
    min_share: float = 0.002
    max_share: float = 0.5
    min_docs: int = 20
    min_bic_gain: float = 10.0
    tie_loglik: float = 3.0
    max_fill: float = 1.5
    cut: Literal["f1", "posterior"] = "f1"


@dataclass(frozen=True)
class LowMode:
    """The fits, the cut the two-component fit suggests, and whether it is accepted (``found``)
    or why not (``reason``)."""

    n_docs: int
    one: Mixture | None
    two: Mixture | None
    found: bool
    reason: str | None
    cut: float | None = None  # where the two-component fit would cut (even if not accepted)
    separation: float | None = None
    bic_gain: float | None = None
    expected_precision: float | None = None  # under the fitted mixture, at the cut
    expected_recall: float | None = None
    fill: float | None = None  # observed / fitted documents around the cut

    @property
    def low(self) -> Component | None:
        return self.two.components[0] if self.two else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "reason": self.reason,
            "n_docs": self.n_docs,
            "one": self.one.as_dict() if self.one else None,
            "two": self.two.as_dict() if self.two else None,
            "cut": self.cut,
            "separation": self.separation,
            "bic_gain": self.bic_gain,
            "expected_precision": self.expected_precision,
            "expected_recall": self.expected_recall,
            "fill": self.fill,
        }


def find_low_mode(edges: np.ndarray, counts: np.ndarray, rules: LowModeRules) -> LowMode:
    """Fit one and two components to a histogram (``len(edges) == len(counts) + 1``, equal
    widths) and decide whether its low end is a separate mode."""
    edges, counts = merge_bins(np.asarray(edges, float), np.asarray(counts, float), FIT_BINS)
    n = int(counts.sum())
    if n < MIN_DOCS_TO_FIT or np.count_nonzero(counts) < 3:
        return LowMode(n, None, None, False, f"too few distinct scores to fit ({n} documents)")
    start = single_start(edges, counts)
    # The best single mode of any shape is what two modes must beat.
    one = max((fit_mixture(edges, counts, [start], nu=nu)[0] for nu in TAILS), key=_loglik)
    free = split_starts(edges, counts, FREE_STARTS)
    fits = fit_mixture(edges, counts, free)
    nu = _heavier_tails(edges, counts, fits[0])
    if nu is not None:
        fits = sorted(fit_mixture(edges, counts, free, nu=nu), key=lambda m: -m.loglik)
    readings = [m for m in fits if m.loglik >= fits[0].loglik - rules.tie_loglik]
    pooled = [_pooled(s) for s in split_starts(edges, counts, EQUAL_SPREAD_STARTS)]
    equal = fit_mixture(edges, counts, pooled, tied=True, nu=nu)[0]
    if 2 * (fits[0].loglik - equal.loglik) <= EQUAL_SPREAD_LR:
        readings.append(equal)
    two = max(readings, key=separation)
    low, high = two.components
    d = separation(two)
    gain = one.bic() - two.bic()
    cut = place_cut(two, rules.cut)
    mode = LowMode(n, one, two, False, None, cut, d, gain)
    if cut is not None:
        precision, recall = expected_quality(two, cut)
        mode = _with(mode, expected_precision=precision, expected_recall=recall)
        mode = _with(mode, fill=fill_ratio(edges, counts, two, cut)[0])
    return _with(mode, **_verdict(mode, edges, counts, rules))


def _verdict(mode: LowMode, edges, counts, rules: LowModeRules) -> dict[str, Any]:
    low = mode.low
    share = low.weight
    if mode.bic_gain < rules.min_bic_gain:
        return _no(
            f"one mode fits: a second component does not fit clearly better (BIC gain "
            f"{mode.bic_gain:.1f} < {rules.min_bic_gain:g})"
        )
    if mode.separation < rules.min_separation:
        return _no(
            f"the two fitted modes overlap (Ashman's D {mode.separation:.2f} < "
            f"{rules.min_separation:g}): one skewed or heavy-tailed mode, not two"
        )
    if share > rules.max_share:
        return _no(
            f"the low mode holds {share:.0%} of the documents, more than max_share "
            f"{rules.max_share:.0%}: that is the bulk of the corpus, not a harmful minority"
        )
    if share < rules.min_share or share * mode.n_docs < rules.min_docs:
        return _no(
            f"the low mode holds {share:.2%} of the documents (about "
            f"{share * mode.n_docs:.0f}), under min_share {rules.min_share:.2%} or min_docs "
            f"{rules.min_docs}"
        )
    if mode.cut is None:
        return _no("the low mode never outweighs the high one: no cut between them")
    fill, observed, expected = fill_ratio(edges, counts, mode.two, mode.cut)
    if fill > rules.max_fill and (observed - expected) > 3 * math.sqrt(max(expected, 1.0)):
        return _no(
            f"the data fill the valley the fit draws at the cut ({observed:.0f} documents "
            f"there, the fit expects {expected:.0f}): two components do not describe this shape"
        )
    return {"found": True, "reason": None}


def _no(reason: str) -> dict[str, Any]:
    return {"found": False, "reason": reason}


def _with(mode: LowMode, **changes: Any) -> LowMode:
    from dataclasses import replace

    return replace(mode, **changes)


def separation(m: Mixture) -> float:
    a, b = m.components
    return ashman_d(a.mean, a.sd, b.mean, b.sd)


def ashman_d(mean_a: float, std_a: float, mean_b: float, std_b: float) -> float:
    """Ashman's D = sqrt(2) |mean_a - mean_b| / sqrt(std_a^2 + std_b^2); inf for point masses."""
    spread = math.sqrt(std_a**2 + std_b**2)
    gap = abs(mean_a - mean_b)
    if spread == 0:
        return math.inf if gap > 0 else 0.0
    return math.sqrt(2.0) * gap / spread


def merge_bins(edges: np.ndarray, counts: np.ndarray, most: int) -> tuple[np.ndarray, np.ndarray]:
    """The histogram with groups of ``ceil(bins / most)`` adjacent bins merged (the last group
    padded with empty bins beyond the old range)."""
    factor = math.ceil(len(counts) / most)
    if factor <= 1:
        return edges, counts
    pad = (-len(counts)) % factor
    width = edges[1] - edges[0]
    counts = np.r_[counts, np.zeros(pad)].reshape(-1, factor).sum(axis=1)
    edges = np.r_[edges, edges[-1] + width * np.arange(1, pad + 1)][::factor]
    return edges, counts


def single_start(edges: np.ndarray, counts: np.ndarray):
    """A start for one component: the histogram's moments."""
    centers = (edges[:-1] + edges[1:]) / 2
    mean, sd = _moments(centers, counts)
    return [1.0], [mean], [max(sd, float(edges[1] - edges[0]))]


def split_starts(edges: np.ndarray, counts: np.ndarray, quantiles: tuple[float, ...]):
    """Starts for two components, one per quantile: the histogram split there into a low and a
    high part, each part's share and moments."""
    centers = (edges[:-1] + edges[1:]) / 2
    width = float(edges[1] - edges[0])
    total = counts.sum()
    cdf = np.cumsum(counts) / total
    starts, seen = [], set()
    for q in quantiles:
        k = int(np.searchsorted(cdf, q)) + 1
        if k in seen or not 0 < counts[:k].sum() < total:
            continue
        seen.add(k)
        parts = [_moments(centers[s], counts[s]) for s in (slice(0, k), slice(k, None))]
        share = float(counts[:k].sum() / total)
        starts.append(
            ([share, 1 - share], [parts[0][0], parts[1][0]], [max(p[1], width) for p in parts])
        )
    return starts


def _pooled(start):
    weights, means, sds = start
    sd = math.sqrt(sum(w * s * s for w, s in zip(weights, sds, strict=True)))
    return weights, means, [sd, sd]


def _moments(values: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    mean = float(np.average(values, weights=weights))
    return mean, float(math.sqrt(np.average((values - mean) ** 2, weights=weights)))


def place_cut(m: Mixture, how: str) -> float | None:
    """Below the cut = the low component: the F1-best cut under the mixture, or where the low
    component's posterior last falls below 0.5 before the high mean. None if it never leads."""
    low, high = m.components
    grid = np.linspace(low.mean - 4 * low.sd, high.mean, 4001)
    if how == "f1":
        tp, fp = _flagged(m, grid)
        f1 = 2 * tp / (tp + fp + low.weight)
        return float(grid[int(np.argmax(f1))])
    lead = low.weight * _density(low, grid, m.nu) >= high.weight * _density(high, grid, m.nu)
    ends = np.flatnonzero(lead[:-1] & ~lead[1:])
    return float((grid[ends[-1]] + grid[ends[-1] + 1]) / 2) if len(ends) else None


def _loglik(m: Mixture) -> float:
    return m.loglik


def _heavier_tails(edges: np.ndarray, counts: np.ndarray, gaussian: Mixture) -> float | None:
    """The Student-t degrees of freedom (from ``TAILS``) whose two-component fit, started from
    the best Gaussian one, beats it by more than the BIC's price of one parameter; None when
    Gaussian components fit as well."""
    start = _as_start(gaussian)
    best, best_ll = None, gaussian.loglik + 0.5 * math.log(gaussian.n)
    for nu in TAILS:
        if nu is None:
            continue
        fit = fit_mixture(edges, counts, [start], nu=nu)[0]
        if fit.loglik > best_ll:
            best, best_ll = nu, fit.loglik
    return best


def _as_start(m: Mixture):
    return tuple(zip(*((c.weight, c.mean, c.sd) for c in m.components), strict=True))


def _density(c: Component, x: np.ndarray, nu: float | None) -> np.ndarray:
    return standard_pdf((x - c.mean) / c.sd, nu) / c.sd


def _flagged(m: Mixture, cut):
    """Mass of the low (true positives) and high (false positives) components below ``cut``."""
    low, high = m.components
    tp = low.weight * standard_cdf((np.asarray(cut) - low.mean) / low.sd, m.nu)
    fp = high.weight * standard_cdf((np.asarray(cut) - high.mean) / high.sd, m.nu)
    return tp, fp


def expected_quality(m: Mixture, cut: float) -> tuple[float, float]:
    """Precision and recall of "below the cut" for the low component, if the fit were true."""
    tp, fp = (float(v) for v in _flagged(m, cut))
    precision = tp / (tp + fp) if tp + fp > 0 else math.nan
    return precision, tp / m.components[0].weight


def fill_ratio(
    edges: np.ndarray, counts: np.ndarray, m: Mixture, cut: float
) -> tuple[float, float, float]:
    """Observed / fitted documents in the bins within half the smaller sd of the cut (at least
    the bin holding the cut and its neighbours): (ratio, observed, fitted)."""
    half = 0.5 * min(c.sd for c in m.components)
    lo = int(np.clip(np.searchsorted(edges, cut - half, side="right") - 1, 0, len(counts) - 1))
    hi = int(np.clip(np.searchsorted(edges, cut + half), 1, len(counts)))
    j = int(np.clip(np.searchsorted(edges, cut) - 1, 0, len(counts) - 1))
    lo, hi = min(lo, max(j - 1, 0)), max(hi, min(j + 2, len(counts)))
    observed = float(counts[lo:hi].sum())
    expected = float(m.n * (m.cdf(edges[hi]) - m.cdf(edges[lo])))
    return (observed / expected if expected > 0 else math.inf), observed, expected


def otsu_index(counts: np.ndarray, centers: np.ndarray) -> int:
    """k such that bins [0, k) and [k, n) maximise the between-class variance."""
    total = counts.sum()
    w0 = np.cumsum(counts)[:-1]
    s0 = np.cumsum(counts * centers)[:-1]
    w1 = total - w0
    s1 = (counts * centers).sum() - s0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = w0 * w1 * (s0 / w0 - s1 / w1) ** 2
    between[(w0 == 0) | (w1 == 0)] = -1.0
    return int(np.argmax(between)) + 1


def otsu_cut(edges: np.ndarray, counts: np.ndarray) -> float:
    """Otsu's threshold of a histogram (the edge between its two classes)."""
    centers = (edges[:-1] + edges[1:]) / 2
    return float(edges[otsu_index(np.asarray(counts, float), centers)])
