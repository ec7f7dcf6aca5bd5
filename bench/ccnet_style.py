"""A straightforward CCNet-style normaliser: the baseline (c) of ``kenlm_throughput.py``.

Written for the benchmark the way CCNet's ``text_normalizer`` works, in plain Python and one
line at a time: strip, lowercase, NFD-decompose and drop combining marks character by
character, a regex for digits, a per-character dictionary lookup for the unicode punctuation
and a per-character category test for the non-printing characters, every step applied to
every line. It follows the same recipe flags and produces the same output as
``datafilter.normalize.normalize`` (the bench checks that), so the two loops score identical
text and only the normaliser's speed differs.

One difference from CCNet itself: CCNet's non-printing class holds only the C0/C1 control
characters (U+0000-U+001F, U+007F-U+009F); datafilter drops every character of unicode
category C, so this baseline does too. A regex over every category-C range (700 ranges) is
far slower in Python's ``re`` than CCNet's two-range class, so the test is per character,
like the accent stripping.
"""

from __future__ import annotations

import re
import unicodedata

from datafilter.normalize import UNICODE_PUNCTUATION, NormalizationRecipe

DIGITS = re.compile(r"\d")
PUNCT_CHARS = re.compile("[" + "".join(map(re.escape, UNICODE_PUNCTUATION)) + "]")


def remove_non_printing(line: str) -> str:
    """Keep every character whose unicode category is not C (control, format, unassigned...)."""
    return "".join(c for c in line if unicodedata.category(c)[0] != "C")


def strip_accents(line: str) -> str:
    """Decompose (NFD) and keep every character that is not a combining mark (Mn)."""
    decomposed = unicodedata.normalize("NFD", line)
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn")


def map_punctuation(line: str) -> str:
    return "".join(UNICODE_PUNCTUATION.get(c, c) for c in line)


def normalize_line(line: str, recipe: NormalizationRecipe) -> str:
    """Every enabled step on every line, in CCNet's order."""
    line = line.strip()
    if not line:
        return line
    if recipe.lowercase:
        line = line.lower()
    if recipe.strip_accents:
        line = strip_accents(line)
    if recipe.digits_to_zero:
        line = DIGITS.sub("0", line)
    if recipe.punctuation == "map":
        line = map_punctuation(line)
    elif recipe.punctuation == "remove":
        line = PUNCT_CHARS.sub("", line)
    if recipe.remove_non_printing:
        line = remove_non_printing(line)
    return line
