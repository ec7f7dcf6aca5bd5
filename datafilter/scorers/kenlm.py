"""KenLM scorer, CCNet style: normalise, SentencePiece-encode, score with a KenLM n-gram model.

Per batch: each document's lines are normalised (``Normalizer.lines``); each line is split at
spaces into words and each word's SentencePiece pieces come from a cache (a word is encoded
once, on one thread, the first time it is seen); the line's pieces are scored as
``kenlm.Model.score(pieces, bos=True, eos=True)`` scores them. The native module
``_kenlm_lines`` (built by ``datafilter setup-kenlm``) holds the cache as KenLM ids and scores
without a Python object per token; without it a Python loop gives the same numbers, slower.

Encoding word by word gives SentencePiece's own segmentation of the line (its pieces never span
a space), except where two segmentations of a word score exactly the same: which one wins then
depends on float rounding of the text before it. Such ties are rare (65 of 63,233 lines of the
benchmark pool) and are decided the same way in every run and on every machine.

The model binary is memory-mapped, so actors on one node share one copy in the page cache.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np

from datafilter.errors import MissingDependencyError, ModelError
from datafilter.io.hash_cache import cached_sha256, folder_sha256
from datafilter.kenlm.model import RECIPE_FILE, KenlmRecipe, load_recipe, without_nul
from datafilter.kenlm.native import load_native
from datafilter.kenlm.normalize import NormalizationRecipe, Normalizer
from datafilter.scorers.base import BatchScores, Scorer, ScorerOptions

LN10 = math.log(10.0)
log = logging.getLogger(__name__)
# Words whose pieces stay cached per actor (emptied when full): ~60 MB native, more in Python.
WORD_CACHE_SIZE = 1 << 19


class KenlmOptions(ScorerOptions):
    model: Path
    mode: Literal["per_line", "ccnet_compat"] = "per_line"
    # "word": pieces cached per word (fast); "line": SentencePiece on each whole line, exactly
    # its own segmentation, ties included (~3x slower).
    segmentation: Literal["word", "line"] = "word"
    # When given, must equal the model's recipe: a guard against scoring with the wrong recipe.
    normalization: NormalizationRecipe | None = None


class KenlmScorer(Scorer):
    """Per-line scoring by default; ``ccnet_compat`` scores the whole document as one line."""

    name = "kenlm"
    # 2: lines encoded word by word (equal-score ties may split differently); 3: recipes carry
    # every normalisation flag and ``ccnet`` is the default, so scores of earlier runs are redone.
    version = 3
    Options = KenlmOptions
    options: KenlmOptions

    def validate(self) -> None:
        """Check the recipe, and the model files against the sha256 checksums it records
        (hashes cached by file signature, so a rerun reads nothing)."""
        self.recipe = self._checked_recipe()
        folder = Path(self.options.model).expanduser()
        for name, expected in sorted(self.recipe.checksums.items()):
            if cached_sha256(folder / name) != expected:
                raise ModelError(
                    f"{folder / name} does not match the sha256 recorded in {RECIPE_FILE}: the "
                    "file is damaged or was replaced; restore it or train the model again"
                )

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
        info["model_recipe"] = recipe.model_dump(mode="json", exclude={"training", "imported"})
        if not recipe.checksums:
            # Folders without checksums: the files' sha256 identify the model.
            folder = Path(self.options.model).expanduser()
            info["model_files"] = folder_sha256(
                folder, [recipe.binary_file, recipe.tokenizer_file]
            )
        return info

    def setup(self) -> None:
        try:
            import kenlm  # noqa: F401 - checked here, used by _model
            import sentencepiece
        except ImportError as exc:
            raise MissingDependencyError(
                f"the kenlm scorer needs {exc.name}: pip install 'datafilter[kenlm]'"
            ) from None
        self.recipe = self._checked_recipe()
        folder = Path(self.options.model).expanduser()
        self._model_path = str(folder / self.recipe.binary_file)
        self._kenlm_model: Any = None  # kenlm's Python model: loaded by the paths that use it
        self._sp = sentencepiece.SentencePieceProcessor(
            model_file=str(folder / self.recipe.tokenizer_file)
        )
        self._normalizer = Normalizer(self.recipe.normalization)
        native = load_native() if self.options.segmentation == "word" else None
        try:
            self._native = (
                native.LineScorer(self._model_path, WORD_CACHE_SIZE) if native is not None else None
            )
        except OSError as exc:
            raise ModelError(str(exc)) from None
        self._pieces: dict[str, tuple[str, int]] = {}  # Python path: word -> (pieces, count)
        if self._native is None and self.options.segmentation == "word":
            log.warning(
                "the native KenLM line scorer is not in use (`datafilter setup-kenlm` builds "
                "it; DATAFILTER_KENLM_NATIVE=0 turns it off): scoring in Python, same scores, "
                "about 3x slower"
            )

    @property
    def _model(self) -> Any:
        if self._kenlm_model is None:
            import kenlm

            config = kenlm.Config()
            # mmap the binary (prefaulted where the OS can): a shared, read-only page-cache
            # copy, never a private one, so every actor on a node uses the same physical memory.
            config.load_method = kenlm.LoadMethod.POPULATE_OR_LAZY
            self._kenlm_model = kenlm.Model(self._model_path, config)
        return self._kenlm_model

    @property
    def native(self) -> bool:
        """Whether the native line scorer is in use."""
        return self._native is not None

    def _encode(self, words: list[str]) -> list[list[str]]:
        # One thread: an actor is one core (SentencePiece would otherwise start one per core).
        return self._sp.encode(words, out_type=str, num_threads=1)

    def _units(self, text: str) -> list[str]:
        """The normalised, non-empty lines that get scored for one document (without NUL
        characters, as in training: :func:`~datafilter.kenlm.model.without_nul`)."""
        if self.options.mode == "ccnet_compat":
            line = without_nul(self._normalizer.line(text).replace("\n", " "))
            return [line] if line else []
        lines = self._normalizer.lines(text)
        if "\x00" in text:
            lines = [line for line in map(without_nul, lines) if line]
        return lines

    def score_batch(self, texts: list[str]) -> BatchScores:
        units = [self._units(t) for t in texts]
        flat = [line for doc in units for line in doc]
        per_doc = [len(doc) for doc in units]
        if self.options.segmentation == "line":
            log10_sums, counts = self._score_whole_lines(flat, per_doc)
        elif self._native is not None:
            missing = self._native.prepare(flat)
            if missing:
                self._native.add(missing, self._encode(missing))
            log10_sums, counts = self._native.score(per_doc)
        else:
            log10_sums, counts = self._score_python(flat, per_doc)
        return BatchScores(
            logprob_sum=np.array(log10_sums, dtype=np.float64) * LN10,
            n_tokens=np.array(counts, dtype=np.int64),
        )

    def _score_whole_lines(self, flat: list[str], per_doc: list[int]) -> tuple[list, list]:
        """Each line SentencePiece-encoded whole and scored by kenlm's ``Model.score``."""
        pieces = self._encode(flat) if flat else []
        return self._sum_documents([(" ".join(p), len(p)) for p in pieces], per_doc)

    def _score_python(self, flat: list[str], per_doc: list[int]) -> tuple[list, list]:
        """What ``_kenlm_lines`` does, with kenlm's Python module (same numbers)."""
        cache = self._pieces
        lines = [[w for w in line.split(" ") if w] for line in flat]
        missing = list({w for words in lines for w in words if w not in cache})
        if missing:
            if len(cache) + len(missing) > WORD_CACHE_SIZE:
                cache.clear()
                missing = list({w for words in lines for w in words})
            for word, pieces in zip(missing, self._encode(missing), strict=True):
                cache[word] = (" ".join(pieces), len(pieces))
        joined = []
        for words in lines:
            entries = [cache[w] for w in words]
            joined.append(
                (" ".join(pieces for pieces, n in entries if n), sum(n for _, n in entries))
            )
        return self._sum_documents(joined, per_doc)

    def _sum_documents(
        self, lines: list[tuple[str, int]], per_doc: list[int]
    ) -> tuple[list[float], list[int]]:
        """Per document, over its ``per_doc`` lines of (joined pieces, piece count): the sum of
        ``Model.score`` with <s> and </s>, and the pieces plus one </s> per line."""
        score = self._model.score
        log10_sums: list[float] = []
        counts: list[int] = []
        pos = 0
        for n_lines in per_doc:
            log10_sum = 0.0
            count = 0
            for joined, n_pieces in lines[pos : pos + n_lines]:
                log10_sum += score(joined, True, True)  # bos, eos
                count += n_pieces + 1  # +1 for </s>
            pos += n_lines
            log10_sums.append(log10_sum)
            counts.append(count)
        return log10_sums, counts
