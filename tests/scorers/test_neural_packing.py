"""Packing windows into rows: every window once, attention segments by position-id restarts,
the predicted positions and targets right; and packed scores equal unpacked ones."""

from __future__ import annotations

import numpy as np
import pytest

from datafilter.scorers.packing import Piece, assign_rows, pack, row_ladder


def _pieces(lengths: list[int], seed: int = 0) -> list[Piece]:
    rng = np.random.default_rng(seed)
    return [
        Piece(rng.integers(5, 1000, n), int(rng.integers(1, n))) for n in lengths
    ]


def test_ladder_is_powers_of_two_up_to_the_window() -> None:
    assert row_ladder(8191) == [512, 1024, 2048, 4096, 8191]
    assert row_ladder(511) == [511]
    assert row_ladder(100, packed=False) == [32, 64, 100]


def test_rows_hold_every_piece_once_within_their_length() -> None:
    rng = np.random.default_rng(1)
    lengths = [int(x) for x in rng.integers(2, 300, 500)]
    ladder = row_ladder(300, packed=True)
    rows = assign_rows(lengths, ladder)
    placed = sorted(i for _, members in rows for i in members)
    assert placed == list(range(len(lengths)))
    for length, members in rows:
        assert length in ladder and sum(lengths[i] for i in members) <= length
    # Best fit decreasing wastes little: under 5 % padding on these lengths.
    assert sum(length for length, _ in rows) < 1.05 * sum(lengths)
    # Unpacked: one piece per row, in the shortest ladder length holding it.
    unpacked = assign_rows(lengths, row_ladder(300, packed=False), packed=False)
    assert sorted(len(m) for _, m in unpacked) == [1] * len(lengths)
    for length, (i,) in unpacked:
        assert length == min(x for x in row_ladder(300, packed=False) if x >= lengths[i])
    with pytest.raises(ValueError, match="exceeds the longest row"):
        assign_rows([301], ladder)


@pytest.mark.parametrize("packed", [True, False])
def test_batches_rebuild_each_piece_with_its_targets(packed: bool) -> None:
    pieces = _pieces([2, 3, 17, 64, 64, 5, 40, 9, 33, 2, 63])
    batches = pack(pieces, budget=128, ladder=[16, 32, 64], pad_id=-1, packed=packed)
    seen = []
    for order, batch in batches:
        assert batch.tokens <= max(128, 64)
        seen += order
        ids = batch.input_ids.reshape(-1)
        positions = batch.position_ids.reshape(-1)
        width = batch.input_ids.shape[1]
        # Segments start where the position id is 0; each holds one piece, then padding.
        for local, i in enumerate(order):
            tokens = pieces[i].tokens
            start = np.flatnonzero((ids[: len(ids)] == tokens[0]) & (positions == 0))
            assert len(start), "piece not found at a segment start"
            at = [s for s in start if np.array_equal(ids[s : s + len(tokens)], tokens)][0]
            np.testing.assert_array_equal(positions[at : at + len(tokens)], np.arange(len(tokens)))
            assert (at % width) + len(tokens) <= width  # never crosses a row
            mine = batch.owners == local
            context = pieces[i].context
            np.testing.assert_array_equal(batch.targets[mine], tokens[context:])
            np.testing.assert_array_equal(
                batch.predict_at[mine], at + np.arange(context, len(tokens)) - 1
            )
        if not packed:
            assert batch.input_ids.shape[0] == len(order)  # one piece per row
            np.testing.assert_array_equal(
                batch.position_ids, np.tile(np.arange(width), (len(order), 1))
            )
    assert sorted(seen) == list(range(len(pieces)))


def test_a_small_batch_is_not_padded_to_the_ladder() -> None:
    (order, batch), = pack(_pieces([7]), budget=4096, ladder=[512, 1024])
    assert order == [0] and batch.input_ids.shape == (1, 7)


def test_rows_of_one_window_are_batched_apart_without_position_restarts() -> None:
    pieces = _pieces([64, 60, 10, 12])
    batches = pack(pieces, budget=4096, ladder=[64])
    kinds = {tuple(sorted(order)): batch for order, batch in batches}
    single = kinds[(0, 1)]  # one window per row: positions run on through the padding
    np.testing.assert_array_equal(single.position_ids, np.tile(np.arange(64), (2, 1)))
    packed = kinds[(2, 3)]  # two windows in one row (cut to them): each restarts
    assert packed.input_ids.shape == (1, 22)
    np.testing.assert_array_equal(np.flatnonzero(packed.position_ids[0] == 0), [0, 12])
    # Rows [60, 3] and [12, 10] in one batch of 63 columns: the second row's padding restarts.
    (order, padded), = pack(_pieces([60, 3, 10, 12]), budget=4096, ladder=[64])
    assert order == [0, 1, 3, 2] and padded.input_ids.shape == (2, 63)
    np.testing.assert_array_equal(np.flatnonzero(padded.position_ids[1] == 0), [0, 12, 22])
