"""The synthetic battery that checks :func:`datafilter.selectors.bimodal.find_low_mode` (issue 19).

Each draw is a log-perplexity sample: a harmful minority N(mu - d' sd, sd) beside a clean
majority N(mu, sd), or one unimodal shape (Gaussian, skewed, heavy-tailed) with no harmful part.
The sample is binned as the thresholds stage bins it (``HIST_BINS`` equal bins from the minimum
to the maximum), the low mode is looked for, and the cut is scored against the draw's truth.
Beside each cell: what knowing the true mixture allows (the "oracle"): the precision and recall
of the F1-best cut under the true parameters, and the best min(precision, recall) of any cut.
With equal spreads and d' = 3, precision and recall cannot both reach 0.9 below about 30 %
harmful (the tails overlap too much); at d' = 4 they can from about 5 %.

Used by the tests (``tests/test_harmful_battery.py``) and printed by
``bench/harmful_eval.py --synthetic``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from datafilter.selectors.bimodal import LowModeRules, find_low_mode

SHARES = (0.005, 0.01, 0.02, 0.05, 0.1, 0.4)
SEPARATIONS = (1.0, 2.0, 3.0, 4.0, 5.0)
DRAWS = 20
N_DOCS = 20_000
HIST_BINS = 1024
CLEAN_MEAN, SD = 5.5, 0.5  # ln ppl of the clean mode (ppl ~245) and the spread of each mode


def _skewed_low(rng: np.random.Generator, n: int) -> np.ndarray:
    """A long LOW tail (the direction a harmful mode would sit): a mirrored gamma(2)."""
    return CLEAN_MEAN + 1.0 - SD * rng.gamma(2.0, 1.0, n) / math.sqrt(2.0)


UNIMODAL: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "gaussian": lambda rng, n: rng.normal(CLEAN_MEAN, SD, n),
    "skewed (low tail)": _skewed_low,
    "skewed (high tail)": lambda rng, n: CLEAN_MEAN - 0.5 + rng.lognormal(0.0, 0.6, n) * SD,
    "heavy-tailed (t, 3 df)": lambda rng, n: CLEAN_MEAN + SD * rng.standard_t(3.0, n),
}


def _shape(draw: Callable[[np.random.Generator, int], np.ndarray]):
    """A standardised shape placed at the clean mode with the battery's spread."""
    return lambda rng, n: CLEAN_MEAN + SD * draw(rng, n)


def _skew_normal(alpha: float):
    """Azzalini's skew-normal: delta |U| + sqrt(1 - delta^2) V (a low tail for alpha < 0)."""
    delta = alpha / math.sqrt(1 + alpha * alpha)
    return lambda rng, n: (
        delta * np.abs(rng.normal(size=n)) + math.sqrt(1 - delta * delta) * rng.normal(size=n)
    )


# More single modes, printed by the benchmark (not demanded by the issue): the limits of the
# method are where these fire.
EXTRA_UNIMODAL: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "skew-normal (alpha -5, low tail)": _shape(_skew_normal(-5.0)),
    "log-normal (sd 1.2, low tail)": _shape(lambda r, n: -r.lognormal(0.0, 1.2, n)),
    "Gumbel (low tail)": _shape(lambda r, n: -r.gumbel(0.0, 1.0, n)),
    "ex-Gaussian (low tail)": _shape(lambda r, n: -(r.normal(0, 1, n) + r.exponential(2, n))),
    "beta(2, 5) (low tail)": _shape(lambda r, n: -10 * r.beta(2.0, 5.0, n)),
    "Laplace": _shape(lambda r, n: r.laplace(0.0, 1.0, n)),
    "logistic": _shape(lambda r, n: r.logistic(0.0, 1.0, n)),
    "t, 5 df": _shape(lambda r, n: r.standard_t(5.0, n)),
    "uniform (flat top)": _shape(lambda r, n: r.uniform(-2.0, 2.0, n)),
    "triangular": _shape(lambda r, n: r.triangular(-2.0, 0.0, 2.0, n)),
    "Gaussian + 0.5% low outliers": _shape(
        lambda r, n: np.r_[r.normal(0, 1, n - n // 200), r.uniform(-12, -4, n // 200)]
    ),
}
ALL_UNIMODAL = {**UNIMODAL, **EXTRA_UNIMODAL}


@dataclass
class Cell:
    """Results of the draws of one setting."""

    name: str
    share: float | None
    separation: float | None
    fired: int = 0
    both_90: int = 0  # fired with precision and recall >= 0.9
    precision: list[float] = field(default_factory=list)
    recall: list[float] = field(default_factory=list)
    draws: int = 0
    oracle: tuple[float, float, float] | None = None  # (precision, recall) at the F1-best true cut,
    # best min(precision, recall)

    def median(self, values: list[float]) -> float:
        return float(np.median(values)) if values else math.nan

    @property
    def f1(self) -> list[float]:
        pairs = zip(self.precision, self.recall, strict=True)
        return [2 * p * r / (p + r) if p + r else 0.0 for p, r in pairs]

    @property
    def oracle_f1(self) -> float:
        p, r, _ = self.oracle
        return 2 * p * r / (p + r) if p + r else 0.0


def _standardised(draw: Callable[[np.random.Generator, int], np.ndarray], sd: float):
    return lambda rng, n: draw(rng, n) / sd


# The shape of both components of a mixture (unit standard deviation). The battery is
# Gaussian; the benchmark also prints the others (real modes have heavier tails, or skew).
COMPONENTS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "gaussian": lambda rng, n: rng.normal(0.0, 1.0, n),
    "t, 5 df": _standardised(lambda rng, n: rng.standard_t(5.0, n), math.sqrt(5 / 3)),
    "Laplace": _standardised(lambda rng, n: rng.laplace(0.0, 1.0, n), math.sqrt(2.0)),
}


def mixture_draw(
    rng: np.random.Generator, share: float, d: float, n: int = N_DOCS, shape: str = "gaussian"
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` log-perplexities, the harmful ones first, and the truth mask."""
    k = int(rng.binomial(n, share))
    low = CLEAN_MEAN - d * SD + SD * COMPONENTS[shape](rng, k)
    high = CLEAN_MEAN + SD * COMPONENTS[shape](rng, n - k)
    truth = np.zeros(n, dtype=bool)
    truth[:k] = True
    return np.r_[low, high], truth


def histogram(values: np.ndarray, bins: int = HIST_BINS) -> tuple[np.ndarray, np.ndarray]:
    counts, edges = np.histogram(values, bins=bins, range=(values.min(), values.max()))
    return edges, counts


def oracle(share: float, d: float) -> tuple[float, float, float]:
    """Precision and recall at the F1-best cut of the TRUE mixture, and the best
    min(precision, recall) over all cuts (standardised units)."""
    from scipy.special import ndtr

    t = np.linspace(-8.0, d + 8.0, 40_001)
    tp, fp = share * ndtr(t), (1 - share) * ndtr(t - d)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
    recall = ndtr(t)
    k = int(np.argmax(2 * tp / (tp + fp + share)))
    return float(precision[k]), float(recall[k]), float(np.max(np.minimum(precision, recall)))


def run_mixture_cell(
    share: float,
    d: float,
    rules: LowModeRules,
    *,
    draws: int = DRAWS,
    n: int = N_DOCS,
    seed: int = 0,
    shape: str = "gaussian",
) -> Cell:
    rng = np.random.default_rng([seed, int(share * 10_000), int(d * 100)])
    name = f"share {share:.1%}, d'={d:g}" + ("" if shape == "gaussian" else f", {shape}")
    cell = Cell(name, share, d, oracle=oracle(share, d) if shape == "gaussian" else None)
    for _ in range(draws):
        values, truth = mixture_draw(rng, share, d, n, shape)
        mode = find_low_mode(*histogram(values), rules)
        cell.draws += 1
        if not mode.found:
            continue
        flagged = values < mode.cut
        tp = int((flagged & truth).sum())
        precision = tp / max(int(flagged.sum()), 1)
        recall = tp / max(int(truth.sum()), 1)
        cell.fired += 1
        cell.both_90 += precision >= 0.9 and recall >= 0.9
        cell.precision.append(precision)
        cell.recall.append(recall)
    return cell


def run_unimodal_cell(
    name: str, rules: LowModeRules, *, draws: int = DRAWS, n: int = N_DOCS, seed: int = 0
) -> Cell:
    rng = np.random.default_rng([seed, sum(map(ord, name))])
    cell = Cell(name, None, None)
    for _ in range(draws):
        mode = find_low_mode(*histogram(ALL_UNIMODAL[name](rng, n)), rules)
        cell.draws += 1
        cell.fired += mode.found
    return cell


def run_battery(
    rules: LowModeRules | None = None,
    *,
    shares=SHARES,
    separations=SEPARATIONS,
    unimodal=tuple(UNIMODAL),
    draws: int = DRAWS,
    n: int = N_DOCS,
    seed: int = 0,
    shape: str = "gaussian",
) -> list[Cell]:
    rules = rules or LowModeRules()
    cells = [
        run_mixture_cell(s, d, rules, draws=draws, n=n, seed=seed, shape=shape)
        for d in separations
        for s in shares
    ]
    cells += [run_unimodal_cell(u, rules, draws=draws, n=n, seed=seed) for u in unimodal]
    return cells


def format_table(cells: list[Cell]) -> str:
    """A plain-text table: one row per cell."""
    header = (
        "setting",
        "fired",
        "P,R>=.9",
        "median P",
        "median R",
        "oracle P",
        "oracle R",
        "oracle best min(P,R)",
    )
    rows = [header]
    for c in cells:
        o = c.oracle
        rows.append(
            (
                c.name,
                f"{c.fired}/{c.draws}",
                f"{c.both_90}/{c.draws}" if c.share is not None else "-",
                _f(c.median(c.precision)),
                _f(c.median(c.recall)),
                *((_f(o[0]), _f(o[1]), _f(o[2])) if o else ("-", "-", "-")),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(v.ljust(w) if j == 0 else v.rjust(w) for j, (v, w) in
                               enumerate(zip(r, widths, strict=True))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _f(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.2f}"
