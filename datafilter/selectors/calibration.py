"""Choose a cut from a few hundred labelled documents: the most recall whose precision meets a
target with a stated confidence.

The labelled documents are taken to be a uniform random sample of the documents they stand for
(one group of a run). Then the labelled documents below a cut are a random sample of everything
the cut flags, so the share of harmful ones among them estimates the cut's precision, with an
exact binomial (Clopper-Pearson) interval; the share of the harmful labelled documents below the
cut estimates its recall. Candidate cuts lie between consecutive labelled scores; the chosen one
is the highest (most recall) whose one-sided lower confidence bound on precision is at least the
target. The bound holds for each cut on its own: scanning many cuts and keeping the last that
passes is slightly optimistic, which the benchmark measures on held-out data.

Values are on an axis where LOW means harmful ("flag below the cut").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """A proportion ``k / n`` with its two-sided Clopper-Pearson interval."""

    value: float
    low: float
    high: float
    k: int
    n: int


@dataclass(frozen=True)
class Calibration:
    found: bool
    reason: str | None
    target: float
    confidence: float
    n_labels: int
    n_harmful: int
    cut: float | None = None  # flag values below it
    precision: Estimate | None = None
    precision_lower: float | None = None  # one-sided bound at ``confidence``: >= target if found
    recall: Estimate | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def clopper_pearson(k: int, n: int, confidence: float) -> tuple[float, float]:
    """The two-sided exact interval of a binomial proportion at ``confidence``."""
    from scipy.stats import beta

    alpha = 1.0 - confidence
    low = float(beta.ppf(alpha / 2, k, n - k + 1)) if k > 0 else 0.0
    high = float(beta.ppf(1 - alpha / 2, k + 1, n - k)) if k < n else 1.0
    return low, high


def lower_bound(k: np.ndarray, n: np.ndarray, confidence: float) -> np.ndarray:
    """One-sided Clopper-Pearson lower bounds of ``k / n`` at ``confidence`` (0 where k = 0)."""
    from scipy.stats import beta

    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bound = beta.ppf(1.0 - confidence, k, n - k + 1)
    return np.where(k > 0, bound, 0.0)


def min_labels_below(target: float, confidence: float) -> int:
    """The fewest labelled documents below a cut that can show precision >= ``target``: all of
    them harmful, the lower bound is ``(1 - confidence) ** (1 / n)``."""
    return math.ceil(math.log(1.0 - confidence) / math.log(target) - 1e-9)


def estimate(k: int, n: int, confidence: float) -> Estimate:
    low, high = clopper_pearson(k, n, confidence)
    return Estimate(k / n if n else math.nan, low, high, int(k), int(n))


def calibrate(
    values: np.ndarray, harmful: np.ndarray, target: float, confidence: float
) -> Calibration:
    """The cut with the most recall whose precision lower bound reaches ``target``."""
    values = np.asarray(values, dtype=np.float64)
    harmful = np.asarray(harmful, dtype=bool)
    order = np.argsort(values, kind="stable")
    v, y = values[order], harmful[order]
    n_labels, n_harmful = len(v), int(y.sum())
    base = Calibration(False, None, target, confidence, n_labels, n_harmful)
    if n_harmful == 0:
        return _replace(base, reason=f"none of the {n_labels} labelled documents is harmful")
    k = np.cumsum(y)
    n = np.arange(1, n_labels + 1)
    candidate = np.r_[v[1:] > v[:-1], True]  # a cut can only fall between distinct values
    bound = np.where(candidate, lower_bound(k, n, confidence), -1.0)
    passing = np.flatnonzero(bound >= target)
    if len(passing) == 0:
        best = int(np.argmax(bound))
        fewest = min_labels_below(target, confidence)
        return _replace(
            base,
            reason=(
                f"no cut reaches precision {target:g} with {confidence:.0%} confidence on the "
                f"{n_labels} labels ({n_harmful} harmful): the best lower bound is "
                f"{bound[best]:.2f} (precision {k[best]}/{n[best]} on the {n[best]} "
                f"lowest-scoring labelled documents); even all harmful, a cut needs {fewest} "
                f"labelled documents below it, so with {n_labels} labels it must flag at least "
                f"{fewest / n_labels:.0%} of the group"
            ),
            cut=_cut_after(v, best),
            precision=estimate(int(k[best]), int(n[best]), confidence),
            precision_lower=float(bound[best]),
            recall=estimate(int(k[best]), n_harmful, confidence),
        )
    i = int(passing[-1])
    return _replace(
        base,
        found=True,
        cut=_cut_after(v, i),
        precision=estimate(int(k[i]), int(n[i]), confidence),
        precision_lower=float(bound[i]),
        recall=estimate(int(k[i]), n_harmful, confidence),
    )


def _cut_after(sorted_values: np.ndarray, i: int) -> float:
    """Halfway to the next labelled value (just above the last one)."""
    if i + 1 < len(sorted_values):
        return float((sorted_values[i] + sorted_values[i + 1]) / 2)
    return float(np.nextafter(sorted_values[i], np.inf))


def _replace(c: Calibration, **changes) -> Calibration:
    from dataclasses import replace

    return replace(c, **changes)
