"""Refinement of key ranges between passes: a radix tree over each metric's sort key.

A row's full sort key is four unsigned words: the metric's key (``encoding.encode``), the id
hash, the rank of its score file's name, and its ``row`` (sign-flipped so unsigned order is
signed order). Every row lands in one *slot*: first a cell of the metric's :class:`Grid`; a slot
that needed a closer look in an earlier pass became a *node* whose own slots split its range
further (``bucket`` nodes: equal sub-ranges of one word; ``values`` nodes: single values of a
word, found by counting the distinct words of a range). Slot codes: ``-1`` not needed, ``>= 0``
a leaf (work of the current pass), ``<= -2`` the node ``-(code + 2)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

WORDS = 4  # metric key, id_hash, score file rank, row
WORD_MAX = (1 << 64) - 1
IGNORE = -1


@dataclass
class Node:
    dim: int
    base: int  # its first slot
    lo: int = 0  # bucket nodes: slot i holds words [lo + i << shift, lo + (i + 1) << shift)
    shift: int = 0
    top: int = 0  # slots - 1
    values: np.ndarray | None = None  # values nodes: slot i holds exactly values[i]


@dataclass
class Tree:
    """The slots of one metric: ``root_slots`` grid cells, then the slots of each node."""

    root_slots: int
    slot_to: np.ndarray = field(init=False)
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.slot_to = np.full(self.root_slots, IGNORE, dtype=np.int64)
        self._arrays: tuple[np.ndarray, ...] | None = None

    def add_bucket_node(self, slot: int, dim: int, lo: int, shift: int, top: int) -> Node:
        node = Node(dim, len(self.slot_to), lo=lo, shift=shift, top=top)
        return self._attach(slot, node, top + 1)

    def add_values_node(self, slot: int, dim: int, values: np.ndarray) -> Node:
        node = Node(dim, len(self.slot_to), values=np.asarray(values, dtype=np.uint64))
        return self._attach(slot, node, len(values))

    def _attach(self, slot: int, node: Node, n_slots: int) -> Node:
        self.slot_to[slot] = -(len(self.nodes) + 2)
        self.nodes.append(node)
        self.slot_to = np.concatenate([self.slot_to, np.full(n_slots, IGNORE, dtype=np.int64)])
        self._arrays = None
        return node

    def reset_leaves(self) -> None:
        """Forget the leaves of the last pass (nodes stay)."""
        self.slot_to[self.slot_to >= 0] = IGNORE

    def _node_arrays(self) -> tuple[np.ndarray, ...]:
        if self._arrays is None:
            nodes = self.nodes
            self._arrays = (
                np.array([n.dim for n in nodes], dtype=np.int64),
                np.array([n.base for n in nodes], dtype=np.int64),
                np.array([n.lo for n in nodes], dtype=np.uint64),
                np.array([n.shift for n in nodes], dtype=np.uint64),
                np.array([n.top for n in nodes], dtype=np.uint64),
                np.array([n.values is not None for n in nodes], dtype=bool),
            )
        return self._arrays

    def route(
        self, rows: np.ndarray, ref: np.ndarray, words: WordSource
    ) -> tuple[np.ndarray, np.ndarray]:
        """Follow ``rows`` (batch row indices) from their grid slots' codes ``ref`` (not
        IGNORE) down the nodes: the rows that reach a leaf, and their leaf ids."""
        if not self.nodes:
            return rows, ref
        dims, bases, los, shifts, tops, is_values = self._node_arrays()
        while True:
            inner = ref <= -2
            if not inner.any():
                return rows, ref
            at = np.flatnonzero(inner)
            node = -(ref[at] + 2)
            slot = np.empty(len(at), dtype=np.int64)
            for dim in np.unique(dims[node]).tolist():
                in_dim = dims[node] == dim
                word = words.get(dim, rows[at[in_dim]])
                nd = node[in_dim]
                bucket = ~is_values[nd]
                out = np.empty(len(nd), dtype=np.int64)
                if bucket.any():
                    n = nd[bucket]
                    offset = (word[bucket] - los[n]) >> shifts[n]
                    out[bucket] = bases[n] + np.minimum(offset, tops[n]).astype(np.int64)
                for k in np.unique(nd[~bucket]).tolist():
                    mine = nd == k
                    values = self.nodes[k].values
                    assert values is not None
                    pos = np.searchsorted(values, word[mine])
                    hit = (pos < len(values)) & (values[np.minimum(pos, len(values) - 1)]
                                                == word[mine])
                    out[mine] = np.where(hit, self.nodes[k].base + pos, -1)
                slot[in_dim] = out
            found = slot >= 0
            new_ref = np.full(len(at), IGNORE, dtype=np.int64)
            new_ref[found] = self.slot_to[slot[found]]
            ref[at] = new_ref
            keep = ref != IGNORE
            rows, ref = rows[keep], ref[keep]


class WordSource:
    """The four key words of the rows of one batch, computed on demand for a subset."""

    def __init__(self, keys: np.ndarray, id_hash: np.ndarray | None, file_rank: int,
                 row: np.ndarray | None, key_rows: np.ndarray):
        self._keys = keys  # metric keys of key_rows (the rows that reach the tree past the grid)
        self._position = key_rows
        self._id = id_hash
        self._file = file_rank
        self._row = row

    def get(self, dim: int, rows: np.ndarray) -> np.ndarray:
        if dim == 0:
            return self._keys[np.searchsorted(self._position, rows)]
        if dim == 1:
            assert self._id is not None
            return self._id[rows]
        if dim == 2:
            return np.full(len(rows), self._file, dtype=np.uint64)
        assert self._row is not None
        return row_word(self._row[rows])


def row_word(row: np.ndarray) -> np.ndarray:
    """Signed int64 rows as unsigned words in the same order."""
    return row.astype(np.int64).view(np.uint64) ^ np.uint64(1 << 63)


def word_to_row(word: int) -> int:
    """The signed row of a word made by ``row_word``."""
    value = word ^ (1 << 63)
    return value - (1 << 64) if value >= 1 << 63 else value
