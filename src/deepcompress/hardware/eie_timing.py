"""Cycle timing and activity counts of one fully connected layer on EIE.

The machine, one cycle at a time (eie_cycle.py steps it literally; this module computes the same
cycles from an exactly equivalent recurrence over broadcasts):

- Activations sit in rows of N (one per PE bank). The leading-nonzero detector (LNZD) holds one row;
  each cycle it either broadcasts the next nonzero of that row to every PE's FIFO, or, when none is
  left, loads the next row. Broadcasting the row's last position loads the next row in the same cycle.
- It broadcasts only if, at the start of the cycle, no FIFO holds `fifo_depth` entries; else it stalls.
- A PE whose column is done (or that is idle) takes the FIFO head at the end of a cycle if the FIFO was
  nonempty at its start. Next cycle it reads the column's two pointers (two banks, one cycle) and
  issues the first entry; then one entry (nonzero or padding zero) per cycle. A column with no
  entries in this PE still costs its pointer-read cycle. So a broadcast at cycle b reaches a PE's
  arithmetic at b + 2 at the earliest, and column k costs max(1, entries) cycles.
- Entries stream from sparse-matrix SRAM lines of `spmat_width_bits` (8-bit entries); a line is read
  when the next entry lies on a different line than the previous one.
- After the last entry is issued, `pipeline_cycles` more cycles finish it (SRAM read, codebook
  decode and accumulator read, multiply, add and write-back).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from ..errors import UserError
from .eie_encode import InterleavedCSC
from .tech import (EIE_CLOCK_HZ, EIE_DEFAULT_PES, EIE_FIFO_DEPTH, EIE_INDEX_BITS, EIE_SPMAT_WIDTH_BITS,
                   EIE_WEIGHT_BITS)


@dataclass(frozen=True)
class EIEConfig:
    """EIE parameters: PEs, activation FIFO depth, sparse-matrix SRAM width, relative index and weight
    index bits per entry, clock, and the arithmetic pipeline's depth after an entry is issued.

    The defaults are the paper's machine (tech.py), except `pipeline_cycles`, which is this model's.
    """

    num_pes: int = EIE_DEFAULT_PES
    fifo_depth: int = EIE_FIFO_DEPTH
    spmat_width_bits: int = EIE_SPMAT_WIDTH_BITS
    index_bits: int = EIE_INDEX_BITS
    weight_bits: int = EIE_WEIGHT_BITS
    clock_hz: float = EIE_CLOCK_HZ
    pipeline_cycles: int = 4

    def __post_init__(self):
        if self.num_pes < 1:
            raise UserError(f"need at least one PE, got {self.num_pes}")
        if self.fifo_depth < 1:
            raise UserError(f"activation FIFO depth must be at least 1, got {self.fifo_depth}")
        if not 1 <= self.index_bits <= 16 or not 1 <= self.weight_bits <= 16:
            raise UserError("index and weight fields must be 1..16 bits")
        if self.spmat_width_bits < self.entry_bits:
            raise UserError(f"sparse-matrix SRAM width {self.spmat_width_bits} bits holds no "
                            f"{self.entry_bits}-bit entry")
        if not self.clock_hz > 0 or self.pipeline_cycles < 0:
            raise UserError("clock must be positive and pipeline depth non-negative")

    @property
    def entry_bits(self) -> int:
        """Bits per stored entry (weight index plus relative row index)."""
        return self.index_bits + self.weight_bits

    @property
    def entries_per_line(self) -> int:
        """Entries per sparse-matrix SRAM line (64-bit line, 8-bit entries: 8)."""
        return self.spmat_width_bits // self.entry_bits


@dataclass(frozen=True)
class Activity:
    """What one layer did: cycles, per-PE work, and access counts summed over PEs."""

    cycles: int
    broadcasts: int
    activation_rows: int
    stall_cycles: int
    pe_busy: np.ndarray
    pe_entries: np.ndarray
    pe_macs: np.ndarray
    spmat_line_reads: int
    padding_processed: int

    @property
    def macs(self) -> int:
        """Multiply-accumulates on real (non-padding) weights."""
        return int(self.pe_macs.sum())

    def counts(self, num_pes: int) -> dict[str, int]:
        """Access counts by kind, summed over the PEs."""
        macs = self.macs
        return {
            "fifo_pushes": self.broadcasts * num_pes,
            "fifo_pops": self.broadcasts * num_pes,
            "ptr_reads": self.broadcasts * num_pes,  # each reads one word from each of the two banks
            "spmat_line_reads": self.spmat_line_reads,
            "entries": int(self.pe_entries.sum()),
            "macs": macs,
            "act_reads": macs + self.activation_rows * num_pes,  # accumulator reads + LNZD row reads
            "act_writes": macs,
        }


@numba.njit(cache=True)
def _schedule(work, rows, ends_row, fifo_depth, num_rows):  # pragma: no cover - compiled
    num_k, num_pes = work.shape
    start_max = np.empty(num_k, dtype=np.int64)
    finish = np.full(num_pes, -1, dtype=np.int64)  # last busy cycle per PE
    prev_b, prev_row, prev_ends = -1, -1, 0
    stalls = 0
    for k in range(num_k):
        b = prev_b + 1 + rows[k] - prev_row - prev_ends
        if k >= fifo_depth and start_max[k - fifo_depth] > b:
            # a FIFO holds fifo_depth entries until column k - depth leaves it for its PE
            stalls += start_max[k - fifo_depth] - b
            b = start_max[k - fifo_depth]
        latest = -1
        for p in range(num_pes):
            s = max(finish[p] + 1, b + 2)
            finish[p] = s + work[k, p] - 1
            latest = max(latest, s)
        start_max[k] = latest
        prev_b, prev_row, prev_ends = b, rows[k], ends_row[k]
    scan_end = prev_b + num_rows - prev_row - prev_ends
    return finish, scan_end, stalls


@numba.njit(cache=True)
def _line_reads(starts, counts, per_line):  # pragma: no cover - compiled
    num_k, num_pes = counts.shape
    reads = 0
    for p in range(num_pes):
        held = -1  # line in the PE's read register
        for k in range(num_k):
            n = counts[k, p]
            if n == 0:
                continue
            first = starts[k, p] // per_line
            last = (starts[k, p] + n - 1) // per_line
            reads += last - first + (0 if first == held else 1)
            held = last
    return reads


def run_schedule(layout: InterleavedCSC, activations: np.ndarray, config: EIEConfig) -> Activity:
    """Cycles and activity of one layer (weights in `layout`, input vector `activations`) on `config`."""
    n = config.num_pes
    active = np.flatnonzero(activations)
    entries = layout.entries[active]
    work = np.maximum(entries, 1).astype(np.int32)
    rows, positions = np.divmod(active, n)
    num_rows = -(-layout.shape[1] // n)
    finish, scan_end, stalls = _schedule(work, rows.astype(np.int64), (positions == n - 1).astype(np.int64),
                                         config.fifo_depth, num_rows)
    last_busy = max(int(scan_end), int(finish.max()))
    starts = layout.pointers()[active]
    lines = _line_reads(starts, entries.astype(np.int64), config.entries_per_line)
    nonzeros = layout.nonzeros[active]
    return Activity(
        cycles=last_busy + 1 + config.pipeline_cycles,
        broadcasts=int(active.size),
        activation_rows=num_rows,
        stall_cycles=int(stalls),
        pe_busy=work.sum(axis=0).astype(np.int64),
        pe_entries=entries.sum(axis=0).astype(np.int64),
        pe_macs=nonzeros.sum(axis=0).astype(np.int64),
        spmat_line_reads=int(lines),
        padding_processed=int(layout.padding[active].sum()),
    )
