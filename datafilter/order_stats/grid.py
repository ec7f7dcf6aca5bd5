"""The first-pass buckets of one metric: the same grid of key ranges for every group.

Cell ``i`` of a group holds the keys in ``[lo + i * 2**shift, lo + (i + 1) * 2**shift)``; the
first cell also holds every key below ``lo`` and the last every key above, so any value lands in
a cell, in order. Row ``r`` of group code ``g`` lands in cell ``g * cells + i``.

The grid comes from a small sample of the data (the pilot): its range spans the sample's middle
99.9 % (widened a little), in key space, which for positive doubles is close to a log scale, so
cells stay narrow for skewed scores. A poor sample costs more work later, never a wrong result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datafilter.order_stats.encoding import MAX_KEY, encode

HALF = 1 << 63


@dataclass(frozen=True)
class Grid:
    lo: int  # key where cell 1's... cell 0's upper part starts (cell 0 also holds keys below)
    shift: int
    cells: int  # cells per group

    @classmethod
    def from_sample(cls, keys: np.ndarray, cells: int) -> Grid:
        """About ``cells`` cells over the middle of the sample's finite keys."""
        finite = np.sort(keys[(keys > encode(np.array([-np.inf]))[0]) & (keys < encode(
            np.array([np.inf]))[0])])
        if len(finite) == 0:
            return cls(int(encode(np.array([0.0]))[0]), 0, 1)
        lo = int(finite[int(0.0005 * (len(finite) - 1))])
        hi = int(finite[int(np.ceil(0.9995 * (len(finite) - 1)))])
        margin = (hi - lo) // 32
        lo, hi = max(0, lo - margin), min(int(MAX_KEY), hi + margin)
        shift = 0
        while (hi - lo) >> shift >= cells:
            shift += 1
        return cls(lo, shift, ((hi - lo) >> shift) + 1)

    def cell_range(self, i: int) -> tuple[int, int]:
        """The keys cell ``i`` of a group holds: ``[first, last]``."""
        first = 0 if i == 0 else self.lo + (i << self.shift)
        last = int(MAX_KEY) if i == self.cells - 1 else self.lo + ((i + 1) << self.shift) - 1
        return first, last

    def cells_of(self, values: np.ndarray, code_base: np.ndarray | None) -> np.ndarray:
        """The cell (int64) of each float64 value; ``code_base``: each row's group code times
        ``self.cells`` (None: one group, code 0)."""
        bits = values.view(np.int64)
        top = (self.cells - 1) << self.shift
        if self.lo >= HALF and len(bits) and int(bits.min()) >= 0:
            # Only non-negative doubles (and unsigned NaNs): their key is bits + 2**63, so the
            # signed bits minus (lo - 2**63) give the same offsets without encoding.
            lo = self.lo - HALF
            out = np.clip(bits, lo, lo + top)
            out -= lo
            out >>= self.shift
        else:
            keys = encode(values)
            wide = np.clip(keys, np.uint64(self.lo), np.uint64(self.lo + top))
            wide -= np.uint64(self.lo)
            wide >>= np.uint64(self.shift)
            out = wide.view(np.int64)
        if code_base is not None:
            out += code_base
        return out
