"""Relative-index sparse encoding (Deep Compression s.2; EIE s.III).

Nonzero positions are stored as gaps: the number of zeros since the previous nonzero (the first gap
counts from position 0). A gap is a `gap_bits`-bit field, and its top value ESC = 2**gap_bits - 1 is
reserved: an entry equal to ESC is a *filler* that skips ESC zeros and carries no weight (no codebook
index is stored for it); any other value g is a real entry: skip g zeros, then one weight. A zero run of
length G is therefore G // ESC fillers followed by one real entry with gap G % ESC. This encoding is
unique, so an encoder never emits trailing fillers and a decoder rejects them.
"""

from __future__ import annotations

import numpy as np

from .errors import FormatError


def escape(gap_bits: int) -> int:
    """The reserved filler value of a `gap_bits`-bit gap field."""
    return (1 << gap_bits) - 1


def positions_to_gaps(positions, gap_bits: int) -> np.ndarray:
    """The gap stream (fillers included) for strictly increasing nonnegative positions."""
    positions = np.asarray(positions, dtype=np.int64)
    esc = escape(gap_bits)
    runs = np.diff(positions, prepend=-1) - 1
    if runs.size and runs.min() < 0:
        raise ValueError("positions must be strictly increasing and nonnegative")
    fillers, rest = np.divmod(runs, esc)
    real_at = np.cumsum(fillers + 1) - 1
    gaps = np.full(int(real_at[-1]) + 1 if real_at.size else 0, esc, dtype=np.uint16)
    gaps[real_at] = rest
    return gaps


def gaps_to_positions(gaps, gap_bits: int, size: int) -> np.ndarray:
    """Positions of the real entries of a gap stream; FormatError unless every one is below `size`."""
    gaps = np.asarray(gaps, dtype=np.int64)
    esc = escape(gap_bits)
    if gaps.size and gaps[-1] == esc:
        raise FormatError("gap stream ends with a filler entry")
    filler = gaps == esc
    ends = np.cumsum(np.where(filler, esc, gaps + 1)) - 1
    positions = ends[~filler]
    if positions.size and positions[-1] >= size:
        raise FormatError(f"gaps reach position {int(positions[-1])}, beyond the layer's {size} weights")
    return positions


def filler_count(gaps, gap_bits: int) -> int:
    """Number of filler entries in a gap stream."""
    return int(np.count_nonzero(np.asarray(gaps) == escape(gap_bits)))
