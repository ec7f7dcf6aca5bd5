"""The table-driven normaliser against a plain step-by-step one, on random and tricky text."""

from __future__ import annotations

import itertools
import random
import re
import sys
import unicodedata

import pytest

from datafilter.kenlm.normalize import (
    PUNCTUATION_TABLES,
    NormalizationRecipe,
    Normalizer,
    _unicode_classes,
    normalize,
    normalize_lines,
)

RECIPES = [
    NormalizationRecipe(
        lowercase=a,
        strip_accents=b,
        digits_to_zero=c,
        remove_non_printing=d,
        punctuation=p,
        punctuation_table=table,
        non_printing=non_printing,
    )
    for a, b, c, d in itertools.product([True, False], repeat=4)
    for p in ("map", "remove", "keep")
    for table, non_printing in (("ccnet", "c0_c1"), ("datafilter-v1", "category_c"))
]
ALL_PUNCTUATION = "".join({**PUNCTUATION_TABLES["ccnet"], **PUNCTUATION_TABLES["datafilter-v1"]})
SPECIAL = (
    "\t\n\r\x0b\x0c\x1c\x1f\x00\x01\x1b\x7f\x85\x9f\xa0\xad\u200b\u200c\u200d\u2028\u3000"
    "\ue000\ud800 \u0301éÅ１٣ΣİẞǅĲ"
)


def reference(line: str, recipe: NormalizationRecipe) -> str:
    """Each step in turn, one character at a time, as CCNet describes them."""
    line = line.strip()
    if not line:
        return line
    if recipe.lowercase:
        line = line.lower()
    if recipe.strip_accents:
        nfd = unicodedata.normalize("NFD", line)
        line = "".join(c for c in nfd if unicodedata.category(c) != "Mn")
    if recipe.digits_to_zero:
        line = re.sub(r"\d", "0", line)
    table = PUNCTUATION_TABLES[recipe.punctuation_table]
    if recipe.punctuation == "map":
        line = "".join(table.get(c, c) for c in line)
    elif recipe.punctuation == "remove":
        line = "".join(c for c in line if c not in table)
    if recipe.remove_non_printing and recipe.non_printing == "c0_c1":
        line = "".join(c for c in line if not (ord(c) < 32 or 127 <= ord(c) < 160))
    elif recipe.remove_non_printing:
        line = "".join(c for c in line if unicodedata.category(c)[0] != "C")
    return line


def _recipe_id(recipe: NormalizationRecipe) -> str:
    return "-".join(str(v) for v in recipe.model_dump().values())


def _random_text(rng: random.Random) -> str:
    out = []
    for _ in range(rng.randint(0, 40)):
        r = rng.random()
        if r < 0.45:
            out.append(chr(rng.randint(32, 126)))
        elif r < 0.7:
            out.append(rng.choice(SPECIAL + ALL_PUNCTUATION))
        elif r < 0.9:
            out.append(chr(rng.randint(0, 0x3000)))
        else:
            out.append(chr(rng.randint(0, sys.maxunicode)))
    return "".join(out)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: _recipe_id(r))
def test_lines_and_line_match_the_reference(recipe) -> None:
    rng = random.Random(0)
    ascii_docs = ["".join(chr(rng.randint(0, 127)) for _ in range(30)) for _ in range(300)]
    docs = [_random_text(rng) for _ in range(600)] + ascii_docs
    for doc in docs:
        want = [x for x in (reference(raw, recipe) for raw in doc.split("\n")) if x]
        assert normalize_lines(doc, recipe) == want, repr(doc)
        assert normalize(doc, recipe) == reference(doc, recipe), repr(doc)


def test_ascii_documents_with_controls_at_line_ends() -> None:
    # A control character that strip() keeps must be removed after stripping, not before.
    for doc in ["\x01 abc \n  \x7fdef\t", "a\x1c\n\x1f b \r\n\x0b", "  \n\t\n", "x\x00 \ny"]:
        assert normalize_lines(doc) == [x for x in map(reference_ccnet, doc.split("\n")) if x]


def reference_ccnet(line: str) -> str:
    return reference(line, NormalizationRecipe())


def test_tables_hold_exactly_the_unicode_classes() -> None:
    classes = _unicode_classes()
    chars = [chr(cp) for cp in range(sys.maxunicode + 1)]
    digit = re.compile(r"\d")
    assert classes.decimal_digits == tuple(i for i, c in enumerate(chars) if digit.fullmatch(c))
    marks = tuple(i for i, c in enumerate(chars) if unicodedata.category(c) == "Mn")
    assert classes.combining_marks == marks


def test_normalizer_objects_are_reused_per_recipe() -> None:
    recipe = NormalizationRecipe(digits_to_zero=False)
    assert normalize("A1", recipe) == "a1"
    assert Normalizer(recipe).lines("A1\n\nB2") == ["a1", "b2"]


def test_lines_of_repeated_words_match_the_reference() -> None:
    """Non-ASCII lines are transformed word by word (cached): words that repeat, and the
    spots where a word's edge matters (final sigma, a mark after a space, removed characters)."""
    words = ["ΟΔΟΣ", "Σ", "'Σ", "\u0301b", "café", "Ａ１", "—", "\x01", "", "\t", "x\u3000y", "ǅ"]
    words += ["\u200dΣ", "Σ\u00ad", "。", "\x85"]
    rng = random.Random(1)
    recipes = [NormalizationRecipe(), NormalizationRecipe(strip_accents=False)]
    for recipe in [*recipes, NormalizationRecipe(non_printing="category_c")]:
        normalizer = Normalizer(recipe)
        for _ in range(400):
            line = " ".join(rng.choice(words) for _ in range(rng.randint(1, 8)))
            assert normalizer.line(line) == reference(line, recipe), repr(line)
