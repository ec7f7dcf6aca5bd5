"""Refinement of key ranges between passes: a radix tree over each metric's sort key.

A row's full sort key is four unsigned words: the metric's key (``encoding.encode``), the id
hash, the rank of its score file's name, and its ``row`` (sign-flipped so unsigned order is
signed order). Every row lands in one *slot*: first a cell of the metric's grid; a slot that
needed a closer look in an earlier pass became a *node* whose own slots split its range further
(``bucket`` nodes: equal sub-ranges of one word; ``values`` nodes: single values of one word,
found by counting the distinct words of a range). Slot codes: ``IGNORE`` (-1) not needed,
``>= 0`` a leaf (work of the current pass), ``<= -2`` the node ``-(code + 2)``.
"""

from __future__ import annotations

import numpy as np

WORD_MAX = (1 << 64) - 1
IGNORE = -1
SIGN = np.uint64(1 << 63)


class Tree:
    """The slots of one metric: ``root_slots`` grid cells, then the slots of each node."""

    def __init__(self, root_slots: int):
        self.slot_to = np.full(root_slots, IGNORE, dtype=np.int64)
        self.root_slots = root_slots
        # Whether each grid cell is needed this pass: one byte a cell, so the lookup every
        # row makes stays in the CPU's caches (``mark_needed_cells``).
        self.needed_cells = np.zeros(root_slots, dtype=bool)
        self.dim = np.zeros(0, dtype=np.int64)
        self.base = np.zeros(0, dtype=np.int64)
        self.lo = np.zeros(0, dtype=np.uint64)
        self.shift = np.zeros(0, dtype=np.uint64)
        self.top = np.zeros(0, dtype=np.uint64)
        # Values nodes: the sorted words of each, one after another in ``words``; per node
        # its first entry there (-1: a bucket node) and its number of words.
        self.words = np.zeros(0, dtype=np.uint64)
        self.words_start = np.zeros(0, dtype=np.int64)
        self.words_count = np.zeros(0, dtype=np.int64)

    @property
    def n_nodes(self) -> int:
        return len(self.dim)

    def add_bucket_nodes(
        self, slots: np.ndarray, dims: np.ndarray, los: np.ndarray, shifts: np.ndarray,
        tops: np.ndarray,
    ) -> np.ndarray:
        """Turn ``slots`` into bucket nodes; returns each node's first slot."""
        sizes = tops.astype(np.int64) + 1
        return self._attach(slots, dims, los, shifts.astype(np.uint64), tops.astype(np.uint64),
                            sizes)

    def add_values_node(self, slot: int, dim: int, values: np.ndarray) -> int:
        """Turn ``slot`` into a values node (slot i: rows whose word is ``values[i]``)."""
        values = np.asarray(values, dtype=np.uint64)
        base = self._attach(
            np.array([slot]), np.array([dim]), np.zeros(1, np.uint64), np.zeros(1, np.uint64),
            np.zeros(1, np.uint64), np.array([len(values)]),
        )
        self.words_start[-1] = len(self.words)
        self.words_count[-1] = len(values)
        self.words = np.concatenate([self.words, values])
        return int(base[0])

    def _attach(self, slots, dims, los, shifts, tops, sizes) -> np.ndarray:
        first = self.n_nodes
        bases = len(self.slot_to) + np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.slot_to[np.asarray(slots, dtype=np.int64)] = -(first + np.arange(len(slots)) + 2)
        self.slot_to = np.concatenate(
            [self.slot_to, np.full(int(np.sum(sizes)), IGNORE, dtype=np.int64)]
        )
        self.dim = np.concatenate([self.dim, np.asarray(dims, dtype=np.int64)])
        self.base = np.concatenate([self.base, bases])
        self.lo = np.concatenate([self.lo, np.asarray(los, dtype=np.uint64)])
        self.shift = np.concatenate([self.shift, shifts])
        self.top = np.concatenate([self.top, tops])
        self.words_start = np.concatenate([self.words_start, np.full(len(bases), -1, np.int64)])
        self.words_count = np.concatenate([self.words_count, np.zeros(len(bases), np.int64)])
        return bases

    def mark_needed_cells(self) -> None:
        """Note the grid cells holding a leaf or a node, once this pass's leaves are set."""
        self.needed_cells = self.slot_to[: self.root_slots] != IGNORE

    def reset_leaves(self) -> None:
        """Forget the leaves of the last pass (nodes stay)."""
        self.slot_to[self.slot_to >= 0] = IGNORE

    def route(self, ref: np.ndarray, words: WordSource) -> tuple[np.ndarray, np.ndarray]:
        """Follow rows from their grid slots' codes ``ref`` (none IGNORE) down the nodes:
        the positions (into ``ref``) of the rows that reach a leaf, and their leaf ids."""
        pos = np.arange(len(ref))
        if not self.n_nodes:
            return pos, ref
        ref = ref.copy()
        while True:
            inner = np.flatnonzero(ref <= -2)
            if not len(inner):
                return pos, ref
            node = -(ref[inner] + 2)
            slot = np.full(len(inner), -1, dtype=np.int64)
            dims = self.dim[node]
            for dim in np.unique(dims).tolist():
                here = np.flatnonzero(dims == dim)
                nd = node[here]
                word = words.get(dim, pos[inner[here]])
                is_values = self.words_start[nd] >= 0
                bucket = ~is_values
                if bucket.any():
                    n, w = nd[bucket], word[bucket]
                    offset = np.minimum((w - self.lo[n]) >> self.shift[n], self.top[n])
                    slot[here[bucket]] = self.base[n] + offset.astype(np.int64)
                if is_values.any():
                    n = nd[is_values]
                    at = self._find_words(n, word[is_values])
                    slot[here[is_values]] = np.where(at >= 0, self.base[n] + at, -1)
            new_ref = np.full(len(inner), IGNORE, dtype=np.int64)
            found = slot >= 0
            new_ref[found] = self.slot_to[slot[found]]
            ref[inner] = new_ref
            keep = ref != IGNORE
            pos, ref = pos[keep], ref[keep]


    def _find_words(self, nodes: np.ndarray, words: np.ndarray) -> np.ndarray:
        """Each word's index among its values node's words (-1: not one of them), by a
        binary search of all rows at once, each within its node's words."""
        if not len(self.words):
            return np.full(len(words), -1, dtype=np.int64)
        lo = self.words_start[nodes].copy()
        hi = lo + self.words_count[nodes]
        end = hi.copy()
        while True:
            open_ = np.flatnonzero(lo < hi)
            if not len(open_):
                break
            mid = (lo[open_] + hi[open_]) // 2
            right = self.words[mid] < words[open_]
            lo[open_[right]] = mid[right] + 1
            hi[open_[~right]] = mid[~right]
        hit = (lo < end) & (self.words[np.minimum(lo, len(self.words) - 1)] == words)
        return np.where(hit, lo - self.words_start[nodes], -1)


class WordSource:
    """The four key words of the rows of one batch that passed the grid (``rows``: their
    indices in the batch), by position among them."""

    def __init__(self, keys: np.ndarray, rows: np.ndarray, id_hash: np.ndarray | None,
                 file_rank: int, row: np.ndarray | None):
        self.keys = keys
        self._rows = rows
        self._id = id_hash
        self._file = file_rank
        self._row = row

    def get(self, dim: int, pos: np.ndarray) -> np.ndarray:
        if dim == 0:
            return self.keys[pos]
        if dim == 1:
            assert self._id is not None
            return self._id[self._rows[pos]]
        if dim == 2:
            return np.full(len(pos), self._file, dtype=np.uint64)
        assert self._row is not None
        return row_word(self._row[self._rows[pos]])


def row_word(row: np.ndarray) -> np.ndarray:
    """Signed int64 rows as unsigned words in the same order."""
    return np.asarray(row, dtype=np.int64).view(np.uint64) ^ SIGN


def word_to_row(word: int) -> int:
    """The signed row of a word made by ``row_word``."""
    value = word ^ (1 << 63)
    return value - (1 << 64) if value >= 1 << 63 else value


def bit_length(values: np.ndarray) -> np.ndarray:
    """``int.bit_length`` of each uint64."""
    v = np.asarray(values, dtype=np.uint64)
    out = np.zeros(len(v), dtype=np.uint64)
    for step in (32, 16, 8, 4, 2, 1):
        s = np.uint64(step)
        higher = (v >> (out + s - np.uint64(1)) >> np.uint64(1)) != 0
        out += np.where(higher, s, np.uint64(0))
    return out + (v != 0).astype(np.uint64)
