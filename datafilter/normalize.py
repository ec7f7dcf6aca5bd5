"""CCNet-style text normalisation, driven by a recipe stored beside each KenLM model.

The steps follow CCNet's recipe (strip, lowercase, strip accents, each digit to 0, unicode
punctuation to ASCII, drop non-printing characters). Each step is a flag so that models trained
with other recipes can be matched exactly; the recipe travels with the model.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict

# ~35 unicode punctuation marks and their ASCII replacements (CCNet's table, as data).
UNICODE_PUNCTUATION: dict[str, str] = {
    "，": ",", "。": ". ", "、": ",", "„": '"', "”": '"', "“": '"', "«": '"', "»": '"',
    "１": '"', "」": '"', "「": '"', "《": '"', "》": '"', "´": "'", "∶": ":", "：": ":",
    "？": "?", "！": "!", "（": "(", "）": ")", "；": ";", "–": "-", "—": " - ", "．": ". ",
    "～": "~", "’": "'", "…": "...", "━": "-", "〈": "<", "〉": ">", "【": "[", "】": "]",
    "％": "%", "►": "-",
}  # fmt: skip

_PUNCT_TABLE = str.maketrans(UNICODE_PUNCTUATION)
_PUNCT_REMOVE_TABLE = str.maketrans({k: "" for k in UNICODE_PUNCTUATION})
_DIGIT_RE = re.compile(r"\d")
# ASCII fast path: digits -> "0", control characters (category Cc) dropped.
_ASCII_DIGITS = str.maketrans({str(d): "0" for d in range(10)})
_ASCII_CONTROLS = str.maketrans({chr(c): None for c in [*range(32), 127]})
_ASCII_DIGITS_AND_CONTROLS = str.maketrans(
    {**{str(d): "0" for d in range(10)}, **{chr(c): None for c in [*range(32), 127]}}
)


class NormalizationRecipe(BaseModel):
    """Which normalisation steps a model's training text went through."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lowercase: bool = True
    strip_accents: bool = True
    digits_to_zero: bool = True
    punctuation: Literal["map", "remove", "keep"] = "map"
    remove_non_printing: bool = True

    def differences(self, other: NormalizationRecipe) -> list[str]:
        """Names and values of the flags that differ from ``other``."""
        mine, theirs = self.model_dump(), other.model_dump()
        return [f"{k}: {mine[k]!r} != {theirs[k]!r}" for k in mine if mine[k] != theirs[k]]


CCNET_RECIPE = NormalizationRecipe()


@lru_cache(maxsize=1)
def _non_printing_re() -> re.Pattern[str]:
    """A character class of every code point whose unicode category starts with 'C'."""
    ranges: list[str] = []
    start = None
    for cp in range(sys.maxunicode + 1):
        is_c = unicodedata.category(chr(cp))[0] == "C"
        if is_c and start is None:
            start = cp
        elif not is_c and start is not None:
            ranges.append(_char_range(start, cp - 1))
            start = None
    if start is not None:
        ranges.append(_char_range(start, sys.maxunicode))
    return re.compile("[" + "".join(ranges) + "]")


def _char_range(lo: int, hi: int) -> str:
    return re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}"


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn")


def normalize(text: str, recipe: NormalizationRecipe = CCNET_RECIPE) -> str:
    """Normalise one line (or a whole document) with ``recipe``."""
    text = text.strip()
    if not text:
        return text
    if recipe.lowercase:
        text = text.lower()
    if text.isascii():
        return _normalize_ascii(text, recipe)
    if recipe.strip_accents:
        text = _strip_accents(text)
    if recipe.digits_to_zero:
        text = _DIGIT_RE.sub("0", text)
    if recipe.punctuation == "map":
        text = text.translate(_PUNCT_TABLE)
    elif recipe.punctuation == "remove":
        text = text.translate(_PUNCT_REMOVE_TABLE)
    if recipe.remove_non_printing and not text.isprintable():
        # isprintable() is False for every category-C character (and a few separators), so
        # this cheap test skips the slow regex for the usual line with nothing to remove.
        text = _non_printing_re().sub("", text)
    return text


def _normalize_ascii(text: str, recipe: NormalizationRecipe) -> str:
    """ASCII text: accents and unicode punctuation cannot occur; one translate does the rest."""
    if recipe.digits_to_zero and recipe.remove_non_printing:
        return text.translate(_ASCII_DIGITS_AND_CONTROLS)
    if recipe.digits_to_zero:
        return text.translate(_ASCII_DIGITS)
    if recipe.remove_non_printing:
        return text.translate(_ASCII_CONTROLS)
    return text
