"""datafilter: prune and filter LLM pretraining corpora by perplexity.

Public API (``datafilter.api``; heavy dependencies load only when a function is first used)::

    train_kenlm(input, output, ...)       import_kenlm(kenlm, sentencepiece, output, ...)
    score(input, run_dir, ...)            thresholds(run_dir, ..., selector=NAME)
    combine(run_dir, name=, terms=[...])  select(run_dir, output, ...)
    run(config)
    report(run_dir, ...)                  train_reference(input, output, ...)
    list_plugins()                        build_demo_corpus(output, ...)
    describe(name)                        evaluate(run_dir, candidates=[...])

The library logs through :mod:`logging` (logger ``datafilter``); the command line shows it.

Perplexity-correlation selection (Thrush et al. 2024)::

    corr_sample(input, output, ...)       corr_bpb(run_dir, output, ...)
    corr_weights(bpb, benchmarks, ...)    corr_distill(run_dir, weights, ...)
    corr_run(config)
"""

from __future__ import annotations

import logging
from typing import Any

__version__ = "0.1.0"
_API = (
    "combine",
    "corr_bpb",
    "corr_distill",
    "corr_run",
    "corr_sample",
    "corr_weights",
    "describe",
    "evaluate",
    "import_kenlm",
    "list_plugins",
    "report",
    "run",
    "score",
    "select",
    "thresholds",
    "train_kenlm",
    "train_reference",
)
__all__ = ["build_demo_corpus", *_API]

_LAZY = {name: "datafilter.api" for name in _API}
_LAZY["build_demo_corpus"] = "datafilter.demo_corpus"

logging.getLogger(__name__).addHandler(logging.NullHandler())  # the application decides


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'datafilter' has no attribute {name!r}")
