"""A straightforward CCNet-style normaliser: the baseline (c) of ``kenlm_throughput.py``.

Written for the benchmark the way CCNet's ``text_normalizer`` works, in plain Python and one
line at a time: strip, lowercase, NFD-decompose and drop combining marks character by
character, a regex for digits, a per-character dictionary lookup for the unicode punctuation
and a per-character category test for the non-printing characters, every step applied to
every line. It follows the same recipe flags and produces the same output as
``datafilter.kenlm.normalize.normalize`` (the bench checks that), so the two loops score identical
text and only the normaliser's speed differs.

For the ``ccnet`` recipe the non-printing characters are CCNet's two-range class (U+0000-U+001F,
U+007F-U+009F), one regex; the ``datafilter-v1`` recipe drops every character of unicode
category C, tested per character (a regex over the 700 category-C ranges is far slower in
Python's ``re``), like the accent stripping.
"""

from __future__ import annotations

import re
import unicodedata

from datafilter.kenlm.normalize import PUNCTUATION_TABLES, NormalizationRecipe

DIGITS = re.compile(r"\d")
C0_C1 = re.compile("[\x00-\x1f\x7f-\x9f]")


def remove_category_c(line: str) -> str:
    """Keep every character whose unicode category is not C (control, format, unassigned...)."""
    return "".join(c for c in line if unicodedata.category(c)[0] != "C")


def strip_accents(line: str) -> str:
    """Decompose (NFD) and keep every character that is not a combining mark (Mn)."""
    decomposed = unicodedata.normalize("NFD", line)
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn")


def map_punctuation(line: str, table: dict[str, str]) -> str:
    return "".join(table.get(c, c) for c in line)


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
    table = PUNCTUATION_TABLES[recipe.punctuation_table]
    if recipe.punctuation == "map":
        line = map_punctuation(line, table)
    elif recipe.punctuation == "remove":
        line = "".join(c for c in line if c not in table)
    if recipe.remove_non_printing and recipe.non_printing == "c0_c1":
        line = C0_C1.sub("", line)
    elif recipe.remove_non_printing:
        line = remove_category_c(line)
    return line
