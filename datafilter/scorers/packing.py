"""Pack scoring windows side by side into rows of a fixed length, attention kept inside each.

A row holds several windows (and padding at its end); every window's position ids restart at 0,
which is how transformers recognises packed sequences: its mask builders turn position-id
restarts into a block-diagonal causal mask (SDPA, eager, FlexAttention) and its flash-attention
path into variable-length attention. Rows come in a ladder of lengths (powers of two up to the
window length) so that a dense mask costs attention in proportion to the row, not to the longest
window; windows are placed longest first, each into the fullest row it fits (best-fit
decreasing), so padding is only what is left at the end of a row.

Rows holding one window are batched apart from packed ones: their padding continues the
window's positions, so transformers sees no packing and runs plain causal attention (a causal
model never lets a real token see the padding after it). Unpacked (``packed=False``, for models
whose positions cannot restart inside a row, such as ALiBi ones): every row holds one window,
rows binned by length on a finer ladder.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Shortest row of the ladder: windows shorter than this share rows of this length (packed), or
# are padded to the next power of two from UNPACKED_MIN_ROW (one window per row).
MIN_ROW = 512
UNPACKED_MIN_ROW = 32


@dataclass(frozen=True)
class Piece:
    """A window to score: its tokens, and how many leading tokens are context only (the first
    token is never predicted, so at least one)."""

    tokens: np.ndarray
    context: int


@dataclass
class PackedBatch:
    """One forward pass: ``rows x row_length`` tokens, and which outputs are scored.

    ``predict_at[k]`` is the flat index (row * row_length + column) of the hidden state that
    predicts ``targets[k]``, a token of piece ``owners[k]`` (an index into the packed list).
    """

    input_ids: np.ndarray
    position_ids: np.ndarray
    predict_at: np.ndarray
    targets: np.ndarray
    owners: np.ndarray

    @property
    def tokens(self) -> int:
        return int(self.input_ids.size)


def row_ladder(window: int, packed: bool = True) -> list[int]:
    """Row lengths: powers of two from ``MIN_ROW`` (``UNPACKED_MIN_ROW``) below ``window``,
    then ``window`` itself."""
    min_row = MIN_ROW if packed else UNPACKED_MIN_ROW
    ladder = []
    length = min_row
    while length < window:
        ladder.append(length)
        length *= 2
    return [*ladder, window]


def assign_rows(
    lengths: Sequence[int], ladder: Sequence[int], packed: bool = True
) -> list[tuple[int, list[int]]]:
    """Best-fit decreasing: ``(row_length, piece indices in row order)`` for every row; a piece
    opens a row of the shortest ladder length that holds it when no open row has room (always,
    when not ``packed``)."""
    if lengths and max(lengths) > ladder[-1]:
        raise ValueError(f"a piece of {max(lengths)} tokens exceeds the longest row {ladder[-1]}")
    rows: list[tuple[int, list[int]]] = []
    open_rows: list[tuple[int, int]] = []  # (free tokens, row index), sorted
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        size = lengths[i]
        k = bisect.bisect_left(open_rows, (size, -1))
        if k < len(open_rows):
            free, r = open_rows.pop(k)
        else:
            length = ladder[bisect.bisect_left(ladder, size)]
            rows.append((length, []))
            free, r = length, len(rows) - 1
        rows[r][1].append(i)
        if packed and free - size >= 2:  # room for another piece (2 tokens at least)
            bisect.insort(open_rows, (free - size, r))
    return rows


def pack(
    pieces: Sequence[Piece],
    budget: int,
    ladder: Sequence[int],
    pad_id: int = 0,
    packed: bool = True,
) -> list[tuple[list[int], PackedBatch]]:
    """Batches of at most ``budget`` tokens (one row at least): for each, the indices of its
    pieces in ``pieces`` (``owners`` index into this list) and its arrays."""
    rows = assign_rows([len(p.tokens) for p in pieces], ladder, packed)
    # Rows of one window go in batches of their own: with no position restart inside a row,
    # transformers uses plain causal attention (no mask; SDPA's causal kernels skip the upper
    # triangle), and the padding after the window is never attended to.
    by_kind: dict[tuple[int, bool], list[list[int]]] = {}
    for length, members in rows:
        by_kind.setdefault((length, len(members) > 1), []).append(members)
    out = []
    for length, several in sorted(by_kind, reverse=True):
        group = by_kind[length, several]
        per_batch = max(1, budget // length)
        for start in range(0, len(group), per_batch):
            members = group[start : start + per_batch]
            # Rows no fuller than this (a batch's last rows, a small input) are cut to it.
            used = max(sum(len(pieces[i].tokens) for i in row) for row in members)
            out.append(_build(pieces, members, used, pad_id, restart_padding=several))
    return out


def _build(
    pieces: Sequence[Piece], rows: list[list[int]], length: int, pad_id: int,
    restart_padding: bool,
) -> tuple[list[int], PackedBatch]:
    order = [i for members in rows for i in members]
    n = len(rows) * length
    ids = np.full(n, pad_id, dtype=np.int64)
    seg_start = np.zeros(n, dtype=np.int64)  # flat index where each token's segment starts
    starts, sizes, contexts = [], [], []
    for r, members in enumerate(rows):
        offset = r * length
        for i in members:
            tokens = pieces[i].tokens
            ids[offset : offset + len(tokens)] = tokens
            seg_start[offset : offset + len(tokens)] = offset
            starts.append(offset)
            sizes.append(len(tokens))
            contexts.append(max(pieces[i].context, 1))
            offset += len(tokens)
        # Padding: a segment of its own in packed rows, else the row's positions continue.
        seg_start[offset : (r + 1) * length] = offset if restart_padding else r * length
    position_ids = np.arange(n, dtype=np.int64) - seg_start
    starts_a, sizes_a, contexts_a = (np.array(x, dtype=np.int64) for x in (starts, sizes, contexts))
    counts = sizes_a - contexts_a  # predicted tokens per piece
    owners = np.repeat(np.arange(len(order), dtype=np.int64), counts)
    # Piece j predicts its tokens at local positions contexts[j] .. sizes[j] - 1, each from the
    # hidden state one position earlier.
    first = np.repeat(starts_a + contexts_a - np.cumsum(counts) + counts, counts)
    target_at = first + np.arange(len(owners), dtype=np.int64)
    batch = PackedBatch(
        input_ids=ids.reshape(len(rows), length),
        position_ids=position_ids.reshape(len(rows), length),
        predict_at=target_at - 1,
        targets=ids[target_at],
        owners=owners,
    )
    return order, batch
