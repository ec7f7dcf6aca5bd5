"""Harmful-content outliers (Jansen et al. 2022, "Perplexed by Quality").

The selected scores come from a KenLM trained only on harmful text: a LOW perplexity means the
document resembles harmful text, so documents below the threshold are flagged and dropped. The
threshold sits at the valley between the two modes of the log-perplexity histogram (Otsu's
method), per group, unless set by hand; a warning says when the modes are not clearly apart.

With ``clean_scorer_id`` (a model of clean text scored into the same run) the statistic becomes
``ln ppl_clean - ln ppl_harmful`` (high = harmful), z-scored per group, flagged above the cut.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from datafilter.bimodal import split_modes
from datafilter.selectors.base import Decision, Selector, SelectorOptions
from datafilter.thresholds import ScoreStats


class HarmfulOutlierOptions(SelectorOptions):
    threshold: float | None = Field(
        None, description="manual cut: harmful-model perplexity, or a z-score with a clean model"
    )
    clean_scorer_id: str | None = None
    action: Literal["drop", "flag"] = "drop"
    bins: int = Field(200, ge=10)
    max_valley_ratio: float = Field(
        0.5, gt=0, le=1, description="a valley shallower than this share of the smaller peak warns"
    )
    unreliable: Literal["skip", "use"] = Field(
        "skip", description="where the modes are not clearly apart: flag nothing, or cut anyway"
    )
    nearest: int = Field(5, ge=0, description="documents nearest the cut to report per group")


class HarmfulOutlier(Selector):
    name = "harmful_outlier"
    Options = HarmfulOutlierOptions
    options: HarmfulOutlierOptions

    def extra_scorers(self) -> list[str]:
        return [self.options.clean_scorer_id] if self.options.clean_scorer_id else []

    def output_columns(self) -> dict[str, pa.DataType]:
        columns = {"harmful_flag": pa.bool_(), "harmful_ppl": pa.float64()}
        if self.options.clean_scorer_id:
            columns["harmful_z"] = pa.float64()
        return columns

    @property
    def _combined(self) -> bool:
        return self.options.clean_scorer_id is not None

    def plan(self, stats: ScoreStats) -> dict[str, Any]:
        opts = self.options
        metric = f"log_ratio:{opts.clean_scorer_id}" if self._combined else "ppl"
        hist = stats.histogram(metric, opts.bins, log=not self._combined)
        scale = stats.mean_std(metric) if self._combined else {}
        groups, warnings, cuts = {}, [], {}
        for g, n in stats.counts().items():
            mean, std = scale.get(g, (0.0, 1.0))
            std = std or 1.0
            modes = split_modes(*hist[g]) if g in hist else None
            entry: dict[str, Any] = {"n_docs": n}
            if self._combined:
                entry.update(mean=mean, std=std)
            if modes is not None:
                entry["modes"] = modes.as_dict()
                entry["reliable"] = modes.valley_ratio <= opts.max_valley_ratio
                cut = modes.cut
            else:
                entry["reliable"] = False
                cut = math.inf if self._combined else -math.inf  # flag nothing
            if opts.threshold is not None:
                cut = mean + opts.threshold * std if self._combined else math.log(opts.threshold)
                entry["source"] = "manual"
            else:
                entry["source"] = "otsu"
                if not entry["reliable"]:
                    warnings.append(self._warning(g, modes))
                    if opts.unreliable == "skip":
                        cut = math.inf if self._combined else -math.inf
                        entry["source"] = "otsu-skipped"
                if modes is not None and entry["source"] == "otsu":
                    share = modes.high_mass if self._combined else modes.low_mass
                    if share > 0.5:
                        warnings.append(
                            f"group {g!r}: the cut flags {share:.0%} of the documents; harmful "
                            "text is rarely the majority: check the histogram or set threshold=..."
                        )
            entry["cut"] = cut
            entry["marks"] = self._marks(entry)
            cuts[g] = cut
            groups[g] = entry
        if opts.nearest:
            values = {
                g: c if self._combined else math.exp(c) for g, c in cuts.items() if math.isfinite(c)
            }
            for g, docs in stats.nearest(metric, values, opts.nearest).items():
                groups[g]["nearest"] = [{"doc_id": d, "value": v} for d, v in docs]
        return {
            "metric": metric,
            "combined": self._combined,
            "groups": groups,
            "warnings": warnings,
        }

    def _warning(self, group: str, modes) -> str:
        what = "z-scored log-perplexity ratio" if self._combined else "log-perplexity"
        if modes is None:
            return f"group {group!r}: too few distinct scores to split; nothing flagged"
        return (
            f"group {group!r}: the {what} is not clearly bimodal (the valley is "
            f"{modes.valley_ratio:.0%} of the smaller peak, above "
            f"{self.options.max_valley_ratio:.0%}); "
            + ("nothing flagged there" if self.options.unreliable == "skip" else "cut anyway")
            + ": check the histogram, set threshold=..., or unreliable=use"
        )

    def _marks(self, entry: dict[str, Any]) -> list[dict[str, Any]]:
        """Values to draw on a histogram: the two modes and the cut (ppl units when possible)."""
        unit = (lambda x: x) if self._combined else math.exp
        marks = []
        if "modes" in entry:
            low, high = (
                ("clean mode", "harmful mode") if self._combined else ("harmful mode", "clean mode")
            )
            marks += [
                {"label": low, "value": unit(entry["modes"]["low_peak"])},
                {"label": high, "value": unit(entry["modes"]["high_peak"])},
            ]
        if math.isfinite(entry["cut"]):
            marks.append({"label": "cut", "value": unit(entry["cut"])})
        return marks

    def decide(
        self, scores: dict[str, np.ndarray], groups: np.ndarray, plan: dict[str, Any], seed: int
    ) -> Decision:
        ppl = scores["ppl"]
        with np.errstate(divide="ignore", invalid="ignore"):
            if self._combined:
                stat = np.log(scores[f"{self.options.clean_scorer_id}:ppl"]) - np.log(ppl)
            else:
                stat = np.log(ppl)
        flagged = np.zeros(len(ppl), dtype=bool)
        z = np.full(len(ppl), np.nan)
        for group, params in plan["groups"].items():
            rows = groups == group
            cut = params["cut"]
            flagged |= rows & ((stat > cut) if self._combined else (stat < cut))
            if self._combined:
                z[rows] = (stat[rows] - params["mean"]) / params["std"]
        columns: dict[str, np.ndarray] = {"harmful_flag": flagged, "harmful_ppl": ppl}
        if self._combined:
            columns["harmful_z"] = z
        keep = ~flagged if self.options.action == "drop" else ~np.isnan(ppl)
        return Decision(keep=keep, drop_reason="harmful_outlier", columns=columns)
