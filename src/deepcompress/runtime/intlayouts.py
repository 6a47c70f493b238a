"""Layouts of a weight-shared layer for the int8/int16 modes, built once from a QuantizedLayer.

Dense layouts hold every weight, pruned ones too, as coded vectors of 32-entry chunks (`CodedVectors`):
- 4-bit codes into a 16-entry integer table (0.5 B per weight, decoded by vpshufb) when the quantized
  codebook plus 0 has at most 16 values (<= 15 entries, or an entry that rounds to 0);
- 4-bit codes plus one mask bit per weight (0.625 B) for 16-entry codebooks without a zero: a clear bit
  means pruned (weight 0);
- the quantized weights themselves (1 B int8, 2 B int16) for larger codebooks.

- `RowsLayout`: one coded vector per row; visits every weight, no pointers. Best for dense inputs.
- `ColsLayout`: one coded vector per column (rows padded to 32); skips the columns of zero inputs, so it
  visits rows x nonzero-inputs weights. Best for sparse inputs on moderately sparse weights.
- 'rows-stored' and 'cols-stored' are the same layouts with the weights stored even where 4-bit codes
  would do: twice the bytes of 4-bit codes, but no lookup (faster when the layer fits the caches).
- `BlocksLayout` (int8): the quantized weights in 64-row blocks, each block column-major (64 bytes per
  column); skips the columns of zero inputs like cols, but keeps a block's 64 sums in registers while
  four nonzero columns at a time are interleaved into per-row quads (vpmaddubsw + vpmaddwd: four
  products per int32 lane), and runs a batch block by block (each block read once per batch).
- `QuadsLayout` (int8): the same blocks with each block's columns interleaved in quads when built
  (row r's weights of columns 4g..4g+3 side by side), so a step needs no shuffles: one load, vpmaddubsw,
  vpmaddwd and an add per 8 rows x 4 columns. Skips only quads whose four inputs are all zero: for
  dense inputs (the NT layers) it does about two thirds of blocks' work, for sparse ones more.
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
BLOCK_ROWS = 64  # rows of a BlocksLayout block: 8 registers of int32 sums
BATCH_BLOCK = 64  # samples per call of the batched block kernel
# chunk-local column order of the int16 SIMD row kernel (vpunpck{l,h}bw interleave per 128-bit lane)
PERM16 = np.concatenate([np.arange(0, 8), np.arange(16, 24), np.arange(8, 16), np.arange(24, 32)])


def padded(n: int) -> int:
    """n rounded up to whole 32-entry chunks."""
    return -(-n // CHUNK) * CHUNK


@dataclass(frozen=True)
class CodedVectors:
    """n vectors of `length` (a multiple of 32) integer weights in one of three storages (module docstring)."""

    storage: str  # 'nibble', 'masked' or 'stored'
    store: np.ndarray  # uint8 (n, length/2) codes, or (n, length) integer weights
    mask: np.ndarray  # uint8 (n, length/8) bits for 'masked', else (n, 0)
    table: np.ndarray  # 16 integer weights of the codes (unused for 'stored')

    @property
    def nibble(self) -> int:
        """1 when the vectors are 4-bit codes."""
        return int(self.storage != "stored")

    @property
    def nbytes(self) -> int:
        """Bytes of codes (or weights) and mask."""
        return self.store.nbytes + self.mask.nbytes


def storage_for(q_c: np.ndarray) -> tuple[str, int]:
    """('nibble', code of weight 0), ('masked', 0) or ('stored', 0) for a quantized codebook."""
    if q_c.size > 16:
        return "stored", 0
    if q_c.size < 16:
        return "nibble", int(q_c.size)
    zeros = np.flatnonzero(q_c == 0)
    return ("nibble", int(zeros[0])) if zeros.size else ("masked", 0)


def bytes_per_weight(storage: str, precision: str) -> float:
    """Bytes a dense layout spends per weight in this storage."""
    return {"nibble": 0.5, "masked": 0.625}.get(storage, 1.0 if precision == "int8" else 2.0)


def code_vectors(codes: np.ndarray, keep: np.ndarray, q_c: np.ndarray, stored: bool = False) -> CodedVectors:
    """Pack an (n, length) matrix of codebook indices (`keep` False where the weight is pruned); `stored`
    keeps the quantized weights themselves even where 4-bit codes would do."""
    n, length = codes.shape
    no_mask = np.zeros((n, 0), np.uint8)
    table = np.zeros(16, q_c.dtype)
    storage, zero = ("stored", 0) if stored else storage_for(q_c)
    if storage == "stored":
        return CodedVectors("stored", np.where(keep, q_c[codes], 0).astype(q_c.dtype), no_mask, table)
    table[:q_c.size] = q_c
    c = np.where(keep, codes, zero).astype(np.uint8)
    halves = c.reshape(n, -1, 2, 16)
    store = np.ascontiguousarray((halves[:, :, 0, :] | (halves[:, :, 1, :] << 4)).reshape(n, -1))
    if storage == "nibble":
        return CodedVectors("nibble", store, no_mask, table)
    return CodedVectors("masked", store, np.packbits(keep, axis=1, bitorder="little"), table)


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
class _DenseCodes:
    """What the row and column layouts share: their fields, the padded input length and their bytes."""

    shape: tuple[int, int]
    nnz: int
    precision: str
    vectors: CodedVectors

    @property
    def padded_in(self) -> int:
        """Length of the padded input."""
        return padded(self.shape[1])

    @property
    def acc_rows(self) -> int:
        """Length of the integer sums buffer."""
        return padded(self.shape[0])

    def nbytes(self) -> LayoutBytes:
        """Bytes of codes (or weights), mask bits and table."""
        return LayoutBytes(self.nnz, self.vectors.nbytes, 0, self.vectors.table.nbytes)


@dataclass
class RowsLayout(_DenseCodes):
    """One coded vector per row, 32-column chunks."""

    @property
    def kind(self) -> str:
        """'rows', or 'rows-stored' when the weights themselves are stored."""
        return "rows-stored" if self.vectors.storage == "stored" else "rows"

    def __post_init__(self):
        # the int16 kernel looks up the low and the high byte of each weight in two byte tables
        t = self.vectors.table
        self._xp = None
        self._tables16 = t.view(np.uint8).reshape(16, 2).T.copy() if t.dtype == np.int16 else t

    def run(self, x, xq, acc, s_w, bias, y, path: str, relu: bool = False) -> bool:
        """y = W x + b in one compiled call where this layout and path have one (False: not done)."""
        v = self.vectors
        chunks = self.padded_in // CHUNK
        if path == "portable":
            return False
        if self.precision == "int8":
            ik.rows8_fused(path == "vnni", v.store, v.mask, v.nibble, v.table, chunks, x, xq, acc, s_w, bias, y,
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
        if path == "portable":
            return None
        if self.precision == "int8":
            args = (path == "vnni", v.store, v.mask, v.nibble, v.table, chunks, xq, acc, s_w, bias)
            return ik.rows8_fused, args, 6, 10
        if self._xp is None:
            self._xp = np.empty_like(xq)
        return ik.rows16_fused, (v.store.view(np.uint8), v.mask, v.nibble, self._tables16, chunks, v.store.strides[0],
                                 PERM16, xq, self._xp, acc, s_w, bias), 7, 12

    def matvec(self, xq: np.ndarray, acc: np.ndarray, path: str) -> None:
        """acc = W xq."""
        v = self.vectors
        chunks = self.padded_in // CHUNK
        if path != "portable" and self.precision == "int8":
            ik.rows8_simd(path == "vnni", v.store, v.mask, v.nibble, v.table, chunks, xq, acc)
            return
        if self.precision == "int16" and v.storage == "stored":
            xq = xq.reshape(chunks, CHUNK)[:, PERM16].reshape(-1)  # weights are kept in this order
        if path != "portable" and self.precision == "int16":
            xp = xq if v.storage == "stored" else xq.reshape(chunks, CHUNK)[:, PERM16].reshape(-1)
            ik.rows16_simd(v.store.view(np.uint8), v.mask, v.nibble, self._tables16, chunks,
                           v.store.strides[0], xp, acc)
        else:
            ik.rows_portable(v.store, v.mask, v.nibble, v.table, xq, acc)


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
        n = ik.nonzero_columns(xq[:self.shape[1]], nzcols)
        if path != "portable" and self.precision == "int8":
            ik.cols8_simd(v.store, v.mask, v.nibble, v.table, acc.shape[0], nzcols, n, xq, acc)
        else:
            ik.cols_portable(v.store, v.mask, v.nibble, v.table, nzcols, n, xq, acc)


def build_cols(nz: QuantizedLayer, precision: str, stored: bool = False) -> ColsLayout:
    """The column-major dense-code layout of `nz` in `precision` (`stored`: weights, not 4-bit codes)."""
    q_c, _ = quantize_codebook(nz.codebook, precision)
    n_rows, n_cols = nz.matrix_shape
    codes, keep = _dense_codes(nz, n_cols, padded(n_rows), True)
    return ColsLayout(nz.matrix_shape, nz.nnz, precision, code_vectors(codes, keep, q_c, stored))


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

    @property
    def acc_rows(self) -> int:
        """Length of the integer sums buffer."""
        return padded(self.shape[0])

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
        ik.csc_int(c.col_ptr, c.row_start, c.entries, self.table, c.bits, xq[:self.shape[1]], acc)


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
class AbsCscLayout:
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

    @property
    def padded_in(self) -> int:
        """Length of the padded input."""
        return padded(self.shape[1])

    @property
    def acc_rows(self) -> int:
        """Length of the integer sums buffer."""
        return padded(self.shape[0])

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
            ik.csc_abs_portable(self.col_ptr, self.entries, self.table, self.code_bits, x, acc)
        else:
            ik.csc_abs8_simd(self.col_ptr, self.entries, self.table, self.code_bits, x, self._nzcols, acc)


def build_abs_csc(nz: QuantizedLayer, precision: str) -> AbsCscLayout:
    """The csc-abs layout of `nz` (int8 only; a QuantizedLayer's codebook has at most 256 entries)."""
    if precision != "int8":
        raise ValueError("the csc-abs layout is int8 only")
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


def aligned_empty(shape, dtype, align: int = 64) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an `align`-byte boundary (a cache line)."""
    count = int(np.prod(shape))
    itemsize = np.dtype(dtype).itemsize
    buf = np.empty(count * itemsize + align, np.uint8)
    off = (-buf.ctypes.data) % align
    return buf[off:off + count * itemsize].view(dtype).reshape(shape)


@dataclass
class BlocksLayout:
    """int8 weights in 64-row blocks, column-major inside a block: store[b, j] = W[64 b : 64 b + 64, j]."""

    shape: tuple[int, int]
    nnz: int
    precision: str
    store: np.ndarray  # int8 (blocks, cols, 64), rows past shape[0] zero, 64-byte aligned
    kind = "blocks"

    @property
    def padded_in(self) -> int:
        """Length of the padded input."""
        return padded(self.shape[1])

    @property
    def acc_rows(self) -> int:
        """Length of the integer sums buffer: whole blocks."""
        return self.store.shape[0] * BLOCK_ROWS

    def __post_init__(self):
        self._scratch = np.empty(max(self._scratch_len(), 1), np.int32)
        self._acc2 = np.empty((1, self.acc_rows), np.int32)

    def _scratch_len(self) -> int:
        return ik.blocks8_scratch(self.shape[1])

    def _kernels(self):
        """(one-vector fused, batched fused, SIMD sums) kernels of this layout (the extension's)."""
        return ik.blocks8_fused, ik.blocks8_batch_fused, ik.blocks8_simd

    def _portable(self, xq, acc):
        ik.blocks_portable(self.store, xq, acc)

    def nbytes(self) -> LayoutBytes:
        """Bytes of the stored weights."""
        return LayoutBytes(self.nnz, self.store.nbytes, 0, 0)

    def run(self, x, xq, acc, s_w, bias, y, path: str, relu: bool = False) -> bool:
        """y = W x + b in one compiled call where this layout and path have one (False: not done)."""
        if path == "portable":
            return False
        self._kernels()[0](self.store, x, xq.reshape(1, -1), self._scratch, self._acc2, s_w, bias, y, relu)
        return True

    def vec_spec(self, xq, acc, s_w, bias, path: str):
        """(kernel, args, x index, y index) of `run`'s compiled call (compiled.py), None if it has none."""
        if path == "portable":
            return None
        return self._kernels()[0], (self.store, xq.reshape(1, -1), self._scratch, self._acc2, s_w, bias), 1, 6

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
        batch_fused = self._kernels()[1]
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
            self._kernels()[2](self.store, xq.reshape(1, -1), self._scratch, acc.reshape(1, -1))


def build_blocks(nz: QuantizedLayer, precision: str) -> BlocksLayout:
    """The 64-row block layout of `nz` (int8 only)."""
    if precision != "int8":
        raise ValueError("the blocks layout is int8 only")
    q_c, _ = quantize_codebook(nz.codebook, precision)
    n_rows, n_cols = nz.matrix_shape
    blocks = max(1, -(-n_rows // BLOCK_ROWS))
    store = aligned_empty((blocks, n_cols, BLOCK_ROWS), np.int8)
    store[...] = 0
    rows, cols = nz.rows_cols()
    store[rows // BLOCK_ROWS, cols, rows % BLOCK_ROWS] = q_c[nz.indices]
    return BlocksLayout(nz.matrix_shape, nz.nnz, precision, store)


class QuadsLayout(BlocksLayout):
    """int8 weights in 64-row blocks of column quads: store[b, g, r, i] = W[64 b + r, 4 g + i]."""

    kind = "quads"

    def _scratch_len(self) -> int:
        return ik.quads8_scratch(self.store.shape[1])

    def _kernels(self):
        """(one-vector fused, batched fused, SIMD sums) kernels of this layout (the extension's)."""
        return ik.quads8_fused, ik.quads8_batch_fused, ik.quads8_simd

    def _portable(self, xq, acc):
        ik.quads_portable(self.store, xq, acc)


LANE_BLOCK = 32  # samples per lane tile of the row-quad kernel


@dataclass
class RowQuadsLayout:
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
    def padded_in(self) -> int:
        """Length of the padded input."""
        return padded(self.shape[1])

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
        ik.rowquads_portable(self.row_ptr, self.qcols, self.qw, xt, out)
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
        ik.panelquads_portable(self.row_ptr, self.qcols, self.qw, PANEL_COLS, PANEL_LANES, xt, out)
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
    if precision != "int8":
        raise ValueError("the panelquads layout is int8 only")
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
    if precision != "int8":
        raise ValueError("the rowquads layout is int8 only")
    n_rows, n_cols = nz.matrix_shape
    if n_cols > 1 << 16:
        raise ValueError(f"the rowquads layout holds at most 65536 columns, got {n_cols}")
    q_c, _ = quantize_codebook(nz.codebook, precision)
    rows, cols = nz.rows_cols()
    order = np.lexsort((cols, rows))
    rows, cols, w = rows[order], cols[order], q_c[nz.indices[order]]
    counts = np.bincount(rows, minlength=n_rows)
    quads = -(-counts // 4)
    row_ptr = np.zeros(n_rows + 1, np.int32)
    np.cumsum(quads, out=row_ptr[1:])
    first = np.zeros(n_rows + 1, np.int64)
    np.cumsum(counts, out=first[1:])
    rank = np.arange(rows.size) - first[rows]
    slot = 4 * row_ptr[rows].astype(np.int64) + rank  # padding slots keep column 0 and weight 0
    qcols = np.zeros(4 * int(row_ptr[-1]), np.uint16)
    qw = np.zeros(4 * int(row_ptr[-1]), np.int8)
    qcols[slot], qw[slot] = cols, w
    return RowQuadsLayout(nz.matrix_shape, nz.nnz, precision, row_ptr, qcols.reshape(-1, 4), qw.reshape(-1, 4))


def build_quads(nz: QuantizedLayer, precision: str) -> QuadsLayout:
    """The quad-interleaved 64-row block layout of `nz` (int8 only)."""
    if precision != "int8":
        raise ValueError("the quads layout is int8 only")
    q_c, _ = quantize_codebook(nz.codebook, precision)
    n_rows, n_cols = nz.matrix_shape
    blocks = max(1, -(-n_rows // BLOCK_ROWS))
    store = aligned_empty((blocks, -(-n_cols // 4), BLOCK_ROWS, 4), np.int8)
    store[...] = 0
    rows, cols = nz.rows_cols()
    store[rows // BLOCK_ROWS, cols // 4, rows % BLOCK_ROWS, cols % 4] = q_c[nz.indices]
    return QuadsLayout(nz.matrix_shape, nz.nnz, precision, store)


INT_BUILDERS = {"rows": build_rows, "rows-stored": lambda nz, precision: build_rows(nz, precision, True),
                "cols": build_cols, "cols-stored": lambda nz, precision: build_cols(nz, precision, True),
                "csc": build_int_csc, "csc-abs": build_abs_csc, "blocks": build_blocks,
                "quads": build_quads, "rowquads": build_rowquads, "panelquads": build_panelquads}
