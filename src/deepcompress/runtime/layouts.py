"""Compact runtime layouts of a sparse weight-shared matrix, built once at load time.

Each nonzero is one 16-bit entry: the codebook index in the low `bits` bits and a position field in
the high 16 - `bits` bits. Pointers (int32) are per column, per (panel, row) or per (row, centroid).

- `CscLayout` (EIE's format): column-major; the position field is the row step from the previous
  nonzero of the column (zero run + 1; the first steps from the row before the block). A run longer
  than the field holds is bridged by padding entries that carry the spare codebook index `K`, whose
  weight is 0 (so the codebook index needs bit_length(K) bits); format/relindex.py states the rule. Lets the kernel skip whole columns whose input is zero. Tall matrices are
  cut into row blocks of at most CSC_BLOCK_ROWS rows, each a column layout of its own (gaps start
  again at the block's first row), so the slice of the output being scattered into fits in L1.
- `PanelLayout`: row-major within column panels of width 2**(16 - bits); the position field is the
  column offset inside the panel. No padding, every nonzero costs exactly 2 bytes.
- `GroupedLayout`: row-major, a row's nonzeros grouped by centroid; 16-bit column indices, the
  centroid implied by the group (uint16 count per row and centroid). Needs cols <= 65535.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..format.layer import QuantizedLayer
from ..format.relindex import padding_entries, zero_runs
from . import kernels

ENTRY_BITS = 16
# 4096 float32 outputs = 16 KB, half of a 32 KB L1 data cache. NT-Wd (8791 x 600, dense input, batch 1,
# benchmarks/runtime_layers.py) ran 1.16x faster in 2-3 blocks than in one; layers of 1000-4096 rows
# (Alex-6, Alex-8, VGG-6, NT-LSTM) ran 1.0-2.5x slower when cut into blocks they do not need.
CSC_BLOCK_ROWS = 4096
# use the C twins of the csc matvec and panel batch kernels when built (kernels.HAVE_C); tests switch
# this off to compare them with the numba kernels
C_KERNELS = True
_MAX_ENTRIES = np.iinfo(np.int32).max


def _pointers(counts: np.ndarray) -> np.ndarray:
    """int32 exclusive prefix sum (length len(counts) + 1) of per-segment entry counts."""
    total = int(counts.sum())
    if total > _MAX_ENTRIES:
        raise ValueError(f"{total} entries exceed the int32 pointers of the runtime layout")
    ptr = np.zeros(counts.shape[0] + 1, np.int32)
    np.cumsum(counts, out=ptr[1:])
    return ptr


def _pointer_rows(counts: np.ndarray, n: int, width: int) -> np.ndarray:
    """int32 pointers of n x width consecutive segments as an (n, width + 1) array: segment (r, j) of
    `counts` (row-major) spans ptr[r, j] .. ptr[r, j + 1]."""
    flat = _pointers(counts)
    return np.lib.stride_tricks.as_strided(flat, (n, width + 1), (width * 4, 4)).copy()


def _padded_codebook(codebook: np.ndarray, bits: int) -> np.ndarray:
    out = np.zeros(1 << bits, np.float32)
    out[: codebook.shape[0]] = codebook
    return out


class LayerSizes:
    """in_features and out_features of a layer object from its `layout`'s (rows, cols) shape."""

    @property
    def in_features(self) -> int:
        """Length of one input vector."""
        return self.layout.shape[1]

    @property
    def out_features(self) -> int:
        """Length of one output vector."""
        return self.layout.shape[0]


@dataclass(frozen=True)
class LayoutBytes:
    """Bytes a layout occupies, split by role, and per stored nonzero."""

    nnz: int
    entries: int
    pointers: int
    codebook: int

    @property
    def total(self) -> int:
        """All bytes of the layout."""
        return self.entries + self.pointers + self.codebook

    def per_nonzero(self) -> dict:
        """Bytes per nonzero: entries only, pointers only, and all together (0 when nnz is 0)."""
        n = max(self.nnz, 1)
        return {"entries": self.entries / n, "pointers": self.pointers / n, "total": self.total / n}


@dataclass(frozen=True)
class CscLayout:
    """Column-major relative-row layout with zero-weight padding entries (EIE's format in 16 bits)."""

    shape: tuple[int, int]
    nnz: int
    bits: int
    row_start: np.ndarray  # int64, blocks + 1: block b holds rows row_start[b]..row_start[b+1]
    col_ptr: np.ndarray  # int32, (blocks, cols + 1): block b's column j spans col_ptr[b, j]..col_ptr[b, j+1]
    entries: np.ndarray
    codebook: np.ndarray
    kind = "csc"

    @property
    def padding(self) -> int:
        """Padding entries inserted for row gaps too long for the position field."""
        return int(self.entries.shape[0]) - self.nnz

    def nbytes(self) -> LayoutBytes:
        """Bytes of entries, pointers and codebook."""
        pointers = self.col_ptr.nbytes + self.row_start.nbytes
        return LayoutBytes(self.nnz, self.entries.nbytes, pointers, self.codebook.nbytes)

    def matvec(self, x: np.ndarray, y: np.ndarray, threads: int = 1) -> None:
        """y += W x (float32, contiguous); with threads > 1 the row blocks are shared among threads."""
        if threads > 1 and self.col_ptr.shape[0] > 1:
            kernel = kernels.csc_matvec_threads
        else:
            kernel = kernels.csc_matvec_c if kernels.HAVE_C and C_KERNELS else kernels.csc_matvec
        kernel(self.col_ptr, self.row_start, self.entries, self.codebook, self.bits, x, y)

    def matmat(self, xt: np.ndarray, yt: np.ndarray, threads: int = 1) -> None:
        """yt += W xt, xt of shape (cols, N), yt of shape (rows, N) (one thread)."""
        kernels.csc_matmat(self.col_ptr, self.row_start, self.entries, self.codebook, self.bits, xt, yt)


@dataclass(frozen=True)
class PanelLayout:
    """Row-major layout in column panels, panel-relative column in each 16-bit entry."""

    shape: tuple[int, int]
    nnz: int
    bits: int
    width: int
    ptr: np.ndarray
    entries: np.ndarray
    codebook: np.ndarray
    kind = "panel"

    def nbytes(self) -> LayoutBytes:
        """Bytes of entries, pointers and codebook."""
        return LayoutBytes(self.nnz, self.entries.nbytes, self.ptr.nbytes, self.codebook.nbytes)

    def matvec(self, x: np.ndarray, y: np.ndarray, threads: int = 1) -> None:
        """y += W x (float32, contiguous); with threads > 1 the rows are shared among threads."""
        args = (self.ptr, self.entries, self.codebook, self.bits, self.width, x, y)
        if threads > 1:
            kernels.panel_matvec_threads(*args, threads)
        else:
            kernels.panel_matvec(*args)

    def matmat(self, xt: np.ndarray, yt: np.ndarray, threads: int = 1) -> None:
        """yt += W xt, xt of shape (cols, N), yt of shape (rows, N); fastest when N is a multiple of 8."""
        args = (self.ptr, self.entries, self.codebook, self.bits, self.width, xt, yt)
        c = kernels.HAVE_C and C_KERNELS
        if xt.shape[1] % kernels.LANES != 0:
            kernels.panel_matmat(*args)
        elif threads > 1:
            (kernels.panel_matmat_c_threads if c else kernels.panel_matmat_vec_threads)(*args, threads)
        else:
            (kernels.panel_matmat_c if c else kernels.panel_matmat_vec)(*args)


@dataclass(frozen=True)
class GroupedLayout:
    """Row-major layout with each row's nonzeros grouped by centroid; 16-bit column indices."""

    shape: tuple[int, int]
    nnz: int
    row_ptr: np.ndarray
    counts: np.ndarray
    cols: np.ndarray
    codebook: np.ndarray
    kind = "grouped"

    def nbytes(self) -> LayoutBytes:
        """Bytes of entries, pointers (row pointers and group counts) and codebook."""
        ptrs = self.row_ptr.nbytes + self.counts.nbytes
        return LayoutBytes(self.nnz, self.cols.nbytes, ptrs, self.codebook.nbytes)

    def matvec(self, x: np.ndarray, y: np.ndarray, threads: int = 1) -> None:
        """y += W x (float32, contiguous; one thread)."""
        kernels.grouped_matvec(self.row_ptr, self.counts, self.cols, self.codebook, x, y)

    def matmat(self, xt: np.ndarray, yt: np.ndarray, threads: int = 1) -> None:
        """yt += W xt, xt of shape (cols, N), yt of shape (rows, N) (one thread)."""
        kernels.grouped_matmat(self.row_ptr, self.counts, self.cols, self.codebook, xt, yt)


def csc_bits(k: int) -> int:
    """Codebook-index bits of the column layout: room for K codes plus the zero padding code."""
    return int(k).bit_length()


def panel_bits(k: int) -> int:
    """Codebook-index bits of the panel layout: room for K codes."""
    return int(k - 1).bit_length()


def csc_row_starts(n_rows: int, block_rows: int = CSC_BLOCK_ROWS, threads: int = 1) -> np.ndarray:
    """First row of each row block of the column layout, and n_rows at the end (int64): blocks of at most
    `block_rows` rows, as many as a multiple of `threads` (so threads share them evenly; a block may be
    empty when there are fewer rows than threads)."""
    if block_rows < 1 or threads < 1:
        raise ValueError(f"block_rows and threads must be positive, got {block_rows} and {threads}")
    blocks = max(1, -(-n_rows // block_rows))
    blocks = -(-blocks // threads) * threads
    return np.arange(blocks + 1, dtype=np.int64) * n_rows // blocks


def _column_gaps(nz: QuantizedLayer, max_gap: int, row_start: np.ndarray):
    """Order of the entries by (row block, column, row), each one's row step (zero run + 1) and the
    padding it needs, and the columns in that order."""
    rows, cols = nz.rows_cols()
    block = np.searchsorted(row_start, rows, side="right") - 1
    # the layer's CSC order sorts by (column, row), so a stable sort by block alone gives (block, column, row)
    order = np.argsort(block, kind="stable")
    rows, cols, block = rows[order], cols[order], block[order]
    runs = zero_runs(rows - row_start[block], block * nz.matrix_shape[1] + cols)
    pads = padding_entries(runs, max_gap)
    return order, block, runs + 1, pads, cols


def _max_gap(k: int) -> int:
    return (1 << (ENTRY_BITS - csc_bits(k))) - 1


def csc_padding(nz: QuantizedLayer, block_rows: int = CSC_BLOCK_ROWS, threads: int = 1) -> int:
    """Padding entries the column layout of `nz` needs."""
    row_start = csc_row_starts(nz.matrix_shape[0], block_rows, threads)
    return int(_column_gaps(nz, _max_gap(nz.codebook.shape[0]), row_start)[3].sum())


def build_csc(nz: QuantizedLayer, block_rows: int = CSC_BLOCK_ROWS, threads: int = 1) -> CscLayout:
    """The column layout of `nz`, in row blocks of at most `block_rows` rows, a multiple of `threads` of them."""
    k = nz.codebook.shape[0]
    bits, max_gap = csc_bits(k), _max_gap(k)
    row_start = csc_row_starts(nz.matrix_shape[0], block_rows, threads)
    order, block, step, pads, cols = _column_gaps(nz, max_gap, row_start)
    last_step = step - pads * max_gap
    slots = np.arange(step.size) + np.cumsum(pads)
    entries = np.full(step.size + int(pads.sum()), (max_gap << bits) | k, np.uint16)
    entries[slots] = (last_step << bits) | nz.indices[order]
    n_cols = nz.matrix_shape[1]
    segment = block * n_cols + cols
    per_seg = np.bincount(segment, weights=1 + pads, minlength=(row_start.size - 1) * n_cols).astype(np.int64)
    col_ptr = _pointer_rows(per_seg, row_start.size - 1, n_cols)
    return CscLayout(nz.matrix_shape, nz.nnz, bits, row_start, col_ptr, entries,
                     _padded_codebook(nz.codebook, bits))


def build_panel(nz: QuantizedLayer, width: int | None = None) -> PanelLayout:
    """The row-panel layout of `nz` in panels `width` columns wide (at most, and by default, 2**(16 - bits))."""
    n_rows = nz.matrix_shape[0]
    bits = panel_bits(nz.codebook.shape[0])
    width = _panel_width(nz, width)
    n_panels = predicted_panels(nz, width)
    rows, cols = nz.rows_cols()
    panel = cols // width
    order = np.lexsort((cols, rows, panel))
    entries = (((cols[order] - panel[order] * width) << bits) | nz.indices[order]).astype(np.uint16)
    counts = np.bincount(panel * n_rows + rows, minlength=n_panels * n_rows)
    ptr = _pointer_rows(counts, n_panels, n_rows)
    return PanelLayout(nz.matrix_shape, nz.nnz, bits, width, ptr, entries, _padded_codebook(nz.codebook, bits))


def build_grouped(nz: QuantizedLayer) -> GroupedLayout:
    """The centroid-grouped row layout of `nz` (needs at most 65535 columns)."""
    n_rows, n_cols = nz.matrix_shape
    if n_cols > 0xFFFF:
        raise ValueError(f"the grouped layout holds at most 65535 columns, got {n_cols}")
    k = nz.codebook.shape[0]
    rows, cols = nz.rows_cols()
    codes = nz.indices.astype(np.int64)
    order = np.lexsort((cols, codes, rows))
    counts = np.bincount(rows * k + codes, minlength=n_rows * k).astype(np.uint16).reshape(n_rows, k)
    row_ptr = _pointers(np.bincount(rows, minlength=n_rows))
    return GroupedLayout(nz.matrix_shape, nz.nnz, row_ptr, counts, cols[order].astype(np.uint16),
                         nz.codebook.copy())


def _panel_width(nz: QuantizedLayer, width: int | None) -> int:
    widest = 1 << (ENTRY_BITS - panel_bits(nz.codebook.shape[0]))
    if width is not None and width < 1:
        raise ValueError(f"panel width must be positive, got {width}")
    return widest if width is None else min(int(width), widest)


def predicted_panels(nz: QuantizedLayer, width: int | None = None) -> int:
    """Number of column panels build_panel(nz, width) makes."""
    return max(1, -(-nz.matrix_shape[1] // _panel_width(nz, width)))


def predicted_bytes(nz: QuantizedLayer, name: str, width: int | None = None, threads: int = 1) -> int:
    """Bytes of entries plus pointers of the 'csc' or 'panel' layout of `nz` (panels `width` wide, as
    in build_panel), without building it."""
    n_rows, n_cols = nz.matrix_shape
    if name == "csc":
        blocks = csc_row_starts(n_rows, threads=threads).size - 1
        return 2 * (nz.nnz + csc_padding(nz, threads=threads)) + 4 * blocks * (n_cols + 1) + 8 * (blocks + 1)
    if name == "panel":
        return 2 * nz.nnz + 4 * predicted_panels(nz, width) * (n_rows + 1)
    raise ValueError(f"no size prediction for layout {name!r}")


BUILDERS = {"csc": build_csc, "panel": build_panel, "grouped": build_grouped}
