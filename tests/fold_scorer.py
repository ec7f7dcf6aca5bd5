"""A scorer of two folds of deliberately different scale, for testing per-fold calibration.

Each text says its quality (``q=<value>``); the scorer's log-perplexity is that value, plus
``shift`` and times ``scale`` for texts of fold 1 (``fold_of(text, 2)``), the fold it writes in
the ``fold`` column as the crossfit scorer does. Folds of the same quality then differ only by
the scale of the "model" that scored them.
"""

from __future__ import annotations

import numpy as np

from datafilter.reference import fold_of
from datafilter.scorers import BatchScores, Scorer, ScorerOptions
from datafilter.scorers.columns import FOLD

TOKENS = 10


class FoldShiftOptions(ScorerOptions):
    shift: float = 0.5
    scale: float = 1.0


class FoldShiftScorer(Scorer):
    name = "fold_shift"
    Options = FoldShiftOptions
    options: FoldShiftOptions
    extra_columns = (FOLD,)

    def setup(self) -> None:
        pass

    def score_batch(self, texts: list[str]) -> BatchScores:
        quality = np.array([float(t.split()[0].removeprefix("q=")) for t in texts])
        folds = np.array([fold_of(t, 2) for t in texts], dtype=np.int32)
        log_ppl = np.where(
            folds == 1, quality * self.options.scale + self.options.shift, quality
        )
        return BatchScores(
            logprob_sum=-log_ppl * TOKENS,
            n_tokens=np.full(len(texts), TOKENS, dtype=np.int64),
            columns={FOLD: folds},
        )


def paired_texts(n: int) -> list[str]:
    """``2 n`` texts: each quality value once in fold 0 and once in fold 1 (same quality)."""
    texts = []
    for i in range(n):
        q = 2.0 + i / n
        found: dict[int, str] = {}
        salt = 0
        while len(found) < 2:
            text = f"q={q:.6f} document {i} salt {salt}"
            found.setdefault(fold_of(text, 2), text)
            salt += 1
        texts += [found[0], found[1]]
    return texts
