"""datafilter: prune and filter LLM pretraining corpora by perplexity.

Public API (heavy dependencies load only when a stage runs)::

    train_kenlm(inputs, output, ...)      score(input, run_dir, ...)
    thresholds(run_dir, ...)              select(run_dir, output, ...)
    run(config)                           list_plugins()
    report(run_dir, ...)

Perplexity-correlation selection (Thrush et al. 2024)::

    corr_sample(input, output, ...)       corr_bpb(run_dir, output, ...)
    corr_weights(bpb, benchmarks, ...)    corr_distill(run_dir, weights, ...)
    corr_run(config)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = [
    "build_demo_corpus",
    "corr_bpb",
    "corr_distill",
    "corr_run",
    "corr_sample",
    "corr_weights",
    "list_plugins",
    "report",
    "run",
    "score",
    "select",
    "thresholds",
    "train_kenlm",
    "train_reference",
]

_LAZY = {
    "score": "datafilter.api",
    "thresholds": "datafilter.api",
    "select": "datafilter.api",
    "list_plugins": "datafilter.api",
    "corr_sample": "datafilter.api",
    "corr_bpb": "datafilter.api",
    "corr_weights": "datafilter.api",
    "corr_distill": "datafilter.api",
    "corr_run": "datafilter.api",
    "run": "datafilter.stages.run",
    "train_kenlm": "datafilter.kenlm.train",
    "train_reference": "datafilter.reference",
    "build_demo_corpus": "datafilter.demo_corpus",
    "report": "datafilter.reporting",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'datafilter' has no attribute {name!r}")
