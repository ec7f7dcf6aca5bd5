"""Candidates against the random control: per target, mean and spread over seeds, the paired
difference to the control with a t interval, the share of seeds won, and a recommendation.

Seeds are paired: seed ``s`` starts every candidate from the same initial weights, so the
difference ``candidate - control`` of seed ``s`` removes most of the initialisation's noise. The
interval is Student's t over those differences (``n - 1`` degrees of freedom). A difference
whose interval holds 0 is *within noise*; lower loss is better.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

METRICS = ("bits_per_byte", "nats_per_token")
PRIMARY_METRIC = "bits_per_byte"


def t_interval(diffs: np.ndarray, confidence: float) -> tuple[float, float] | None:
    """The two-sided t interval of the mean of ``diffs``; None with fewer than two."""
    from scipy import stats

    n = len(diffs)
    if n < 2:
        return None
    mean = float(diffs.mean())
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * diffs.std(ddof=1) / math.sqrt(n))
    return mean - half, mean + half


def verdict(interval: tuple[float, float] | None) -> str:
    """``better`` (interval below 0), ``worse`` (above 0), else ``within noise``."""
    if interval is None:
        return "within noise"
    low, high = interval
    if high < 0:
        return "better"
    if low > 0:
        return "worse"
    return "within noise"


def compare(
    losses: dict[str, dict[int, dict[str, dict[str, float]]]],
    control: str,
    targets: list[str],
    confidence: float,
) -> list[dict[str, Any]]:
    """One row per (candidate, target): ``losses[candidate][seed][target][metric]``. The
    control's rows have no difference."""
    rows = []
    seeds = sorted(losses[control])
    for name, by_seed in losses.items():
        for target in targets:
            row: dict[str, Any] = {"candidate": name, "target": target, "seeds": len(seeds)}
            for metric in METRICS:
                values = np.array([by_seed[s][target][metric] for s in seeds])
                row[f"{metric}_mean"] = float(values.mean())
                row[f"{metric}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
                base = np.array([losses[control][s][target][metric] for s in seeds])
                diffs = values - base
                interval = None if name == control else t_interval(diffs, confidence)
                row[f"{metric}_diff"] = None if name == control else float(diffs.mean())
                row[f"{metric}_diff_low"] = interval[0] if interval else None
                row[f"{metric}_diff_high"] = interval[1] if interval else None
                if metric == PRIMARY_METRIC:
                    row["wins"] = None if name == control else float((diffs < 0).mean())
                    row["verdict"] = "control" if name == control else verdict(interval)
            rows.append(row)
    return rows


def recommend(
    rows: list[dict[str, Any]],
    losses: dict[str, dict[int, dict[str, dict[str, float]]]],
    control: str,
    target: str,
    confidence: float,
) -> dict[str, Any]:
    """The candidate to keep for ``target`` (lowest mean bits per byte among those better than
    the control beyond noise), how sure, and a plain statement."""
    mine = {r["candidate"]: r for r in rows if r["target"] == target and r["candidate"] != control}
    better = sorted(
        (r for r in mine.values() if r["verdict"] == "better"),
        key=lambda r: r[f"{PRIMARY_METRIC}_mean"],
    )
    pct = f"{confidence:.0%}"
    if not better:
        worse = [n for n, r in mine.items() if r["verdict"] == "worse"]
        statement = (
            f"No candidate beats the random control beyond noise on {target!r} (every {pct} "
            "interval of the difference holds 0 or lies above it): the evidence does not favour "
            "any of these selections over a random sample of the same size"
        )
        if worse:
            statement += f"; worse than random: {', '.join(sorted(worse))}"
        return {
            "target": target,
            "candidate": None,
            "within_noise": True,
            "statement": statement + ". More seeds or tokens may separate them.",
        }
    best = better[0]
    name = best["candidate"]
    low, high = best[f"{PRIMARY_METRIC}_diff_low"], best[f"{PRIMARY_METRIC}_diff_high"]
    n_seeds = best["seeds"]
    statement = (
        f"Keep {name!r}: on {target!r} its proxy models reach "
        f"{best[f'{PRIMARY_METRIC}_mean']:.4f} bits/byte, {-best[f'{PRIMARY_METRIC}_diff']:.4f} "
        f"below the random control ({pct} interval {-high:.4f} to {-low:.4f}), lower in "
        f"{round(best['wins'] * n_seeds)} of {n_seeds} seeds"
    )
    result: dict[str, Any] = {
        "target": target,
        "candidate": name,
        "within_noise": False,
        "wins_vs_control": best["wins"],
        "diff_vs_control": [best[f"{PRIMARY_METRIC}_diff"], low, high],
    }
    others = sorted(
        (r for r in mine.values() if r["candidate"] != name),
        key=lambda r: r[f"{PRIMARY_METRIC}_mean"],
    )
    if others:
        runner = others[0]["candidate"]
        seeds = sorted(losses[control])
        diffs = np.array(
            [
                losses[name][s][target][PRIMARY_METRIC] - losses[runner][s][target][PRIMARY_METRIC]
                for s in seeds
            ]
        )
        interval = t_interval(diffs, confidence)
        clear = verdict(interval) == "better"
        wins = float((diffs < 0).mean())
        result["runner_up"] = {
            "candidate": runner,
            "diff": float(diffs.mean()),
            "interval": list(interval) if interval else None,
            "wins": wins,
            "clear": clear,
        }
        if clear:
            statement += (
                f"; ahead of the next best, {runner!r}, by {-diffs.mean():.4f} bits/byte, beyond "
                f"noise, in {round(wins * n_seeds)} of {n_seeds} seeds"
            )
        else:
            span = ""
            if interval:
                span = f", {pct} interval {-interval[1]:+.4f} to {-interval[0]:+.4f}"
            statement += (
                f"; {runner!r} is within noise of it ({runner} minus {name}: "
                f"{-diffs.mean():+.4f} bits/byte{span}): either would do"
            )
    result["statement"] = statement + "."
    return result
