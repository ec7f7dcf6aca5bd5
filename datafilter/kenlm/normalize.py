"""CCNet's text normalisation, driven by a recipe stored beside each KenLM model.

The recipe ``ccnet`` (the default) is CCNet's ``normalize(line)`` exactly, as defined in
facebookresearch/cc_net, ``cc_net/text_normalizer.py``: ``str.strip``; ``str.lower``; accents
stripped (NFD, then every category-Mn character dropped; the text stays decomposed); every
character ``\\d`` matches in a str regex (every unicode decimal digit, category Nd, full-width
and Arabic-Indic ones included) becomes "0"; 34 unicode punctuation marks mapped to ASCII; code
points 0-31 and 127-159 (C0, DEL, C1) dropped. Other format, private-use or unassigned code
points (zero-width joiner and non-joiner, soft hyphen, ...) are kept. A document given as one
line loses its newlines (they are C0), as in CCNet's mining pipeline.

Each step is a flag so that models trained with other recipes can be matched exactly; the
recipe travels with the model. ``datafilter-v1`` is the recipe of model folders written before
the ``ccnet`` recipe existed: it maps "。" to ". " and drops every category-C character.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from datafilter.errors import ConfigError

# The 34 unicode punctuation marks and their ASCII replacements of CCNet's table (as data).
UNICODE_PUNCTUATION: dict[str, str] = {
    "，": ",", "。": ".", "、": ",", "„": '"', "”": '"', "“": '"', "«": '"', "»": '"',
    "１": '"', "」": '"', "「": '"', "《": '"', "》": '"', "´": "'", "∶": ":", "：": ":",
    "？": "?", "！": "!", "（": "(", "）": ")", "；": ";", "–": "-", "—": " - ", "．": ". ",
    "～": "~", "’": "'", "…": "...", "━": "-", "〈": "<", "〉": ">", "【": "[", "】": "]",
    "％": "%", "►": "-",
}  # fmt: skip
# The table of datafilter-v1 recipes: CCNet's but for the ideographic full stop.
UNICODE_PUNCTUATION_V1: dict[str, str] = {**UNICODE_PUNCTUATION, "。": ". "}
PUNCTUATION_TABLES: dict[str, dict[str, str]] = {
    "ccnet": UNICODE_PUNCTUATION,
    "datafilter-v1": UNICODE_PUNCTUATION_V1,
}
# CCNet's non-printing characters: C0 controls, DEL and C1 controls.
C0_C1_CODE_POINTS: tuple[int, ...] = (*range(32), *range(127, 160))

# ASCII fast path: digits -> "0", control characters (category Cc) dropped.
_ASCII_DIGITS = {ord(str(d)): "0" for d in range(10)}
_ASCII_CONTROLS = {c: None for c in [*range(32), 127]}
# Control characters that str.strip() does not remove (it removes \t \n \v \f \r \x1c-\x1f).
_ASCII_HARD_CONTROL_RE = re.compile("[\x00-\x08\x0e-\x1b\x7f]")
# Transformed words kept per Normalizer (emptied when it grows past this): ~30 MB at most.
WORD_CACHE_SIZE = 1 << 17


class NormalizationRecipe(BaseModel):
    """Which normalisation steps a model's training text went through."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lowercase: bool = True
    strip_accents: bool = True
    digits_to_zero: bool = True
    punctuation: Literal["map", "remove", "keep"] = "map"
    # Which table "map" and "remove" use: CCNet's, or datafilter-v1's ("。" -> ". ").
    punctuation_table: Literal["ccnet", "datafilter-v1"] = "ccnet"
    remove_non_printing: bool = True
    # What "non-printing" removes: code points 0-31 and 127-159 (CCNet), or every character of
    # unicode category C (datafilter-v1: also Cf, Co, Cn, Cs such as ZWJ/ZWNJ and soft hyphen).
    non_printing: Literal["c0_c1", "category_c"] = "c0_c1"

    @model_validator(mode="before")
    @classmethod
    def _named(cls, data: Any) -> Any:
        """A recipe may be given by name (``"ccnet"``, ``"datafilter-v1"``)."""
        if isinstance(data, str):
            return recipe_by_name(data).model_dump()
        return data

    @property
    def name(self) -> str | None:
        """The name of the named recipe equal to this one, if any."""
        return next((name for name, r in RECIPES.items() if r == self), None)

    def differences(self, other: NormalizationRecipe) -> list[str]:
        """Names and values of the flags that differ from ``other``."""
        mine, theirs = self.model_dump(), other.model_dump()
        return [f"{k}: {mine[k]!r} != {theirs[k]!r}" for k in mine if mine[k] != theirs[k]]


CCNET_RECIPE = NormalizationRecipe()
DATAFILTER_V1_RECIPE = NormalizationRecipe(
    punctuation_table="datafilter-v1", non_printing="category_c"
)
RECIPES: dict[str, NormalizationRecipe] = {
    "ccnet": CCNET_RECIPE,
    "datafilter-v1": DATAFILTER_V1_RECIPE,
}


def recipe_by_name(name: str) -> NormalizationRecipe:
    """The named recipe; a ConfigError lists the names."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ConfigError(
            f"unknown normalisation recipe {name!r}; choose one of {', '.join(RECIPES)}"
        ) from None


@dataclass(frozen=True)
class _UnicodeClasses:
    """Code points by unicode category, found in one scan of the whole code space."""

    combining_marks: tuple[int, ...]  # category Mn: what accent stripping drops after NFD
    decimal_digits: tuple[int, ...]  # category Nd: what ``\d`` matches in a str regex
    non_printing: re.Pattern[str]  # one character class of every category-C code point


@lru_cache(maxsize=1)
def _unicode_classes() -> _UnicodeClasses:
    import numpy as np

    category = unicodedata.category
    cats = np.array([category(chr(cp)) for cp in range(sys.maxunicode + 1)])
    marks = tuple(np.flatnonzero(cats == "Mn").tolist())
    digits = tuple(np.flatnonzero(cats == "Nd").tolist())
    is_c = np.isin(cats, ["Cc", "Cf", "Cn", "Co", "Cs"]).astype(np.int8)
    edges = np.diff(np.concatenate(([0], is_c, [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    ranges = [_char_range(int(lo), int(hi)) for lo, hi in zip(starts, ends, strict=True)]
    return _UnicodeClasses(marks, digits, re.compile("[" + "".join(ranges) + "]"))


def _non_printing_re() -> re.Pattern[str]:
    """A character class of every code point whose unicode category starts with 'C'."""
    return _unicode_classes().non_printing


def _char_range(lo: int, hi: int) -> str:
    return re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}"


def _general_table(recipe: NormalizationRecipe) -> dict[int, str | None]:
    """One ``str.translate`` table for the per-character steps of a non-ASCII line.

    Applied after NFD, it does what the steps do one after the other: a combining mark is
    dropped (accent stripping), else a decimal digit becomes "0" (no punctuation mark is reached
    by then, so the fullwidth one is zeroed, not mapped), else a punctuation mark is mapped or
    removed, else (recipe ``c0_c1``) a C0/C1 control is dropped. No step's output is another
    step's input: marks are not digits, punctuation or controls, and the punctuation
    replacements are printable ASCII without digits.
    """
    table: dict[int, str | None] = {}
    if recipe.remove_non_printing and recipe.non_printing == "c0_c1":
        # Dropped last in CCNet; no other step outputs or reads these code points.
        table.update(dict.fromkeys(C0_C1_CODE_POINTS))
    punctuation = PUNCTUATION_TABLES[recipe.punctuation_table]
    if recipe.punctuation == "map":
        table.update({ord(k): v for k, v in punctuation.items()})
    elif recipe.punctuation == "remove":
        table.update({ord(k): None for k in punctuation})
    classes = _unicode_classes()
    if recipe.digits_to_zero:
        table.update(dict.fromkeys(classes.decimal_digits, "0"))
    if recipe.strip_accents:
        table.update(dict.fromkeys(classes.combining_marks))
    return table


def _ascii_table(recipe: NormalizationRecipe, keep_newline: bool) -> dict[int, str | None]:
    """The translate table for ASCII text: digits zeroed, control characters dropped."""
    table: dict[int, str | None] = {}
    if recipe.digits_to_zero:
        table.update(_ASCII_DIGITS)
    if recipe.remove_non_printing:
        table.update(_ASCII_CONTROLS)
        if keep_newline:
            del table[ord("\n")]
    return table


class Normalizer:
    """A recipe's steps with their tables built once: ``line`` for one line (or a whole
    document as one line), ``lines`` for the normalised non-empty lines of a document."""

    def __init__(self, recipe: NormalizationRecipe = CCNET_RECIPE):
        self.recipe = recipe
        self._lower = recipe.lowercase
        self._nfd = recipe.strip_accents
        # Category-C removal needs a regex; C0/C1 removal is part of the translate table.
        self._non_printing = recipe.remove_non_printing and recipe.non_printing == "category_c"
        self._ascii_controls = recipe.remove_non_printing
        self._ascii_line = _ascii_table(recipe, keep_newline=False) or None
        self._ascii_doc = _ascii_table(recipe, keep_newline=True) or None
        self._general: dict[int, str | None] | None = None  # built on the first non-ASCII line
        self._words: dict[str, str] = {}  # transformed words of non-ASCII lines

    def line(self, text: str) -> str:
        """Normalise one line (a whole document is one line whose newlines are dropped)."""
        text = text.strip()
        if not text:
            return text
        if text.isascii():
            return self._transform(text)  # one lower and one translate, nothing to cache
        # Every step maps a space to itself and never reaches across one (NFD reorders marks
        # only between starters, a space is one; lowercasing's final-sigma rule sees a space
        # as "not cased", as it sees a word's edge), so a line is the space-joined result of
        # its space-separated words, and words repeat: each is transformed once, then cached.
        words = text.split(" ")
        cache = self._words
        parts = [cache.get(w) for w in words]
        if None in parts:
            if len(cache) > WORD_CACHE_SIZE:
                cache.clear()
            transform = self._transform
            parts = [cache.get(w) or cache.setdefault(w, transform(w)) for w in words]
        return " ".join(parts)

    def _transform(self, text: str) -> str:
        """The steps after ``strip`` on any text (one word, in practice)."""
        if self._lower:
            text = text.lower()
        if text.isascii():
            # Accents and unicode punctuation cannot occur; one translate does the rest.
            return text.translate(self._ascii_line) if self._ascii_line else text
        if self._nfd:
            text = unicodedata.normalize("NFD", text)
        if self._general is None:
            self._general = _general_table(self.recipe)
        if self._general:
            text = text.translate(self._general)
        if self._non_printing and not text.isprintable():
            # isprintable() is False for every category-C character (and a few separators),
            # so this cheap test skips the slow regex for the usual word with nothing to remove.
            text = _non_printing_re().sub("", text)
        return text

    def lines(self, text: str) -> list[str]:
        """The non-empty results of ``line`` on each ``\\n``-separated line of a document.

        An ASCII document without control characters other than whitespace is done in one
        ``lower`` and one ``translate`` before splitting: these steps act on each character
        alone, and the only characters they drop (whitespace controls) are also what ``strip``
        removes at a line's ends, so the order does not change the result. Other documents go
        line by line.
        """
        if text.isascii() and not (
            self._ascii_controls and _ASCII_HARD_CONTROL_RE.search(text) is not None
        ):
            if self._lower:
                text = text.lower()
            if self._ascii_doc:
                text = text.translate(self._ascii_doc)
            return [line for raw in text.split("\n") if (line := raw.strip())]
        line = self.line
        return [out for raw in text.split("\n") if (out := line(raw))]


_NORMALIZERS: dict[int, tuple[NormalizationRecipe, Normalizer]] = {}


def _normalizer(recipe: NormalizationRecipe) -> Normalizer:
    """The Normalizer of this recipe object (looked up by identity: hashing a recipe is slow)."""
    entry = _NORMALIZERS.get(id(recipe))
    if entry is None or entry[0] is not recipe:
        if len(_NORMALIZERS) > 64:
            _NORMALIZERS.clear()
        entry = _NORMALIZERS[id(recipe)] = (recipe, Normalizer(recipe))
    return entry[1]


def normalize(text: str, recipe: NormalizationRecipe = CCNET_RECIPE) -> str:
    """Normalise one line (or a whole document) with ``recipe``."""
    return _normalizer(recipe).line(text)


def normalize_lines(text: str, recipe: NormalizationRecipe = CCNET_RECIPE) -> list[str]:
    """The normalised non-empty lines of a document (see ``Normalizer.lines``)."""
    return _normalizer(recipe).lines(text)
