"""Relative-index sparse encoding (Deep Compression s.2; EIE s.III): the one place that says how a
sorted list of positions becomes short relative indices, for the file and for the layouts built from it.

All three users store, per entry, the *zero run* before it: the number of skipped positions since the
previous entry of the same segment (or since the segment's first position). `zero_runs` computes it.
They differ only in the segment and in how a run too long for the field is bridged:

- the file (this module's gap stream): one segment, the whole CSC-ordered layer. A run is bridged by
  *fillers*: entries holding the field's top value ESC = 2**gap_bits - 1 that skip ESC zeros and carry
  no weight, so `fillers(run) = run // ESC` (no codebook index is stored for a filler).
- EIE (hardware/eie_encode.py): a segment is one PE's slice of one column (rows interleaved over the
  PEs, local row = row div N). A run is bridged by *padding zeros*: real entries with a zero weight,
  each covering span = 2**index_bits rows, so `padding_entries(run, 2**bits) = run // 2**bits`. The
  PEs process padding like any entry (it costs a cycle), where the file's fillers cost nothing at
  run time: that is the whole difference, and why EIE's padding is counted from the file's positions
  rather than from its gap stream.
- the CPU runtime's column layout (runtime/layouts.py): a segment is one column of one row block; its
  16-bit entries hold the row *step* run + 1 in 16 - code bits, top value M, and padding entries with
  step M and a zero weight: `padding_entries(run, M)`.

The file's gap stream in detail: nonzero
 positions are stored as gaps: the number of zeros since the previous nonzero (the first gap
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


def zero_runs(index, segment=None) -> np.ndarray:
    """Zeros (skipped positions) before each entry since the previous entry of its segment, or since the
    segment's position 0 for its first entry. Entries come sorted by (segment, index); ValueError if an
    index does not increase within its segment or is negative."""
    index = np.asarray(index, dtype=np.int64)
    prev = np.full(index.shape, -1, dtype=np.int64)
    prev[1:] = index[:-1]
    if segment is not None and index.size:
        segment = np.asarray(segment)
        prev[1:][segment[1:] != segment[:-1]] = -1
    runs = index - prev - 1
    if runs.size and runs.min() < 0:
        raise ValueError("positions must be strictly increasing within each segment and nonnegative")
    return runs


def padding_entries(runs, span: int) -> np.ndarray:
    """Zero-weight padding entries needed before each entry when one entry can step at most `span`
    positions (EIE, runtime column layout): a run of z zeros takes z // span of them."""
    return np.asarray(runs, dtype=np.int64) // int(span)


def positions_to_gaps(positions, gap_bits: int) -> np.ndarray:
    """The gap stream (fillers included) for strictly increasing nonnegative positions."""
    esc = escape(gap_bits)
    fillers, rest = np.divmod(zero_runs(positions), esc)
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
