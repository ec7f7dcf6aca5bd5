"""Selectors: one file per selector; this registry maps names to classes."""

from __future__ import annotations

from typing import Any

from datafilter.registry import Registry, parse_options
from datafilter.selectors.base import Decision, Selector, SelectorOptions

SELECTORS: Registry[Selector] = Registry(
    "selector",
    "datafilter.selectors",
    {
        "perplexity_band": "datafilter.selectors.perplexity_band:PerplexityBand",
        "perplexity_range": "datafilter.selectors.perplexity_range:PerplexityRange",
        "perplexity_sampling": "datafilter.selectors.perplexity_sampling:PerplexitySampling",
        "ccnet_buckets": "datafilter.selectors.ccnet_buckets:CcnetBuckets",
        "harmful_outlier": "datafilter.selectors.harmful_outlier:HarmfulOutlier",
        "perplexity_correlation": (
            "datafilter.selectors.perplexity_correlation:PerplexityCorrelation"
        ),
    },
)


def with_defaults(
    name: str, options: dict[str, Any], scorer_entry: dict[str, Any]
) -> tuple[dict[str, Any], str | None]:
    """The options with the defaults that depend on the scores' model filled in (the band's
    criterion follows the recorded reference kind), and a warning to show, if any."""
    if name != "perplexity_band" or "criterion" in options:
        return options, None
    from datafilter.selectors.perplexity_band import default_criterion

    criterion, warning = default_criterion(scorer_entry)
    return {**options, "criterion": criterion}, warning


def make_selector(name: str, options: dict[str, Any] | None = None) -> Selector:
    """Build a selector from its registered name and raw options (validated)."""
    cls = SELECTORS.get(name)
    return cls(parse_options(cls.Options, options or {}, f"selector {name!r}"))


__all__ = [
    "SELECTORS",
    "Decision",
    "Selector",
    "SelectorOptions",
    "make_selector",
    "with_defaults",
]
