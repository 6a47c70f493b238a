"""The dense-code int layouts: every weight, pruned ones too, as coded vectors (intcodes.py).

- `RowsLayout`: one coded vector per row; visits every weight, no pointers. Best for dense inputs.
- `ColsLayout`: one coded vector per column (rows padded to 32); skips the columns of zero inputs, so it
  visits rows x nonzero-inputs weights. Best for sparse inputs on moderately sparse weights.
- 'rows-stored' and 'cols-stored' are the same layouts with the weights stored even where 4-bit codes
  would do: twice the bytes of 4-bit codes, but no lookup (faster when the layer fits the caches).
- 'rows-packed' (int8): the row layout with 6-bit codes for codebooks of up to 64 values (0.75 B a weight
  where 'rows' stores 1 B), run by the 'vbmi' path's kernel (or the portable one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..format.layer import QuantizedLayer
from . import intkernels as ik
from . import intportable as ip
from .intcodes import CodedVectors, code_vectors, packed6_vectors
from .intpack import CHUNK, PaddedSizes, padded
from .layouts import LayoutBytes
from .quantize import quantize_codebook

# chunk-local column order of the int16 SIMD row kernel (vpunpck{l,h}bw interleave per 128-bit lane)
PERM16 = np.concatenate([np.arange(0, 8), np.arange(16, 24), np.arange(8, 16), np.arange(24, 32)])


def _dense_codes(nz: QuantizedLayer, n_rows: int, n_cols: int, transpose: bool):
    """(codes, keep) of `nz` as a dense (n_rows, n_cols) matrix, or its transpose."""
    rows, cols = nz.rows_cols()
    if transpose:
        rows, cols = cols, rows
    codes = np.zeros((n_rows, n_cols), np.uint8 if nz.codebook.size <= 256 else np.int64)
    keep = np.zeros((n_rows, n_cols), bool)
    codes[rows, cols] = nz.indices
    keep[rows, cols] = True
    return codes, keep


@dataclass
class _DenseCodes(PaddedSizes):
    """What the row and column layouts share: their fields, the padded input length and their bytes."""

    shape: tuple[int, int]
    nnz: int
    precision: str
    vectors: CodedVectors

    def nbytes(self) -> LayoutBytes:
        """Bytes of codes (or weights), mask bits and table."""
        return LayoutBytes(self.nnz, self.vectors.nbytes, 0, self.vectors.table.nbytes)


@dataclass
class RowsLayout(_DenseCodes):
    """One coded vector per row, 32-column chunks."""

    @property
    def kind(self) -> str:
        """'rows', 'rows-stored' when the weights themselves are stored, 'rows-packed' for 6-bit codes."""
        return {"stored": "rows-stored", "packed6": "rows-packed"}.get(self.vectors.storage, "rows")

    def __post_init__(self):
        # the int16 kernel looks up the low and the high byte of each weight in two byte tables
        t = self.vectors.table
        self._xp = None
        self._tables16 = t.view(np.uint8).reshape(16, 2).T.copy() if t.dtype == np.int16 else t

    def _simd(self, path: str) -> bool:
        """Whether `path` runs this layout's C kernel: 6-bit codes need VBMI's (else matvec's portable
        kernel runs them, never an illegal instruction), the other storages any path but the portable one."""
        return path == "vbmi" if self.vectors.storage == "packed6" else path != "portable"

    def run(self, x, xq, acc, s_w, bias, y, path: str, relu: bool = False) -> bool:
        """y = W x + b in one compiled call where this layout and path have one (False: not done)."""
        v = self.vectors
        chunks = self.padded_in // CHUNK
        if not self._simd(path):
            return False
        if v.storage == "packed6":
            ik.rows8_packed_fused(v.store, v.table, chunks, x, xq, acc, s_w, bias, y, relu)
            return True
        if self.precision == "int8":
            ik.rows8_fused(ik.uses_vnni(path), v.store, v.mask, v.nibble, v.table, chunks, x, xq, acc, s_w, bias, y,
                           relu)
            return True
        # stored int16 weights are kept in the kernel's column order: the same permuted input as codes
        if self._xp is None:
            self._xp = np.empty_like(xq)
        ik.rows16_fused(v.store.view(np.uint8), v.mask, v.nibble, self._tables16, chunks, v.store.strides[0],
                        PERM16, x, xq, self._xp, acc, s_w, bias, y, relu)
        return True

    def vec_spec(self, xq, acc, s_w, bias, path: str):
        """(kernel, args, x index, y index) of `run`'s compiled call (compiled.py), None if it has none."""
        v = self.vectors
        chunks = self.padded_in // CHUNK
        if not self._simd(path):
            return None
        if v.storage == "packed6":
            return ik.rows8_packed_fused, (v.store, v.table, chunks, xq, acc, s_w, bias), 3, 7
        if self.precision == "int8":
            args = (ik.uses_vnni(path), v.store, v.mask, v.nibble, v.table, chunks, xq, acc, s_w, bias)
            return ik.rows8_fused, args, 6, 10
        if self._xp is None:
            self._xp = np.empty_like(xq)
        return ik.rows16_fused, (v.store.view(np.uint8), v.mask, v.nibble, self._tables16, chunks, v.store.strides[0],
                                 PERM16, xq, self._xp, acc, s_w, bias), 7, 12

    def matvec(self, xq: np.ndarray, acc: np.ndarray, path: str) -> None:
        """acc = W xq."""
        v = self.vectors
        chunks = self.padded_in // CHUNK
        if v.storage == "packed6":
            if self._simd(path):
                ik.rows8_packed_simd(v.store, v.table, chunks, xq, acc)
            else:
                ip.rows_packed_portable(v.store, v.table, xq, acc)
            return
        if path != "portable" and self.precision == "int8":
            ik.rows8_simd(ik.uses_vnni(path), v.store, v.mask, v.nibble, v.table, chunks, xq, acc)
            return
        if self.precision == "int16" and v.storage == "stored":
            xq = xq.reshape(chunks, CHUNK)[:, PERM16].reshape(-1)  # weights are kept in this order
        if path != "portable" and self.precision == "int16":
            xp = xq if v.storage == "stored" else xq.reshape(chunks, CHUNK)[:, PERM16].reshape(-1)
            ik.rows16_simd(v.store.view(np.uint8), v.mask, v.nibble, self._tables16, chunks,
                           v.store.strides[0], xp, acc)
        else:
            ip.rows_portable(v.store, v.mask, v.nibble, v.table, xq, acc)


def build_rows(nz: QuantizedLayer, precision: str, stored: bool = False) -> RowsLayout:
    """The dense-code row layout of `nz` in `precision` (`stored`: weights, not 4-bit codes)."""
    q_c, _ = quantize_codebook(nz.codebook, precision)
    n_rows, n_cols = nz.matrix_shape
    codes, keep = _dense_codes(nz, n_rows, padded(n_cols), False)
    v = code_vectors(codes, keep, q_c, stored)
    if precision == "int16" and v.storage == "stored":  # the SIMD kernel's column order within a chunk
        v = CodedVectors("stored", np.ascontiguousarray(v.store.reshape(n_rows, -1, CHUNK)[:, :, PERM16]
                                                        .reshape(n_rows, -1)), v.mask, v.table)
    return RowsLayout(nz.matrix_shape, nz.nnz, precision, v)


def build_rows_packed(nz: QuantizedLayer, precision: str) -> RowsLayout:
    """The row layout of `nz` with 6-bit codes (int8; codebooks of up to 64 values with 0)."""
    if precision != "int8":
        raise ValueError(f"the rows-packed layout has int8 kernels only, not {precision}")
    q_c, _ = quantize_codebook(nz.codebook, precision)
    codes, keep = _dense_codes(nz, nz.matrix_shape[0], padded(nz.matrix_shape[1]), False)
    return RowsLayout(nz.matrix_shape, nz.nnz, precision, packed6_vectors(codes, keep, q_c))


@dataclass
class ColsLayout(_DenseCodes):
    """One coded vector per column (rows padded to 32); zero-input columns skipped."""

    @property
    def kind(self) -> str:
        """'cols', or 'cols-stored' when the weights themselves are stored."""
        return "cols-stored" if self.vectors.storage == "stored" else "cols"

    def run(self, x, xq, acc, s_w, bias, y, path: str, relu: bool = False) -> bool:
        """y = W x + b in one compiled call where this layout and path have one (False: not done)."""
        if path == "portable" or self.precision != "int8":
            return False
        v = self.vectors
        ik.cols8_fused(v.store, v.mask, v.nibble, v.table, x, xq, self._nzcols, acc, s_w, bias, y, relu)
        return True

    def __post_init__(self):
        self._nzcols = np.empty(self.shape[1], np.int32)

    def vec_spec(self, xq, acc, s_w, bias, path: str):
        """(kernel, args, x index, y index) of `run`'s compiled call (compiled.py), None if it has none."""
        if path == "portable" or self.precision != "int8":
            return None
        v = self.vectors
        return ik.cols8_fused, (v.store, v.mask, v.nibble, v.table, xq, self._nzcols, acc, s_w, bias), 4, 9

    def matvec(self, xq: np.ndarray, acc: np.ndarray, path: str) -> None:
        """acc = W xq (acc holds the padded rows)."""
        v = self.vectors
        nzcols = self._nzcols
        n = ip.nonzero_columns(xq[:self.shape[1]], nzcols)
        if path != "portable" and self.precision == "int8":
            ik.cols8_simd(v.store, v.mask, v.nibble, v.table, acc.shape[0], nzcols, n, xq, acc)
        else:
            ip.cols_portable(v.store, v.mask, v.nibble, v.table, nzcols, n, xq, acc)


def build_cols(nz: QuantizedLayer, precision: str, stored: bool = False) -> ColsLayout:
    """The column-major dense-code layout of `nz` in `precision` (`stored`: weights, not 4-bit codes)."""
    q_c, _ = quantize_codebook(nz.codebook, precision)
    n_rows, n_cols = nz.matrix_shape
    codes, keep = _dense_codes(nz, n_cols, padded(n_rows), True)
    return ColsLayout(nz.matrix_shape, nz.nnz, precision, code_vectors(codes, keep, q_c, stored))

