"""Layouts of a weight-shared layer for the int8/int16 modes, built once from a QuantizedLayer.

- `RowsLayout` (dense codes, row-major): every weight, pruned ones too, in 32-column chunks. With at
  most 16 distinct quantized weights including 0 (a codebook of <= 15 entries, or one of whose entries
  rounds to 0) each weight is a 4-bit code into a 16-entry integer table (0.5 B per weight, decoded by
  vpshufb); otherwise the quantized weights themselves are stored (1 B int8, 2 B int16 per weight).
  Visits every weight; no pointer chasing. Best for dense inputs.
- `ColsLayout` (dense weights, column-major, rows padded to 32): skips the columns of zero inputs, so
  it visits rows x nonzero-inputs weights. Best for sparse inputs on moderately sparse weights.
- `IntCscLayout`: the fp32 runtime's column layout (layouts.CscLayout, 2 B per nonzero) with the
  integer codebook: visits only the nonzero weights of nonzero inputs. Best for very sparse weights.

`matvec(xq, acc, path)` sets acc[:rows] to the exact integer W xq; xq is the quantized input padded with
zeros to `padded_in` entries (see intkernels.py for the paths).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..format.layer import QuantizedLayer
from . import intkernels as ik
from .layouts import LayoutBytes, build_csc
from .quantize import int_dtype, quantize_codebook

CHUNK = 32
# chunk-local column order of the int16 SIMD row kernel (vpunpck{l,h}bw interleave per 128-bit lane)
PERM16 = np.concatenate([np.arange(0, 8), np.arange(16, 24), np.arange(8, 16), np.arange(24, 32)])


def padded(n: int) -> int:
    """n rounded up to whole 32-entry chunks."""
    return -(-n // CHUNK) * CHUNK


def dense_quantized(nz: QuantizedLayer, q_c: np.ndarray, n_cols: int, dtype) -> np.ndarray:
    """The quantized weights as a dense (rows, n_cols) array, zeros where pruned and in the padding."""
    rows, cols = nz.rows_cols()
    w = np.zeros((nz.matrix_shape[0], n_cols), dtype)
    w[rows, cols] = q_c[nz.indices]
    return w


def nibble_table(q_c: np.ndarray) -> tuple[np.ndarray, int] | None:
    """(16-entry table, code of weight 0) when the quantized codebook plus 0 fits 4-bit codes, else None."""
    if q_c.size < 16:
        table = np.zeros(16, q_c.dtype)
        table[:q_c.size] = q_c
        return table, int(q_c.size)
    zeros = np.flatnonzero(q_c == 0)
    if q_c.size == 16 and zeros.size:
        return q_c.copy(), int(zeros[0])
    return None


@dataclass
class RowsLayout:
    """Dense codes (or stored weights) row-major in 32-column chunks."""

    shape: tuple[int, int]
    nnz: int
    precision: str
    nibble: bool
    store: np.ndarray  # uint8 (rows, chunks*16) codes, or (rows, chunks*32) weights
    table: np.ndarray  # 16 integer weights of the codes (nibble), else unused
    kind = "rows"

    @property
    def padded_in(self) -> int:
        """Length of the padded input."""
        return padded(self.shape[1])

    def nbytes(self) -> LayoutBytes:
        """Bytes of codes (or weights) and table."""
        return LayoutBytes(self.nnz, self.store.nbytes, 0, self.table.nbytes)

    def matvec(self, xq: np.ndarray, acc: np.ndarray, path: str) -> None:
        """acc = W xq."""
        chunks = self.padded_in // CHUNK
        if path != "portable" and self.precision == "int8":
            ik.rows8_simd(path == "vnni", self.store, int(self.nibble), self.table, chunks, xq, acc)
        elif path != "portable":
            xp = xq.reshape(chunks, CHUNK)[:, PERM16].reshape(-1)
            tables = self.table.view(np.uint8).reshape(16, 2).T.copy() if self.nibble else self.table
            ik.rows16_simd(self.store.view(np.uint8), int(self.nibble), tables, chunks,
                           self.store.strides[0], xp, acc)
        elif self.nibble:
            ik.rows_nibble(self.store, self.table, xq, acc)
        else:
            ik.rows_stored(self.store, self._unpermuted_x(xq), acc)

    def _unpermuted_x(self, xq):
        # int16 stored weights are kept in the SIMD kernel's column order; permute x the same way
        if self.precision == "int16":
            return xq.reshape(-1, CHUNK)[:, PERM16].reshape(-1)
        return xq


def build_rows(nz: QuantizedLayer, precision: str) -> RowsLayout:
    """The dense-code row layout of `nz` in `precision`."""
    q_c, _ = quantize_codebook(nz.codebook, precision)
    n_rows, n_cols = nz.matrix_shape
    fit = nibble_table(q_c)
    if fit is not None:
        table, zero = fit
        codes = np.full((n_rows, padded(n_cols)), zero, np.uint8)
        rows, cols = nz.rows_cols()
        codes[rows, cols] = nz.indices
        halves = codes.reshape(n_rows, -1, 2, 16)
        store = (halves[:, :, 0, :] | (halves[:, :, 1, :] << 4)).reshape(n_rows, -1)
        return RowsLayout(nz.matrix_shape, nz.nnz, precision, True, np.ascontiguousarray(store), table)
    w = dense_quantized(nz, q_c, padded(n_cols), int_dtype(precision))
    if precision == "int16":
        w = w.reshape(n_rows, -1, CHUNK)[:, :, PERM16].reshape(n_rows, -1)
    return RowsLayout(nz.matrix_shape, nz.nnz, precision, False, np.ascontiguousarray(w),
                      np.zeros(16, int_dtype(precision)))


@dataclass
class ColsLayout:
    """Dense quantized weights column-major, rows padded to 32; zero-input columns skipped."""

    shape: tuple[int, int]
    nnz: int
    precision: str
    weights: np.ndarray  # (cols, padded rows)
    kind = "cols"

    @property
    def padded_in(self) -> int:
        """Length of the padded input."""
        return padded(self.shape[1])

    def nbytes(self) -> LayoutBytes:
        """Bytes of the weights."""
        return LayoutBytes(self.nnz, self.weights.nbytes, 0, 0)

    def matvec(self, xq: np.ndarray, acc: np.ndarray, path: str) -> None:
        """acc = W xq (acc holds the padded rows)."""
        nzcols = np.empty(self.shape[1], np.int32)
        n = ik.nonzero_columns(xq[:self.shape[1]], nzcols)
        if path != "portable" and self.precision == "int8":
            ik.cols8_simd(self.weights, nzcols, n, xq, acc)
        else:
            ik.cols_portable(self.weights, nzcols, n, xq, acc)


def build_cols(nz: QuantizedLayer, precision: str) -> ColsLayout:
    """The column-major dense layout of `nz` in `precision`."""
    q_c, _ = quantize_codebook(nz.codebook, precision)
    n_rows, n_cols = nz.matrix_shape
    w = np.zeros((n_cols, padded(n_rows)), int_dtype(precision))
    rows, cols = nz.rows_cols()
    w[cols, rows] = q_c[nz.indices]
    return ColsLayout(nz.matrix_shape, nz.nnz, precision, w)


@dataclass
class IntCscLayout:
    """The column layout of layouts.py with an integer codebook (its padding code's weight is 0)."""

    shape: tuple[int, int]
    nnz: int
    precision: str
    csc: object
    table: np.ndarray
    kind = "csc"

    @property
    def padded_in(self) -> int:
        """Length of the padded input."""
        return padded(self.shape[1])

    def nbytes(self) -> LayoutBytes:
        """Bytes of the column layout, with the integer table as its codebook."""
        b = self.csc.nbytes()
        return LayoutBytes(self.nnz, b.entries, b.pointers, self.table.nbytes)

    def matvec(self, xq: np.ndarray, acc: np.ndarray, path: str) -> None:
        """acc = W xq (one path: the portable scalar loop)."""
        c = self.csc
        ik.csc_int(c.col_ptr, c.row_start, c.entries, self.table, c.bits, xq[:self.shape[1]], acc)


def build_int_csc(nz: QuantizedLayer, precision: str) -> IntCscLayout:
    """The column layout of `nz` with the quantized codebook."""
    q_c, _ = quantize_codebook(nz.codebook, precision)
    csc = build_csc(nz)
    table = np.zeros(csc.codebook.shape[0], q_c.dtype)
    table[:q_c.size] = q_c
    return IntCscLayout(nz.matrix_shape, nz.nnz, precision, csc, table)


INT_BUILDERS = {"rows": build_rows, "cols": build_cols, "csc": build_int_csc}
