"""Golden tests of the normalisation recipes, on hand-written strings.

The expected strings of the ``ccnet`` recipe are what CCNet's ``normalize(line)`` (defaults
accent, case, numbers, punct=1) returns, worked out by hand from facebookresearch/cc_net
``cc_net/text_normalizer.py``: strip, lower, NFD minus category Mn, ``\\d`` -> "0", its
punctuation table, code points 0-31 and 127-159 dropped.
"""

from __future__ import annotations

import unicodedata

import pytest

from datafilter.errors import ConfigError
from datafilter.kenlm.normalize import (
    CCNET_RECIPE,
    DATAFILTER_V1_RECIPE,
    PUNCTUATION_TABLES,
    RECIPES,
    UNICODE_PUNCTUATION,
    NormalizationRecipe,
    normalize,
    normalize_lines,
    recipe_by_name,
)

# CCNet's punctuation table, written out by code point: (mark, replacement).
CCNET_PUNCTUATION = [
    ("\uff0c", ","),  # fullwidth comma
    ("\u3002", "."),  # ideographic full stop
    ("\u3001", ","),  # ideographic comma
    ("\u201e", '"'),  # double low-9 quotation mark
    ("\u201d", '"'),  # right double quotation mark
    ("\u201c", '"'),  # left double quotation mark
    ("\u00ab", '"'),  # left-pointing double angle quotation mark
    ("\u00bb", '"'),  # right-pointing double angle quotation mark
    ("\uff11", '"'),  # fullwidth digit one (never reached: it is a digit, zeroed first)
    ("\u300d", '"'),  # right corner bracket
    ("\u300c", '"'),  # left corner bracket
    ("\u300a", '"'),  # left double angle bracket
    ("\u300b", '"'),  # right double angle bracket
    ("\u00b4", "'"),  # acute accent (no canonical decomposition: NFD keeps it)
    ("\u2236", ":"),  # ratio
    ("\uff1a", ":"),  # fullwidth colon
    ("\uff1f", "?"),  # fullwidth question mark
    ("\uff01", "!"),  # fullwidth exclamation mark
    ("\uff08", "("),  # fullwidth left parenthesis
    ("\uff09", ")"),  # fullwidth right parenthesis
    ("\uff1b", ";"),  # fullwidth semicolon
    ("\u2013", "-"),  # en dash
    ("\u2014", " - "),  # em dash
    ("\uff0e", ". "),  # fullwidth full stop
    ("\uff5e", "~"),  # fullwidth tilde
    ("\u2019", "'"),  # right single quotation mark
    ("\u2026", "..."),  # horizontal ellipsis
    ("\u2501", "-"),  # box drawings heavy horizontal
    ("\u3008", "<"),  # left angle bracket
    ("\u3009", ">"),  # right angle bracket
    ("\u3010", "["),  # left black lenticular bracket
    ("\u3011", "]"),  # right black lenticular bracket
    ("\uff05", "%"),  # fullwidth percent sign
    ("\u25ba", "-"),  # black right-pointing pointer
]
PERSIAN = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
C0_C1 = [*range(0x00, 0x20), *range(0x7F, 0xA0)]


def test_the_punctuation_table_is_ccnets() -> None:
    assert dict(CCNET_PUNCTUATION) == UNICODE_PUNCTUATION
    assert list(UNICODE_PUNCTUATION) == [mark for mark, _ in CCNET_PUNCTUATION]  # same order
    assert PUNCTUATION_TABLES["ccnet"] is UNICODE_PUNCTUATION


@pytest.mark.parametrize(("mark", "ascii_form"), CCNET_PUNCTUATION)
def test_every_punctuation_entry(mark: str, ascii_form: str) -> None:
    expected = "x0y" if mark == "\uff11" else f"x{ascii_form}y"
    assert normalize(f"x{mark}y") == expected
    # At a line's end the replacement is not stripped again ("—" keeps its spaces).
    assert normalize(f"x{mark}") == ("x0" if mark == "\uff11" else f"x{ascii_form}")


@pytest.mark.parametrize("cp", C0_C1, ids=lambda cp: f"U+{cp:04X}")
def test_every_c0_c1_code_point_is_dropped(cp: int) -> None:
    char = chr(cp)
    assert normalize(f"a{char}b") == "ab"
    assert normalize(f"{char}a{char}b{char}") == "ab"
    assert normalize_lines(f"a{char}b") == (["a", "b"] if char == "\n" else ["ab"])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a\u200db", "a\u200db"),  # zero-width joiner (Cf)
        ("a\u200cb", "a\u200cb"),  # zero-width non-joiner (Cf)
        (PERSIAN, PERSIAN),  # "mikhaham": ZWNJ between the prefix and the verb
        ("\U0001f469\u200d\U0001f4bb", "\U0001f469\u200d\U0001f4bb"),  # emoji ZWJ sequence
        ("co\u00adoperate", "co\u00adoperate"),  # soft hyphen (Cf)
        ("a\u200bb", "a\u200bb"),  # zero-width space (Cf)
        ("\u200ba", "\u200ba"),  # ... which str.strip() keeps
        ("a\ufeffb", "a\ufeffb"),  # byte order mark (Cf)
        ("a\u200eb", "a\u200eb"),  # left-to-right mark (Cf)
        ("a\ue000b", "a\ue000b"),  # private use (Co)
        ("a\u0378b", "a\u0378b"),  # unassigned (Cn)
        ("a\ud800b", "a\ud800b"),  # lone surrogate (Cs)
        ("a\xa0b", "a\xa0b"),  # U+00A0, the first code point after C1, is kept
        ("\xa0a\xa0", "a"),  # ... but stripped at the ends (str.strip)
        ("a\u2028b", "a\u2028b"),  # line separator (Zl) is not a newline here
        ("a~b", "a~b"),  # U+007E, the last before DEL
    ],
)
def test_other_format_and_invisible_characters_are_kept(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("e\u0301", "e"),  # combining acute accent (Mn)
        ("Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e", "cafe creme brulee"),
        ("\u00c5ngstr\u00f6m \u00d8resund \u00f1and\u00fa", "angstrom \u00f8resund nandu"),
        ("\u212b", "a"),  # angstrom sign: NFD gives A + combining ring
        ("Ti\u1ebfng Vi\u1ec7t", "tieng viet"),  # two marks on one letter
        ("\u0386\u03bb\u03c6\u03b1", "\u03b1\u03bb\u03c6\u03b1"),  # Greek tonos
        ("\u0130stanbul", "istanbul"),  # lower() gives i + U+0307, which is then stripped
        ("\u304c \u30d1", "\u304b \u30cf"),  # kana voicing marks are Mn: が -> か, パ -> ハ
        ("\ud55c", "\u1112\u1161\u11ab"),  # Hangul stays decomposed into jamo (Lo)
        ("\u01c5", "\u01c6"),  # lower(); no canonical decomposition
        ("a\u0903b", "a\u0903b"),  # a spacing mark (Mc) is not an accent
        ("\u0928\u0941", "\u0928"),  # Devanagari vowel sign u (Mn) goes
    ],
)
def test_combining_marks(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Room 101, year 1984", "room 000, year 0000"),
        ("12 345 6789", "00 000 0000"),  # every digit, not every number
        ("\uff11\uff12\uff13", "000"),  # full-width digits
        ("\u0663\u0664", "00"),  # Arabic-Indic
        ("\u06f1\u06f2", "00"),  # extended Arabic-Indic (Persian)
        ("\u0967\u0968", "00"),  # Devanagari
        ("\u0e51", "0"),  # Thai
        ("\U0001d7cf", "0"),  # mathematical bold digit one (Nd)
        ("x\u00b2 \u00bd \u2460 \u216b", "x\u00b2 \u00bd \u2460 \u217b"),  # No/Nl: not \d
    ],
)
def test_digits(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "\u4f60\u597d\uff0c\u4e16\u754c\u3002\u4eca\u5929\uff08\u661f\u671f\u4e00\uff09\uff1a"
            "\u5929\u6c14\u5f88\u597d\uff01",
            "\u4f60\u597d,\u4e16\u754c.\u4eca\u5929(\u661f\u671f\u4e00):\u5929\u6c14\u5f88\u597d!",
        ),
        ("\u300c\u3053\u3093\u306b\u3061\u306f\u300d\u3002", '"\u3053\u3093\u306b\u3061\u306f".'),
        ("\u4ef7\u683c\uff1a\uff11\uff10\uff10\uff05\uff01", "\u4ef7\u683c:000%!"),
        ("\uff21\uff0e\uff22", "\uff41. \uff42"),  # fullwidth letters are only lowercased
        ("\u2329x\u232a", "<x>"),  # U+2329/U+232A decompose (NFD) to U+3008/U+3009
        ("\u3010\u65b0\u95fb\u3011\u2026\u2026", "[\u65b0\u95fb]......"),
        ("\u00abBonjour\u00bb \u2014 dit-il\u2026", '"bonjour"  -  dit-il...'),
        ("\u3000\u4e2d\u3000\u6587\u3000", "\u4e2d\u3000\u6587"),  # ideographic space: Zs
    ],
)
def test_cjk_and_other_punctuation(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_line_handling() -> None:
    # One line: stripped; a document given as one line loses its newlines (C0), as when CCNet
    # normalises a whole document before SentencePiece.
    assert normalize("  Hello World  ") == "hello world"
    assert normalize("line one\nline two") == "line oneline two"
    assert normalize("\t\r\n \x85") == ""
    assert normalize("") == ""
    # Per line: CCNet's normalize on each "\n"-separated line; empty results are left out.
    assert normalize_lines("Line One\n\n  Line Two 2\r\n\x00\n") == ["line one", "line two 0"]
    assert normalize_lines("a\rb\x0bc") == ["abc"]  # only "\n" separates lines


def test_decomposed_output_is_ccnets() -> None:
    # CCNet returns the NFD text without its marks, never recomposed.
    out = normalize("\ud55c\uad6d\uc5b4 caf\u00e9")
    assert out == unicodedata.normalize("NFD", "\ud55c\uad6d\uc5b4") + " cafe"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("\u4ef7\u683c\u3002\u597d", "\u4ef7\u683c. \u597d"),  # "。" -> ". "
        ("zero\u200bwidth", "zerowidth"),  # every category-C character is dropped
        ("a\u200db\u00adc\ue000d", "abcd"),
        ("tab\there\x00nul\x7fdel\x85", "tabherenuldel"),
        ("Caf\u00e9 \uff11\uff10", "cafe 00"),
    ],
)
def test_datafilter_v1_recipe(raw: str, expected: str) -> None:
    assert normalize(raw, DATAFILTER_V1_RECIPE) == expected


def test_recipes_by_name() -> None:
    assert set(RECIPES) == {"ccnet", "datafilter-v1"}
    assert recipe_by_name("ccnet") is CCNET_RECIPE and NormalizationRecipe() == CCNET_RECIPE
    assert NormalizationRecipe.model_validate("datafilter-v1") == DATAFILTER_V1_RECIPE
    assert CCNET_RECIPE.name == "ccnet" and DATAFILTER_V1_RECIPE.name == "datafilter-v1"
    assert NormalizationRecipe(lowercase=False).name is None
    assert CCNET_RECIPE.differences(DATAFILTER_V1_RECIPE) == [
        "punctuation_table: 'ccnet' != 'datafilter-v1'",
        "non_printing: 'c0_c1' != 'category_c'",
    ]
    with pytest.raises(ConfigError, match="unknown normalisation recipe 'cc'"):
        recipe_by_name("cc")


def test_flags_switch_steps_off() -> None:
    keep_all = NormalizationRecipe(
        lowercase=False,
        strip_accents=False,
        digits_to_zero=False,
        punctuation="keep",
        remove_non_printing=False,
    )
    assert normalize(" Caf\u00e9 \u00ab42\u00bb\x01\t ", keep_all) == "Caf\u00e9 \u00ab42\u00bb\x01"
    remove = NormalizationRecipe(punctuation="remove")
    assert normalize("\u00abx\u00bb\u3002", remove) == "x"


def test_ascii_fast_path_matches_general_path() -> None:
    # The same ASCII text padded with a non-ASCII char takes the general path.
    text = "Mixed CASE 1234 with\ttabs and \x01 controls!"
    for recipe in RECIPES.values():
        assert normalize(text, recipe) + "e" == normalize(text + "\u00e9", recipe)


def test_recipe_differences_name_the_flags() -> None:
    other = NormalizationRecipe(lowercase=False, digits_to_zero=False)
    diffs = CCNET_RECIPE.differences(other)
    assert diffs == ["lowercase: True != False", "digits_to_zero: True != False"]
