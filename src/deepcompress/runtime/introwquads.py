"""The row-quad int layouts (int8, batches): only the nonzero weights, each row's in quads of four.

- `RowQuadsLayout` (int8, batches): only the nonzero weights, row by row in quads (a row padded with
  zero weights to a multiple of 4), 16-bit column indices; the batch is transposed so that a column's
  inputs for 32 samples are 32 bytes, which four columns at a time are interleaved into per-sample
  quads. Visits nonzero weights x samples, whatever the input sparsity. A single vector runs as a
  batch of 32 lanes, 31 of them zero, so it is for batches only.
- `PanelQuadsLayout` (int8, batches): row quads as in RowQuadsLayout, but within column panels of
  PANEL_COLS columns (a quad: its columns' byte offsets in the panel's inputs, precomputed, and its
  weights: 12 bytes), panel by panel: a panel's inputs for 64
  samples (16 KB) stay in L1 while every row's quads in it go by, where rowquads reads four random
  columns of the whole transposed batch (cols x 64 bytes, 256 KB on 4096 inputs) from L2 per quad.
  Sums go to memory between panels. Pays one partial quad per row and panel instead of per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..format.layer import QuantizedLayer
from . import intkernels as ik
from . import intportable as ip
from .intpack import BATCH_BLOCK, PaddedSizes, aligned_empty, check_int8
from .layouts import LayoutBytes
from .quantize import quantize_codebook

LANE_BLOCK = 32  # samples per lane tile of the row-quad kernel


@dataclass
class RowQuadsLayout(PaddedSizes):
    """A row's nonzero int8 weights in quads: quad q = columns qcols[q], weights qw[q], rows' quads
    row_ptr[r] .. row_ptr[r + 1]."""

    shape: tuple[int, int]
    nnz: int
    precision: str
    row_ptr: np.ndarray  # int32, rows + 1
    qcols: np.ndarray  # uint16 (quads, 4)
    qw: np.ndarray  # int8 (quads, 4)
    kind = "rowquads"

    @property
    def acc_rows(self) -> int:
        """Length of the integer sums buffer."""
        return self.shape[0]

    def nbytes(self) -> LayoutBytes:
        """Bytes of column indices, weights and row pointers."""
        return LayoutBytes(self.nnz, self.qcols.nbytes + self.qw.nbytes, self.row_ptr.nbytes, 0)

    def run(self, x, xq, acc, s_w, bias, y, path: str, relu: bool = False) -> bool:
        """One vector as a batch of one (a lane tile with 31 zero lanes)."""
        if not self.run_batch(x.reshape(1, -1), s_w, bias, y.reshape(1, -1), path):
            return False
        if relu:
            np.maximum(y, 0.0, out=y)
        return True

    def run_batch(self, x: np.ndarray, s_w: float, bias: np.ndarray, y: np.ndarray, path: str) -> bool:
        """y[i] = W x[i] + b for every row of x (N, in), BATCH_BLOCK rows per call (False on the portable path)."""
        if path == "portable":
            return False
        step = min(BATCH_BLOCK, x.shape[0])
        xq, xt, scales, acc = self._buffers(self._stride(-(-step // LANE_BLOCK) * LANE_BLOCK))
        for start in range(0, x.shape[0], step):
            m = min(step, x.shape[0] - start)
            self._batch_call(x[start:start + m], xq, xt, scales, acc, s_w, bias, y[start:start + m])
        return True

    def _stride(self, lanes: int) -> int:
        """Lanes of the transposed batch and sums buffers for a batch step needing `lanes`."""
        return lanes

    def _xt_rows(self) -> int:
        return self.shape[1]

    def _buffers(self, lanes: int):
        """(quantized batch, transposed batch, scales, sums) buffers for `lanes` lanes, kept between calls
        (fresh 256 KB arrays per call cost page faults: one call at a time per layer, as IntLinear says)."""
        cached = getattr(self, "_cache", None)
        if cached is None or cached[1].shape[1] != lanes:
            xt = aligned_empty((self._xt_rows(), lanes), np.int8)
            xt[...] = 0
            cached = (aligned_empty((lanes, self.shape[1]), np.int8), xt, np.empty(lanes, np.float64),
                      aligned_empty((self.shape[0], lanes), np.int32))
            self._cache = cached
        return cached

    def _batch_call(self, x, xq, xt, scales, acc, s_w, bias, y):
        ik.rowquads8_batch_fused(self.row_ptr, self.qcols, self.qw, x, xq, xt, scales, acc, s_w, bias, y)

    def matvec(self, xq: np.ndarray, acc: np.ndarray, path: str) -> None:
        """acc = W xq (the portable path; the SIMD path runs through run and run_batch)."""
        xt = np.ascontiguousarray(xq[:self.shape[1]].reshape(-1, 1))
        out = np.zeros((self.shape[0], 1), acc.dtype)
        ip.rowquads_portable(self.row_ptr, self.qcols, self.qw, xt, out)
        acc[:self.shape[0]] = out[:, 0]


PANEL_COLS = 256  # columns of a PanelQuadsLayout panel: 64 samples' inputs 16 KB (L1)
PANEL_LANES = 64  # lanes of its transposed batch (a batch step of BATCH_BLOCK samples), 32 or 64 computed


@dataclass
class PanelQuadsLayout(RowQuadsLayout):
    """RowQuadsLayout within column panels: row r's quads in panel p are row_ptr[p * rows + r] .. + 1;
    quad q is recs[q] (6 uint16): its columns' byte offsets in the panel's transposed inputs (offset
    from the panel's first column p * PANEL_COLS, times PANEL_LANES), then its four int8 weights.
    qcols and qw are views of recs (the offsets and the weights)."""

    recs: np.ndarray = None  # uint16 (quads, 6)
    kind = "panelquads"

    @property
    def panels(self) -> int:
        """Number of column panels (at least 1)."""
        return max(1, -(-self.shape[1] // PANEL_COLS))

    def _xt_rows(self) -> int:
        return self.panels * PANEL_COLS

    def _stride(self, lanes: int) -> int:
        return PANEL_LANES  # the byte offsets in recs assume it

    def _batch_call(self, x, xq, xt, scales, acc, s_w, bias, y):
        ik.panelquads8_batch_fused(self.row_ptr, self.panels, PANEL_COLS, self.recs, x, xq, xt, scales, acc, s_w,
                                   bias, y)

    def matvec(self, xq: np.ndarray, acc: np.ndarray, path: str) -> None:
        """acc = W xq (the portable path; the SIMD path runs through run and run_batch)."""
        xt = np.zeros((self._xt_rows(), 1), np.int8)
        xt[:self.shape[1], 0] = xq[:self.shape[1]]
        out = np.zeros((self.shape[0], 1), acc.dtype)
        ip.panelquads_portable(self.row_ptr, self.qcols, self.qw, PANEL_COLS, PANEL_LANES, xt, out)
        acc[:self.shape[0]] = out[:, 0]


def _quads_of(keys: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """(pointers, slots) of entries grouped by key (sorted), each key's entries padded to whole quads:
    key k's quads are pointers[k] .. pointers[k + 1], an entry's slot its place among 4 x quads."""
    counts = np.bincount(keys, minlength=n_keys)
    ptr = np.zeros(n_keys + 1, np.int32)
    np.cumsum(-(-counts // 4), out=ptr[1:])
    first = np.zeros(n_keys + 1, np.int64)
    np.cumsum(counts, out=first[1:])
    rank = np.arange(keys.size) - first[keys]
    return ptr, 4 * ptr[keys].astype(np.int64) + rank


def build_panelquads(nz: QuantizedLayer, precision: str) -> PanelQuadsLayout:
    """The panel-quad layout of `nz` (int8 only)."""
    check_int8(precision, "panelquads")
    n_rows, n_cols = nz.matrix_shape
    panels = max(1, -(-n_cols // PANEL_COLS))
    q_c, _ = quantize_codebook(nz.codebook, precision)
    rows, cols = nz.rows_cols()
    keys = (cols // PANEL_COLS).astype(np.int64) * n_rows + rows
    order = np.lexsort((cols, keys))
    keys, cols, w = keys[order], cols[order], q_c[nz.indices[order]]
    row_ptr, slot = _quads_of(keys, panels * n_rows)
    # padding slots: offset 0 (the panel's first column, a real one) and weight 0
    offsets = np.zeros(4 * int(row_ptr[-1]), np.uint16)
    weights = np.zeros(4 * int(row_ptr[-1]), np.int8)
    offsets[slot], weights[slot] = (cols % PANEL_COLS) * PANEL_LANES, w
    recs = np.empty((int(row_ptr[-1]), 6), np.uint16)
    recs[:, :4] = offsets.reshape(-1, 4)
    recs[:, 4:] = weights.reshape(-1, 4).view(np.uint16)
    return PanelQuadsLayout(nz.matrix_shape, nz.nnz, precision, row_ptr, recs[:, :4], recs[:, 4:].view(np.int8),
                            recs)


def build_rowquads(nz: QuantizedLayer, precision: str) -> RowQuadsLayout:
    """The row-quad layout of `nz` (int8 only, at most 65536 columns)."""
    check_int8(precision, "rowquads")
    n_rows, n_cols = nz.matrix_shape
    if n_cols > 1 << 16:
        raise ValueError(f"the rowquads layout holds at most 65536 columns, got {n_cols}")
    q_c, _ = quantize_codebook(nz.codebook, precision)
    rows, cols = nz.rows_cols()
    order = np.lexsort((cols, rows))
    rows, cols, w = rows[order], cols[order], q_c[nz.indices[order]]
    row_ptr, slot = _quads_of(rows, n_rows)  # padding slots keep column 0 and weight 0
    qcols = np.zeros(4 * int(row_ptr[-1]), np.uint16)
    qw = np.zeros(4 * int(row_ptr[-1]), np.int8)
    qcols[slot], qw[slot] = cols, w
    return RowQuadsLayout(nz.matrix_shape, nz.nnz, precision, row_ptr, qcols.reshape(-1, 4), qw.reshape(-1, 4))
