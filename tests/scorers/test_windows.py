"""Windowing of long documents: every token after the first predicted exactly once."""

from __future__ import annotations

import itertools

import pytest

from datafilter.scorers.windows import token_windows


def test_windows_cover_each_token_once_with_context() -> None:
    for n, length, overlap in itertools.product(range(0, 40), range(2, 9), range(0, 7)):
        if overlap >= length - 1:
            continue
        windows = token_windows(n, length, overlap)
        predicted = [t for w in windows for t in range(w.predict_from, w.end)]
        assert predicted == list(range(1, n)), (n, length, overlap)
        for w in windows:
            assert 0 <= w.start < w.predict_from < w.end <= n
            assert w.end - w.start <= length
        for w in windows[1:]:
            assert w.predict_from - w.start >= max(overlap, 1)  # that much context, at least


def test_short_documents_need_one_window_or_none() -> None:
    assert token_windows(1, 8) == []
    assert len(token_windows(8, 8)) == 1


def test_invalid_settings() -> None:
    with pytest.raises(ValueError):
        token_windows(10, 1)
    with pytest.raises(ValueError):
        token_windows(10, 4, overlap=3)
