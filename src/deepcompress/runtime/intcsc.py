"""The sparse column int layouts: only the nonzero weights, column by column, zero inputs skipped.

- `IntCscLayout`: the fp32 runtime's column layout (layouts.CscLayout, 2 B per nonzero) with the
  integer codebook: visits only the nonzero weights of nonzero inputs. Best for very sparse weights.
- `AbsCscLayout` ('csc-abs', int8): rows in blocks of 2**(16 - code bits), each nonzero one 16-bit entry:
  its row's offset in the block (absolute, not a gap from the one before) and its codebook index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..format.layer import QuantizedLayer
from . import intkernels as ik
from . import intportable as ip
from .intpack import PaddedSizes, check_int8
from .layouts import LayoutBytes, build_csc
from .quantize import quantize_codebook


@dataclass
class IntCscLayout(PaddedSizes):
    """The column layout of layouts.py with an integer codebook (its padding code's weight is 0)."""

    shape: tuple[int, int]
    nnz: int
    precision: str
    csc: object
    table: np.ndarray
    kind = "csc"

    def nbytes(self) -> LayoutBytes:
        """Bytes of the column layout, with the integer table as its codebook."""
        b = self.csc.nbytes()
        return LayoutBytes(self.nnz, b.entries, b.pointers, self.table.nbytes)

    def run(self, x, xq, acc, s_w, bias, y, path: str, relu: bool = False) -> bool:
        """No fused call for this layout (False)."""
        return False

    def matvec(self, xq: np.ndarray, acc: np.ndarray, path: str) -> None:
        """acc = W xq (one path: the portable scalar loop)."""
        c = self.csc
        ip.csc_int(c.col_ptr, c.row_start, c.entries, self.table, c.bits, xq[:self.shape[1]], acc)


def build_int_csc(nz: QuantizedLayer, precision: str) -> IntCscLayout:
    """The column layout of `nz` with the quantized codebook."""
    q_c, _ = quantize_codebook(nz.codebook, precision)
    csc = build_csc(nz)
    table = np.zeros(csc.codebook.shape[0], q_c.dtype)
    table[:q_c.size] = q_c
    return IntCscLayout(nz.matrix_shape, nz.nnz, precision, csc, table)


ABS_ENTRY_BITS = 16
MIN_CODE_BITS = 4  # blocks of at most 4096 rows: a block's int32 sums (16 KB) stay in L1


def abs_code_bits(k: int) -> int:
    """Codebook-index bits of the csc-abs layout's entries for a k-entry codebook (4 to 8)."""
    return max(MIN_CODE_BITS, int(k - 1).bit_length())


@dataclass
class AbsCscLayout(PaddedSizes):
    """int8 column layout with absolute row offsets: rows in blocks of 2**(16 - code_bits); in block b,
    column j's nonzeros are entries[col_ptr[b, j] : col_ptr[b, j + 1]], each (row offset in the block
    << code_bits) | codebook index; table holds the codes' int8 weights (zero past the codebook)."""

    shape: tuple[int, int]
    nnz: int
    precision: str
    code_bits: int
    col_ptr: np.ndarray  # int32 (blocks, cols + 1)
    entries: np.ndarray  # uint16
    table: np.ndarray  # int8, 2**code_bits
    kind = "csc-abs"

    def __post_init__(self):
        self._nzcols = np.empty(max(self.shape[1], 1), np.int32)

    def nbytes(self) -> LayoutBytes:
        """Bytes of entries, column pointers and table."""
        return LayoutBytes(self.nnz, self.entries.nbytes, self.col_ptr.nbytes, self.table.nbytes)

    def run(self, x, xq, acc, s_w, bias, y, path: str, relu: bool = False) -> bool:
        """y = W x + b in one compiled call where this path has one (False: not done)."""
        if path == "portable":
            return False
        ik.csc_abs8_fused(self.col_ptr, self.entries, self.table, self.code_bits, x, xq, self._nzcols, acc, s_w,
                          bias, y, relu)
        return True

    def vec_spec(self, xq, acc, s_w, bias, path: str):
        """(kernel, args, x index, y index) of `run`'s compiled call (compiled.py), None if it has none."""
        if path == "portable":
            return None
        return ik.csc_abs8_fused, (self.col_ptr, self.entries, self.table, self.code_bits, xq, self._nzcols, acc,
                                   s_w, bias), 4, 9

    def matvec(self, xq: np.ndarray, acc: np.ndarray, path: str) -> None:
        """acc = W xq."""
        x = xq[:self.shape[1]]
        if path == "portable":
            ip.csc_abs_portable(self.col_ptr, self.entries, self.table, self.code_bits, x, acc)
        else:
            ik.csc_abs8_simd(self.col_ptr, self.entries, self.table, self.code_bits, x, self._nzcols, acc)


def build_abs_csc(nz: QuantizedLayer, precision: str) -> AbsCscLayout:
    """The csc-abs layout of `nz` (int8 only; a QuantizedLayer's codebook has at most 256 entries)."""
    check_int8(precision, "csc-abs")
    k = nz.codebook.shape[0]
    q_c, _ = quantize_codebook(nz.codebook, precision)
    bits = abs_code_bits(k)
    block_rows = 1 << (ABS_ENTRY_BITS - bits)
    n_rows, n_cols = nz.matrix_shape
    blocks = max(1, -(-n_rows // block_rows))
    rows, cols = nz.rows_cols()
    block = rows // block_rows
    order = np.lexsort((rows, cols, block))
    rows, cols, block = rows[order], cols[order], block[order]
    entries = (((rows - block * block_rows) << bits) | nz.indices[order]).astype(np.uint16)
    counts = np.bincount(block * n_cols + cols, minlength=blocks * n_cols)
    if counts.sum() > np.iinfo(np.int32).max:
        raise ValueError(f"{counts.sum()} entries exceed the int32 pointers of the csc-abs layout")
    flat = np.zeros(blocks * n_cols + 1, np.int64)
    np.cumsum(counts, out=flat[1:])
    col_ptr = np.empty((blocks, n_cols + 1), np.int32)
    for b in range(blocks):
        col_ptr[b] = flat[b * n_cols: (b + 1) * n_cols + 1]
    table = np.zeros(1 << bits, np.int8)
    table[:k] = q_c
    return AbsCscLayout(nz.matrix_shape, nz.nnz, precision, bits, col_ptr, entries, table)
