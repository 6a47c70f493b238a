"""Which runtime layout a layer gets, decided once at build time from what is known about the layer.

The thresholds come from `benchmarks/runtime_layers.py` (`--sweep` for input density, `--conv` for
convolutions) on the development machine (AMD EPYC, Zen 3, AVX2, 2 cores shared with other work, one
thread), EIE's layer shapes with a 16-entry codebook; single runs there vary by up to 1.5x:

- batch 1: the column layout with zero-input skipping visits only the columns of nonzero inputs. In
  three runs of the sweep it won at every input density up to 0.7 (Alex-7 at 0.1: 141-152 vs
  799-1057 us; NT-LSTM at 0.1: 20 vs 157-163 us), tied on Alex-7 at 0.8 and lost on Alex-7 at 1.0.
  So it is the batch-1 layout unless the inputs are known to be denser than CSC_MAX_ACT_DENSITY; an
  unknown density gets it too, since its worst case costs little and its best case is large.
- batch 1, inputs all nonzero: both kernels then visit every nonzero, and what differs is the fixed
  cost per segment (a column for csc, a row of a panel for panel). Column over panel time, CPU time,
  against the ratio (rows x panels) / columns: 1.93 at 1/53 (300 x 16000), 1.40 at 1/7 (NT-We),
  1.10 at 1 (Alex-7), 1.04 at 2 (NT-LSTM), 0.95 at 14.7 (NT-Wd), 0.82 at 53 (16000 x 300). The
  crossover looked near 5, but two later benchmark runs (issue 12, the second with the C csc kernel)
  had panel 1.16x and 1.24x faster than csc on NT-Wd (14.7), so it lies between 14.7 and 53: csc is
  kept when that ratio is at least CSC_MIN_SEGMENT_RATIO, 25.
- batch > 1: skipping a column needs the whole batch to be zero there, which almost never happens, and
  the panel kernel's row-wise accumulation (vector registers, simd.py) beat the column kernel's
  scatter; so batched layers get the panel layout, in panels of BATCH_PANEL_WIDTH columns so that a
  panel's slice of a transposed 64-sample block (512 x 64 x 4 B = 128 KB) stays in L2. CPU cycles per
  nonzero at batch 64 for widths 512 / 1024 / 4096: NT-We 14.4 / 16.4 / 22.3, NT-LSTM 11.7 / 13.6 /
  15.4, VGG-6 9.4 / 11.6 / 18.6, Alex-7 11.7 / 10.4 / 20.0. Batch 1 keeps the widest panels.
- the centroid-grouped layout (one multiply per centroid) was slower than the panel layout on every
  layer here, 1.0-3.3x at batch 1 (a mispredicted loop exit per centroid group costs more than the
  multiplies it saves, which issue beside the loads), so it is never chosen automatically; ask for it
  by name to compare.
- size guard: where the faster layout would take more than MAX_SIZE_RATIO times the bytes of the other
  (the column layout's padding on very sparse columns with a large codebook, its per-column pointers
  on very wide short matrices, the panel layout's per-panel row pointers on tall narrow ones), the
  more compact one is used.

Conv layers (`--conv`: LeNet-5's conv1 and conv2, AlexNet's conv3, weight density 5-66%, batch 1 and
64): on both LeNet-5 layers decoding once to dense and calling torch's convolution won at batch 64 at
every density (2.5-14x; their im2col rows of 25 and 500 weights are too short for the sparse kernel)
and batch 1 was within noise; on AlexNet's conv3 (2304 weights per output) im2col + the sparse panel
kernel won at 5% and 12% density (1.4-3x) and lost at 35% and above. Hence: sparse when the density
is at most CONV_SPARSE_MAX_DENSITY and each output has at least CONV_SPARSE_MIN_COLS weights.
"""

from __future__ import annotations

import numpy as np

from .layouts import predicted_bytes, predicted_panels
from .simd import LANES
from ..format.layer import QuantizedLayer

CSC_MAX_ACT_DENSITY = 0.8
CSC_MIN_SEGMENT_RATIO = 25.0
MAX_SIZE_RATIO = 1.25
CONV_SPARSE_MAX_DENSITY = 0.15
CONV_SPARSE_MIN_COLS = 1000

BATCH_PANEL_WIDTH = 512

# many-row FC inputs (benchmarks/fc_rows.py, one thread, least squares on 5 shapes x 4 densities x 8 row
# counts; median relative error 16% panel, 7% gemm): the batched panel kernel costs
# c * nonzeros + lanes * (a * nonzeros + b * out * panels) ns, lanes = rows rounded up to LANES; sgemm on
# the decoded float32 matrix costs out * in * (g0 + g1 * rows) ns (g0: streaming the matrix once)
PANEL_NS = (1.24, 0.0682, 3.56)  # (c, a, b)
GEMM_NS = (0.306, 0.0296)  # (g0, g1)
GEMM_SCAN_ROWS = 4096  # row counts up to this are compared; beyond it the answer at 4096 holds

LAYOUTS = ("csc", "panel", "grouped")


def panel_width(batch: int) -> int | None:
    """Panel width for the panel layout of a layer run at this batch size (None: the widest)."""
    return BATCH_PANEL_WIDTH if batch > 1 else None


def choose_fc_layout(nz: QuantizedLayer, act_density: float | None = None, batch: int = 1, threads: int = 1) -> str:
    """The layout name for an FC layer, given the expected fraction of nonzero inputs, the batch size and
    the threads it will run on (they change the column layout's row blocks, hence its size).

    act_density None means unknown.
    """
    if batch > 1:
        fast = "panel"
    elif act_density is None or act_density <= CSC_MAX_ACT_DENSITY:
        fast = "csc"
    else:
        n_rows, n_cols = nz.matrix_shape
        segments = n_rows * predicted_panels(nz, panel_width(batch))
        fast = "csc" if segments >= CSC_MIN_SEGMENT_RATIO * max(n_cols, 1) else "panel"
    other = "panel" if fast == "csc" else "csc"
    size = {name: predicted_bytes(nz, name, panel_width(batch), threads) for name in (fast, other)}
    return other if size[fast] > MAX_SIZE_RATIO * size[other] else fast


def predicted_fc_ns(nz: QuantizedLayer, rows, path: str):
    """Cost model (PANEL_NS, GEMM_NS) of a batched FC call on `rows` input rows (an int or an array):
    path 'panel' (the batched sparse kernel) or 'gemm' (sgemm on the decoded matrix), in ns."""
    n_out, n_in = nz.matrix_shape
    if path == "gemm":
        return n_out * n_in * (GEMM_NS[0] + GEMM_NS[1] * rows)
    if path == "panel":
        lanes = -(-rows // LANES) * LANES
        panels = predicted_panels(nz, BATCH_PANEL_WIDTH)
        return PANEL_NS[0] * nz.nnz + lanes * (PANEL_NS[1] * nz.nnz + PANEL_NS[2] * n_out * panels)
    raise ValueError(f"no cost model for path {path!r}")


def gemm_min_rows(nz: QuantizedLayer) -> int | None:
    """The fewest input rows (>= 2) from which an FC layer runs as sgemm on its decoded matrix: where the
    cost model predicts sgemm faster than the batched panel kernel (None: never, up to GEMM_SCAN_ROWS)."""
    rows = np.arange(2, GEMM_SCAN_ROWS + 1)
    faster = predicted_fc_ns(nz, rows, "gemm") < predicted_fc_ns(nz, rows, "panel")
    from_here = np.logical_and.accumulate(faster[::-1])[::-1]  # faster here and at every larger count
    return int(rows[np.argmax(from_here)]) if from_here[-1] else None


def choose_conv_path(nz: QuantizedLayer) -> str:
    """'dense' or 'sparse' for a conv layer whose weights, flattened to (out, in*kh*kw), are `nz`."""
    sparse = nz.density <= CONV_SPARSE_MAX_DENSITY and nz.matrix_shape[1] >= CONV_SPARSE_MIN_COLS
    return "sparse" if sparse else "dense"
