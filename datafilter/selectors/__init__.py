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


def make_selector(name: str, options: dict[str, Any] | None = None) -> Selector:
    """Build a selector from its registered name and raw options (validated)."""
    cls = SELECTORS.get(name)
    return cls(parse_options(cls.Options, options or {}, f"selector {name!r}"))


__all__ = ["SELECTORS", "Decision", "Selector", "SelectorOptions", "make_selector"]
