"""Golden tests for the CCNet-style normaliser."""

from __future__ import annotations

import pytest

from datafilter.normalize import CCNET_RECIPE, UNICODE_PUNCTUATION, NormalizationRecipe, normalize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Hello World  ", "hello world"),
        ("Room 101, year 1984", "room 000, year 0000"),
        ("3.14159", "0.00000"),
        ("Café crème brûlée", "cafe creme brulee"),
        ("Ångström Øresund ñandú", "angstrom øresund nandu"),  # ø has no decomposition
        ("«Bonjour» — dit-il…", '"bonjour"  -  dit-il...'),  # — maps to " - "
        ("价格：１００％！", "价格:000%!"),  # fullwidth digits are digits: each becomes 0
        ("tab\there\x00nul\x7fdel", "tabherenuldel"),
        ("zero\u200bwidth", "zerowidth"),  # format characters (Cf) are dropped
        ("line one\nline two", "line oneline two"),  # newlines are control characters
        ("Arabic-Indic ٣٤ digits", "arabic-indic 00 digits"),
        ("", ""),
        ("   \t  ", ""),
    ],
)
def test_ccnet_recipe_golden(raw: str, expected: str) -> None:
    assert normalize(raw, CCNET_RECIPE) == expected


def test_every_digit_becomes_zero_not_each_number() -> None:
    assert normalize("12 345 6789") == "00 000 0000"


def test_punctuation_table_is_ccnet_sized_and_applied() -> None:
    assert len(UNICODE_PUNCTUATION) == 34
    for mark, ascii_form in UNICODE_PUNCTUATION.items():
        if mark.isdigit():
            continue  # digits are zeroed before the punctuation map applies
        assert normalize(f"a{mark}b") == f"a{ascii_form}b"


def test_flags_switch_steps_off() -> None:
    keep_all = NormalizationRecipe(
        lowercase=False,
        strip_accents=False,
        digits_to_zero=False,
        punctuation="keep",
        remove_non_printing=False,
    )
    assert normalize(" Café «42»\t ", keep_all) == "Café «42»"
    remove = NormalizationRecipe(punctuation="remove")
    assert normalize("«x»", remove) == "x"


def test_ascii_fast_path_matches_general_path() -> None:
    # The same ASCII text padded with a non-ASCII char takes the general path.
    text = "Mixed CASE 1234 with\ttabs and \x01 controls!"
    assert normalize(text) + "e" == normalize(text + "é")


def test_recipe_differences_name_the_flags() -> None:
    other = NormalizationRecipe(lowercase=False, digits_to_zero=False)
    diffs = CCNET_RECIPE.differences(other)
    assert diffs == ["lowercase: True != False", "digits_to_zero: True != False"]
