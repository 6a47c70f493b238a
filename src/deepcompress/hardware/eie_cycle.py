"""A literal cycle-by-cycle EIE model in plain Python: slow, for small layers and as the test oracle
for eie_timing.run_schedule (whose docstring states the machine both implement)."""

from __future__ import annotations

from collections import deque

import numpy as np

from ..errors import UserError
from .eie_encode import InterleavedCSC
from .eie_timing import Activity, EIEConfig


def step_cycles(layout: InterleavedCSC, activations: np.ndarray, config: EIEConfig,
                max_cycles: int = 10_000_000) -> Activity:
    """Run the layer one clock cycle at a time and return the same Activity as run_schedule."""
    n, depth, per_line = config.num_pes, config.fifo_depth, config.entries_per_line
    ncols = layout.shape[1]
    num_rows = -(-ncols // n)
    nonzero = np.zeros(num_rows * n, dtype=bool)
    nonzero[:ncols] = np.asarray(activations) != 0
    entries, ptr = layout.entries, layout.pointers()

    row, pos, scan_end = -1, n - 1, None  # the LNZD starts with nothing loaded
    fifos = [deque() for _ in range(n)]
    column = [None] * n
    left = [0] * n
    addr = [0] * n
    held_line = [-1] * n
    busy = np.zeros(n, dtype=np.int64)
    done_entries = np.zeros(n, dtype=np.int64)
    macs = np.zeros(n, dtype=np.int64)
    broadcasts = stalls = line_reads = padding = 0
    last_busy = -1
    t = 0
    while True:
        if t >= max_cycles:
            raise UserError(f"cycle model exceeded {max_cycles} cycles")
        occupancy = [len(f) for f in fifos]  # every decision below sees the start-of-cycle state
        push = None
        if scan_end is None:
            following = np.flatnonzero(nonzero[row * n + pos + 1:(row + 1) * n]) if row >= 0 else []
            advance = len(following) == 0
            if not advance:
                j = pos + 1 + int(following[0])
                if max(occupancy) < depth:
                    push, pos, broadcasts = row * n + j, j, broadcasts + 1
                    advance = j == n - 1
                else:
                    stalls += 1
            if advance:
                row, pos = row + 1, -1
                if row == num_rows:
                    scan_end = t
        for p in range(n):
            c = column[p]
            if c is not None:
                busy[p] += 1
                last_busy = t
                if entries[c, p] > 0:
                    line = addr[p] // per_line
                    if line != held_line[p]:
                        line_reads += 1
                        held_line[p] = line
                    addr[p] += 1
                    done_entries[p] += 1
                left[p] -= 1
                if left[p] == 0:
                    macs[p] += layout.nonzeros[c, p]
                    padding += int(layout.padding[c, p])
                    column[p] = None
            if column[p] is None and occupancy[p] > 0:
                c = fifos[p].popleft()
                column[p], left[p], addr[p] = c, max(1, int(entries[c, p])), int(ptr[c, p])
        if push is not None:
            for f in fifos:
                f.append(push)
        if scan_end is not None and all(c is None for c in column) and not any(fifos):
            break
        t += 1
    return Activity(
        cycles=max(last_busy, scan_end) + 1 + config.pipeline_cycles,
        broadcasts=broadcasts,
        activation_rows=num_rows,
        stall_cycles=stalls,
        pe_busy=busy,
        pe_entries=done_entries,
        pe_macs=macs,
        spmat_line_reads=line_reads,
        padding_processed=padding,
    )
