"""Compact runtime layouts of a sparse weight-shared matrix, built once at load time.

Each nonzero is one 16-bit entry: the codebook index in the low `bits` bits and a position field in
the high 16 - `bits` bits. Pointers (int32) are per column, per (panel, row) or per (row, centroid).

- `CscLayout` (EIE's format): column-major; the position field is the row gap from the previous
  nonzero of the column (from row 0 for the first). A gap larger than the field holds is bridged by
  padding entries that carry the spare codebook index `K`, whose weight is 0 (so the codebook index
  needs bit_length(K) bits). Lets the kernel skip whole columns whose input is zero.
- `PanelLayout`: row-major within column panels of width 2**(16 - bits); the position field is the
  column offset inside the panel. No padding, every nonzero costs exactly 2 bytes.
- `GroupedLayout`: row-major, a row's nonzeros grouped by centroid; 16-bit column indices, the
  centroid implied by the group (uint16 count per row and centroid). Needs cols <= 65535.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import kernels
from .nonzeros import Nonzeros

ENTRY_BITS = 16
_MAX_ENTRIES = np.iinfo(np.int32).max


def _pointers(counts: np.ndarray) -> np.ndarray:
    """int32 exclusive prefix sum (length len(counts) + 1) of per-segment entry counts."""
    total = int(counts.sum())
    if total > _MAX_ENTRIES:
        raise ValueError(f"{total} entries exceed the int32 pointers of the runtime layout")
    ptr = np.zeros(counts.shape[0] + 1, np.int32)
    np.cumsum(counts, out=ptr[1:])
    return ptr


def _padded_codebook(codebook: np.ndarray, bits: int) -> np.ndarray:
    out = np.zeros(1 << bits, np.float32)
    out[: codebook.shape[0]] = codebook
    return out


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
    col_ptr: np.ndarray
    entries: np.ndarray
    codebook: np.ndarray
    kind = "csc"

    @property
    def padding(self) -> int:
        """Padding entries inserted for row gaps too long for the position field."""
        return int(self.entries.shape[0]) - self.nnz

    def nbytes(self) -> LayoutBytes:
        """Bytes of entries, pointers and codebook."""
        return LayoutBytes(self.nnz, self.entries.nbytes, self.col_ptr.nbytes, self.codebook.nbytes)

    def matvec(self, x: np.ndarray, y: np.ndarray) -> None:
        """y += W x (float32, contiguous)."""
        kernels.csc_matvec(self.col_ptr, self.entries, self.codebook, self.bits, x, y)

    def matmat(self, xt: np.ndarray, yt: np.ndarray) -> None:
        """yt += W xt, xt of shape (cols, N), yt of shape (rows, N)."""
        kernels.csc_matmat(self.col_ptr, self.entries, self.codebook, self.bits, xt, yt)


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

    def matvec(self, x: np.ndarray, y: np.ndarray) -> None:
        """y += W x (float32, contiguous)."""
        kernels.panel_matvec(self.ptr, self.entries, self.codebook, self.bits, self.width, x, y)

    def matmat(self, xt: np.ndarray, yt: np.ndarray) -> None:
        """yt += W xt, xt of shape (cols, N), yt of shape (rows, N); fastest when N is a multiple of 8."""
        kernel = kernels.panel_matmat_vec if xt.shape[1] % kernels.LANES == 0 else kernels.panel_matmat
        kernel(self.ptr, self.entries, self.codebook, self.bits, self.width, xt, yt)


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

    def matvec(self, x: np.ndarray, y: np.ndarray) -> None:
        """y += W x (float32, contiguous)."""
        kernels.grouped_matvec(self.row_ptr, self.counts, self.cols, self.codebook, x, y)

    def matmat(self, xt: np.ndarray, yt: np.ndarray) -> None:
        """yt += W xt, xt of shape (cols, N), yt of shape (rows, N)."""
        kernels.grouped_matmat(self.row_ptr, self.counts, self.cols, self.codebook, xt, yt)


def csc_bits(k: int) -> int:
    """Codebook-index bits of the column layout: room for K codes plus the zero padding code."""
    return int(k).bit_length()


def panel_bits(k: int) -> int:
    """Codebook-index bits of the panel layout: room for K codes."""
    return int(k - 1).bit_length()


def _column_gaps(nz: Nonzeros, max_gap: int):
    """Column-major order of the nonzeros, each one's row gap, and the padding entries it needs."""
    order = np.lexsort((nz.rows, nz.cols))
    rows, cols = nz.rows[order], nz.cols[order]
    prev = np.zeros_like(rows)
    if rows.size:
        prev[1:] = rows[:-1]
        prev[np.flatnonzero(np.diff(cols)) + 1] = 0
    gap = rows - prev
    return order, gap, np.where(gap > max_gap, (gap - 1) // max_gap, 0)


def csc_padding(nz: Nonzeros) -> int:
    """Padding entries the column layout of `nz` needs."""
    max_gap = (1 << (ENTRY_BITS - csc_bits(nz.codebook.shape[0]))) - 1
    return int(_column_gaps(nz, max_gap)[2].sum())


def build_csc(nz: Nonzeros) -> CscLayout:
    """The column layout of `nz`."""
    k = nz.codebook.shape[0]
    bits = csc_bits(k)
    max_gap = (1 << (ENTRY_BITS - bits)) - 1
    order, gap, pads = _column_gaps(nz, max_gap)
    last_gap = gap - pads * max_gap
    slots = np.arange(gap.size) + np.cumsum(pads)
    entries = np.full(gap.size + int(pads.sum()), (max_gap << bits) | k, np.uint16)
    entries[slots] = (last_gap << bits) | nz.codes[order]
    per_col = np.bincount(nz.cols[order], weights=1 + pads, minlength=nz.shape[1]).astype(np.int64)
    return CscLayout(nz.shape, nz.nnz, bits, _pointers(per_col), entries, _padded_codebook(nz.codebook, bits))


def build_panel(nz: Nonzeros, width: int | None = None) -> PanelLayout:
    """The row-panel layout of `nz` in panels `width` columns wide (at most, and by default, 2**(16 - bits))."""
    n_rows = nz.shape[0]
    bits = panel_bits(nz.codebook.shape[0])
    width = _panel_width(nz, width)
    n_panels = predicted_panels(nz, width)
    panel = nz.cols // width
    order = np.lexsort((nz.cols, nz.rows, panel))
    entries = (((nz.cols[order] - panel[order] * width) << bits) | nz.codes[order]).astype(np.uint16)
    counts = np.bincount(panel * n_rows + nz.rows, minlength=n_panels * n_rows)
    flat = _pointers(counts)
    # row i of panel p spans flat[p*rows + i] .. flat[p*rows + i + 1]; keep it as a (panels, rows+1) view
    ptr = np.lib.stride_tricks.as_strided(flat, (n_panels, n_rows + 1), (n_rows * 4, 4)).copy()
    return PanelLayout(nz.shape, nz.nnz, bits, width, ptr, entries, _padded_codebook(nz.codebook, bits))


def build_grouped(nz: Nonzeros) -> GroupedLayout:
    """The centroid-grouped row layout of `nz` (needs at most 65535 columns)."""
    n_rows, n_cols = nz.shape
    if n_cols > 0xFFFF:
        raise ValueError(f"the grouped layout holds at most 65535 columns, got {n_cols}")
    k = nz.codebook.shape[0]
    order = np.lexsort((nz.cols, nz.codes, nz.rows))
    counts = np.bincount(nz.rows * k + nz.codes, minlength=n_rows * k).astype(np.uint16).reshape(n_rows, k)
    row_ptr = _pointers(np.bincount(nz.rows, minlength=n_rows))
    return GroupedLayout(nz.shape, nz.nnz, row_ptr, counts, nz.cols[order].astype(np.uint16),
                         nz.codebook.copy())


def _panel_width(nz: Nonzeros, width: int | None) -> int:
    widest = 1 << (ENTRY_BITS - panel_bits(nz.codebook.shape[0]))
    if width is not None and width < 1:
        raise ValueError(f"panel width must be positive, got {width}")
    return widest if width is None else min(int(width), widest)


def predicted_panels(nz: Nonzeros, width: int | None = None) -> int:
    """Number of column panels build_panel(nz, width) makes."""
    return max(1, -(-nz.shape[1] // _panel_width(nz, width)))


def predicted_bytes(nz: Nonzeros, name: str, width: int | None = None) -> int:
    """Bytes of entries plus pointers of the 'csc' or 'panel' layout of `nz` (panels `width` wide, as
    in build_panel), without building it."""
    n_rows, n_cols = nz.shape
    if name == "csc":
        return 2 * (nz.nnz + csc_padding(nz)) + 4 * (n_cols + 1)
    if name == "panel":
        return 2 * nz.nnz + 4 * predicted_panels(nz, width) * (n_rows + 1)
    raise ValueError(f"no size prediction for layout {name!r}")


BUILDERS = {"csc": build_csc, "panel": build_panel, "grouped": build_grouped}
