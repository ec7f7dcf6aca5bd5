"""KenLM scorer, CCNet style: normalise, SentencePiece-encode, score with a KenLM n-gram model.

The hot loop, per batch: each document's lines normalised (``Normalizer.lines``), all lines
SentencePiece-encoded in one call on one thread, each line's pieces joined by spaces and scored
by ``kenlm.Model.score``. The model binary is memory-mapped, so actors on one node share one
copy in the page cache.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np

from datafilter.errors import MissingDependencyError, ModelError
from datafilter.io.markers import file_fingerprint
from datafilter.kenlm_model import KenlmRecipe, load_recipe
from datafilter.normalize import NormalizationRecipe, Normalizer
from datafilter.scorers.base import BatchScores, Scorer, ScorerOptions

LN10 = math.log(10.0)


class KenlmOptions(ScorerOptions):
    model: Path
    mode: Literal["per_line", "ccnet_compat"] = "per_line"
    # When given, must equal the model's recipe: a guard against scoring with the wrong recipe.
    normalization: NormalizationRecipe | None = None


class KenlmScorer(Scorer):
    """Per-line scoring by default; ``ccnet_compat`` scores the whole document as one line."""

    name = "kenlm"
    version = 1
    Options = KenlmOptions
    options: KenlmOptions

    def validate(self) -> None:
        self.recipe = self._checked_recipe()

    def _checked_recipe(self) -> KenlmRecipe:
        recipe = load_recipe(self.options.model)
        wanted = self.options.normalization
        if wanted is not None and wanted != recipe.normalization:
            diffs = "; ".join(wanted.differences(recipe.normalization))
            raise ModelError(
                f"normalisation requested differs from the model's recipe in {self.options.model}"
                f" ({diffs}); a model must be scored with the recipe it was trained with"
            )
        return recipe

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        recipe = self._checked_recipe()
        info["model_recipe"] = recipe.model_dump(mode="json", exclude={"training"})
        if not recipe.checksums:
            # Folders without checksums: size and mtime of the files identify the model.
            folder = Path(self.options.model).expanduser()
            info["model_files"] = {
                name: file_fingerprint(folder / name)
                for name in (recipe.binary_file, recipe.tokenizer_file)
            }
        return info

    def setup(self) -> None:
        try:
            import kenlm
            import sentencepiece
        except ImportError as exc:
            raise MissingDependencyError(
                f"the kenlm scorer needs {exc.name}: pip install 'datafilter[kenlm]'"
            ) from None
        self.recipe = self._checked_recipe()
        folder = Path(self.options.model).expanduser()
        config = kenlm.Config()
        # mmap the binary (prefaulted where the OS can): a shared, read-only page-cache copy,
        # never a private one, so every actor on a node uses the same physical memory.
        config.load_method = kenlm.LoadMethod.POPULATE_OR_LAZY
        self._model = kenlm.Model(str(folder / self.recipe.binary_file), config)
        self._sp = sentencepiece.SentencePieceProcessor(
            model_file=str(folder / self.recipe.tokenizer_file)
        )
        self._normalizer = Normalizer(self.recipe.normalization)

    def _units(self, text: str) -> list[str]:
        """The normalised, non-empty lines that get scored for one document."""
        if self.options.mode == "ccnet_compat":
            line = self._normalizer.line(text).replace("\n", " ")
            return [line] if line else []
        return self._normalizer.lines(text)

    def score_batch(self, texts: list[str]) -> BatchScores:
        units = [self._units(t) for t in texts]
        flat = [line for doc in units for line in doc]
        # One thread: an actor is one core (SentencePiece would otherwise start one per core).
        pieces = self._sp.encode(flat, out_type=str, num_threads=1) if flat else []
        score = self._model.score
        logprob = np.zeros(len(texts), dtype=np.float64)
        n_tokens = np.zeros(len(texts), dtype=np.int64)
        pos = 0
        for i, doc in enumerate(units):
            log10_sum = 0.0
            count = 0
            for tokens in pieces[pos : pos + len(doc)]:
                log10_sum += score(" ".join(tokens), True, True)  # bos, eos
                count += len(tokens) + 1  # +1 for </s>
            pos += len(doc)
            logprob[i] = log10_sum * LN10
            n_tokens[i] = count
        return BatchScores(logprob_sum=logprob, n_tokens=n_tokens)
