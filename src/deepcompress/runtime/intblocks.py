"""The 64-row block int layouts (int8): the quantized weights themselves, block by block.

- `BlocksLayout` (int8): the quantized weights in 64-row blocks, each block column-major (64 bytes per
  column); skips the columns of zero inputs like cols, but keeps a block's 64 sums in registers while
  four nonzero columns at a time are interleaved into per-row quads (vpmaddubsw + vpmaddwd: four
  products per int32 lane), and runs a batch block by block (each block read once per batch).
- `QuadsLayout` (int8): the same blocks with each block's columns interleaved in quads when built
  (row r's weights of columns 4g..4g+3 side by side), so a step needs no shuffles: one load, vpmaddubsw,
  vpmaddwd and an add per 8 rows x 4 columns. Skips only quads whose four inputs are all zero: for
  dense inputs (the NT layers) it does about two thirds of blocks' work, for sparse ones more.
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

BLOCK_ROWS = 64  # rows of a BlocksLayout block: 8 registers of int32 sums


@dataclass
class BlocksLayout(PaddedSizes):
    """int8 weights in 64-row blocks, column-major inside a block: store[b, j] = W[64 b : 64 b + 64, j]."""

    shape: tuple[int, int]
    nnz: int
    precision: str
    store: np.ndarray  # int8 (blocks, cols, 64), rows past shape[0] zero, 64-byte aligned
    kind = "blocks"

    @property
    def acc_rows(self) -> int:
        """Length of the integer sums buffer: whole blocks."""
        return self.store.shape[0] * BLOCK_ROWS

    def __post_init__(self):
        self._scratch = np.empty(max(self._scratch_len(), 1), np.int32)
        self._acc2 = np.empty((1, self.acc_rows), np.int32)

    def _scratch_len(self) -> int:
        return ik.blocks8_scratch(self.shape[1])

    def _kernels(self, path: str):
        """(one-vector fused, batched fused, SIMD sums) kernels of this layout on `path` (the extension's)."""
        simd, fused, batch_fused = ik.BLOCK_KERNELS[self.kind, ik.uses_vnni(path)]
        return fused, batch_fused, simd

    def _portable(self, xq, acc):
        ip.blocks_portable(self.store, xq, acc)

    def nbytes(self) -> LayoutBytes:
        """Bytes of the stored weights."""
        return LayoutBytes(self.nnz, self.store.nbytes, 0, 0)

    def run(self, x, xq, acc, s_w, bias, y, path: str, relu: bool = False) -> bool:
        """y = W x + b in one compiled call where this layout and path have one (False: not done)."""
        if path == "portable":
            return False
        self._kernels(path)[0](self.store, x, xq.reshape(1, -1), self._scratch, self._acc2, s_w, bias, y, relu)
        return True

    def vec_spec(self, xq, acc, s_w, bias, path: str):
        """(kernel, args, x index, y index) of `run`'s compiled call (compiled.py), None if it has none."""
        if path == "portable":
            return None
        return self._kernels(path)[0], (self.store, xq.reshape(1, -1), self._scratch, self._acc2, s_w, bias), 1, 6

    def run_batch(self, x: np.ndarray, s_w: float, bias: np.ndarray, y: np.ndarray, path: str) -> bool:
        """y[i] = W x[i] + b for every row of x (N, in) in one call per BATCH_BLOCK rows (False: no
        batched kernel on this path)."""
        if path == "portable":
            return False
        step = min(BATCH_BLOCK, x.shape[0])
        xq = np.zeros((step, self.padded_in), np.int8)
        scales = np.empty(step, np.float64)
        scratch = np.empty(step * self._scratch_len(), np.int32)
        acc = np.empty((step, self.acc_rows), np.int32)
        batch_fused = self._kernels(path)[1]
        for start in range(0, x.shape[0], step):
            m = min(step, x.shape[0] - start)
            batch_fused(self.store, x[start:start + m], xq[:m], scales[:m], scratch, acc[:m], s_w,
                                   bias, y[start:start + m])
        return True

    def matvec(self, xq: np.ndarray, acc: np.ndarray, path: str) -> None:
        """acc = W xq (acc holds whole blocks of rows)."""
        if path == "portable":
            self._portable(xq, acc)
        else:
            self._kernels(path)[2](self.store, xq.reshape(1, -1), self._scratch, acc.reshape(1, -1))


def _zero_blocks(nz: QuantizedLayer, precision: str, kind: str, per_block: tuple[int, ...]):
    """(store, quantized codebook, rows, cols) for building the `kind` block layout of `nz`: store an
    aligned int8 zero array (blocks, *per_block), enough 64-row blocks for nz's rows (at least one)."""
    check_int8(precision, kind)
    q_c, _ = quantize_codebook(nz.codebook, precision)
    blocks = max(1, -(-nz.matrix_shape[0] // BLOCK_ROWS))
    store = aligned_empty((blocks, *per_block), np.int8)
    store[...] = 0
    rows, cols = nz.rows_cols()
    return store, q_c, rows, cols


def build_blocks(nz: QuantizedLayer, precision: str) -> BlocksLayout:
    """The 64-row block layout of `nz` (int8 only)."""
    store, q_c, rows, cols = _zero_blocks(nz, precision, "blocks", (nz.matrix_shape[1], BLOCK_ROWS))
    store[rows // BLOCK_ROWS, cols, rows % BLOCK_ROWS] = q_c[nz.indices]
    return BlocksLayout(nz.matrix_shape, nz.nnz, precision, store)


class QuadsLayout(BlocksLayout):
    """int8 weights in 64-row blocks of column quads: store[b, g, r, i] = W[64 b + r, 4 g + i]."""

    kind = "quads"

    def _scratch_len(self) -> int:
        return ik.quads8_scratch(self.store.shape[1])

    def _portable(self, xq, acc):
        ip.quads_portable(self.store, xq, acc)


def build_quads(nz: QuantizedLayer, precision: str) -> QuadsLayout:
    """The quad-interleaved 64-row block layout of `nz` (int8 only)."""
    store, q_c, rows, cols = _zero_blocks(nz, precision, "quads", (-(-nz.matrix_shape[1] // 4), BLOCK_ROWS, 4))
    store[rows // BLOCK_ROWS, cols // 4, rows % BLOCK_ROWS, cols % 4] = q_c[nz.indices]
    return QuadsLayout(nz.matrix_shape, nz.nnz, precision, store)
