"""Train a small reference causal LM on the corpus itself, optionally cross-fitted (k folds).

``train_reference`` samples the split, trains a shared byte-level BPE, trains one Llama-style
model per fold and writes ``MODEL_DIR/fold-j/`` (Hugging Face folders) plus
``MODEL_DIR/crossfit.json``. The ``crossfit`` scorer scores each document with a fold model that
never saw it (:func:`scoring_fold`).
"""

from __future__ import annotations

from datafilter.reference.crossfit import fold_of, scoring_fold, text_hash
from datafilter.reference.train import train_reference

__all__ = ["fold_of", "scoring_fold", "text_hash", "train_reference"]
