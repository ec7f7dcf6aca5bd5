"""Scorers: one file per scorer; this registry maps names to classes."""

from __future__ import annotations

from typing import Any

from datafilter.registry import Registry, parse_options
from datafilter.scorers.base import BatchScores, Resources, Scorer, ScorerOptions

SCORERS: Registry[Scorer] = Registry(
    "scorer",
    "datafilter.scorers",
    {
        "kenlm": "datafilter.scorers.kenlm:KenlmScorer",
        "torch": "datafilter.scorers.torch_lm:TorchLMScorer",
        "vllm": "datafilter.scorers.vllm_lm:VllmScorer",
        "crossfit": "datafilter.scorers.crossfit_lm:CrossfitScorer",
    },
)


def make_scorer(name: str, options: dict[str, Any] | None = None) -> Scorer:
    """Build a scorer from its registered name and raw options (validated)."""
    cls = SCORERS.get(name)
    return cls(parse_options(cls.Options, options or {}, f"scorer {name!r}"))


__all__ = ["SCORERS", "BatchScores", "Resources", "Scorer", "ScorerOptions", "make_scorer"]
