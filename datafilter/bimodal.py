"""Does a histogram hold a separate LOW mode, and where does it end?

Used by ``harmful_outlier`` on log-perplexity under a model of harmful text: harmful documents
form a small mode at the low end. One Gaussian and a mixture of two are fitted to the binned
counts (:mod:`datafilter.mixture`; several starts, one at the extreme low tail, so a mode of
0.5 % of the documents is found). The low mode is accepted only when

- two components fit clearly better than one (BIC gain >= ``min_bic_gain``);
- they are apart: Ashman's D >= ``min_separation``. A two-Gaussian fit to ONE skewed mode
  (skew-normal, gamma, log-normal, Gumbel, ex-Gaussian) has D of 1.3-1.8 and to one
  heavy-tailed mode (Student t, Laplace, logistic) D near 0, while two Gaussian modes d' = 3
  standard deviations apart give D near 3;
- the low component is a minority of a plausible size (``min_share``/``min_docs`` to
  ``max_share`` of the documents);
- the data do not fill the valley the fit draws at the cut (observed count near the cut at most
  ``max_fill`` times the fitted one, or not significantly more).

Where several local optima fit within ``tie_loglik`` nats of the best, the most separated one
is read: a small mode beside a large one and a slightly skewed large one can fit a histogram
equally well, and only the first reading isolates the small mode.

The cut is where the F1 score of "below the cut = low component" is highest under the fitted
mixture (``cut="f1"``), or where the low component's posterior falls below 0.5
(``cut="posterior"``, fewer errors in total but lower recall of a small mode).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from datafilter.mixture import Gaussian, Mixture, fit_mixture

FIT_BINS = 128  # the fit runs on the histogram merged down to at most this many bins
# Two-component starts: the quantiles where the histogram is split into two parts.
FREE_STARTS = (0.002, 0.01, 0.05, 0.2, 0.5, 0.9)
EQUAL_SPREAD_STARTS = (0.01, 0.05, 0.2)
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
    def low(self) -> Gaussian | None:
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
    """Fit one and two Gaussians to a histogram (``len(edges) == len(counts) + 1``, equal
    widths) and decide whether its low end is a separate mode."""
    edges, counts = merge_bins(np.asarray(edges, float), np.asarray(counts, float), FIT_BINS)
    n = int(counts.sum())
    if n < MIN_DOCS_TO_FIT or np.count_nonzero(counts) < 3:
        return LowMode(n, None, None, False, f"too few distinct scores to fit ({n} documents)")
    one = fit_mixture(edges, counts, [single_start(edges, counts)])[0]
    fits = fit_mixture(edges, counts, split_starts(edges, counts, FREE_STARTS))
    readings = [m for m in fits if m.loglik >= fits[0].loglik - rules.tie_loglik]
    pooled = [_pooled(s) for s in split_starts(edges, counts, EQUAL_SPREAD_STARTS)]
    equal = fit_mixture(edges, counts, pooled, tied=True)[0]
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
            f"one mode fits: a second Gaussian does not fit clearly better (BIC gain "
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
            f"there, the fit expects {expected:.0f}): two Gaussians do not describe this shape"
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
    """A start for one Gaussian: the histogram's moments."""
    centers = (edges[:-1] + edges[1:]) / 2
    mean, sd = _moments(centers, counts)
    return [1.0], [mean], [max(sd, float(edges[1] - edges[0]))]


def split_starts(edges: np.ndarray, counts: np.ndarray, quantiles: tuple[float, ...]):
    """Starts for two Gaussians, one per quantile: the histogram split there into a low and a
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
    lead = low.weight * _density(low, grid) >= high.weight * _density(high, grid)
    ends = np.flatnonzero(lead[:-1] & ~lead[1:])
    return float((grid[ends[-1]] + grid[ends[-1] + 1]) / 2) if len(ends) else None


def _density(c: Gaussian, x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * ((x - c.mean) / c.sd) ** 2) / c.sd


def _flagged(m: Mixture, cut):
    """Mass of the low (true positives) and high (false positives) components below ``cut``."""
    from scipy.special import ndtr

    low, high = m.components
    tp = low.weight * ndtr((np.asarray(cut) - low.mean) / low.sd)
    fp = high.weight * ndtr((np.asarray(cut) - high.mean) / high.sd)
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
