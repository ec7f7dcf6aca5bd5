"""Split a long token sequence into context windows whose predictions cover each token once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """Feed tokens ``[start, end)``; add the log-probs of the tokens at ``[predict_from, end)``."""

    start: int
    predict_from: int
    end: int


def token_windows(n_tokens: int, max_length: int, overlap: int = 0) -> list[Window]:
    """Windows of at most ``max_length`` tokens predicting tokens 1..n-1 exactly once.

    After the first window, each one starts ``overlap`` tokens (at least the one token needed to
    predict the next; more at the end of the document) before the first token it predicts, so
    those tokens serve as context only.
    """
    if max_length < 2:
        raise ValueError("max_length must be at least 2")
    if not 0 <= overlap < max_length - 1:
        raise ValueError("overlap must be in [0, max_length - 1)")
    if n_tokens < 2:
        return []
    windows = [Window(0, 1, min(n_tokens, max_length))]
    while windows[-1].end < n_tokens:
        predict_from = windows[-1].end
        end = min(n_tokens, predict_from + max_length - max(overlap, 1))
        windows.append(Window(max(0, end - max_length), predict_from, end))
    return windows
