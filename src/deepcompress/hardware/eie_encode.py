"""EIE's storage of a weight matrix: interleaved CSC over N PEs with relative row indices, counted from
the one sparse-layer type (deepcompress.format.QuantizedLayer) without re-encoding it.

Row i belongs to PE i mod N, at local row i // N (QuantizedLayer.interleaved). Within one PE's slice of
a column, each nonzero is stored as a weight index plus the number of zeros before it in `index_bits`
bits; a longer run is bridged by padding zeros, one per 2^index_bits skipped rows (the rule and how it
differs from the file's own gap stream: format/relindex.py). A PE's column pointer marks where its
entries for that column start.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp

from ..errors import UserError
from ..format.layer import CscView, PeSlices, QuantizedLayer
from ..format.relindex import padding_entries
from .tech import EIE_INDEX_BITS


@numba.njit(cache=True)
def _pe_zero_runs(indptr, local, pe, num_pes):  # pragma: no cover - compiled
    """Zeros before each entry within its PE's slice of its column (format.relindex.zero_runs per
    (column, PE) segment, without sorting the entries by PE first)."""
    runs = np.empty(local.shape[0], dtype=np.int64)
    last = np.empty(num_pes, dtype=np.int64)
    for c in range(indptr.shape[0] - 1):
        last[:] = -1
        for k in range(indptr[c], indptr[c + 1]):
            p = pe[k]
            runs[k] = local[k] - last[p] - 1
            last[p] = local[k]
    return runs


@numba.njit(cache=True)
def _per_segment(indptr, pe, pads, num_pes):  # pragma: no cover - compiled
    """Entries and padding zeros per (column, PE)."""
    ncols = indptr.shape[0] - 1
    nnz = np.zeros((ncols, num_pes), dtype=np.int32)
    pad = np.zeros((ncols, num_pes), dtype=np.int32)
    for c in range(ncols):
        for k in range(indptr[c], indptr[c + 1]):
            nnz[c, pe[k]] += 1
            pad[c, pe[k]] += pads[k]
    return nnz, pad


@dataclass(frozen=True)
class InterleavedCSC:
    """Per (column, PE) counts of a matrix in EIE's layout; arrays have shape (columns, num_pes)."""

    num_pes: int
    index_bits: int
    shape: tuple[int, int]
    nonzeros: np.ndarray
    padding: np.ndarray

    @property
    def entries(self) -> np.ndarray:
        """Stored entries per (column, PE): nonzeros plus padding zeros."""
        return self.nonzeros + self.padding

    def pointers(self) -> np.ndarray:
        """Column pointers, shape (columns + 1, num_pes): PE p's entries of column c are
        pointers[c, p] .. pointers[c + 1, p] - 1 in its sparse-matrix SRAM."""
        ptr = np.zeros((self.shape[1] + 1, self.num_pes), dtype=np.int64)
        np.cumsum(self.entries, axis=0, out=ptr[1:])
        return ptr

    @property
    def total_padding(self) -> int:
        """Padding zeros in the whole matrix."""
        return int(self.padding.sum())


def as_csc(matrix) -> sp.csc_matrix:
    """`matrix` (scipy sparse or dense 2-D array) as canonical CSC: sorted rows, no duplicates, no stored zeros."""
    if sp.issparse(matrix):
        csc = sp.csc_matrix(matrix, copy=True)
    else:
        arr = np.asarray(matrix)
        if arr.ndim != 2:
            raise UserError(f"weight matrix must be 2-D, got shape {arr.shape}")
        csc = sp.csc_matrix(arr)
    if csc.nnz and not np.all(np.isfinite(csc.data)):
        raise UserError("weight matrix holds NaN or infinite values")
    csc.sum_duplicates()
    csc.eliminate_zeros()
    csc.sort_indices()
    return csc


def _interleaved(weights, num_pes: int) -> PeSlices:
    """The PE view of a QuantizedLayer as stored (a stored zero stays an entry), or of a matrix's nonzeros."""
    if isinstance(weights, QuantizedLayer):
        return weights.interleaved(num_pes)
    csc = as_csc(weights)
    rows = csc.indices.astype(np.int64)
    view = CscView(csc.shape, csc.indptr.astype(np.int64), rows, np.zeros(rows.size, np.uint8),
                   np.zeros(1, np.float32))
    return PeSlices(view, num_pes)


def encode(weights, num_pes: int, index_bits: int = EIE_INDEX_BITS) -> InterleavedCSC:
    """Count nonzeros and padding zeros per column and PE in EIE's layout, for a QuantizedLayer (rows =
    outputs of its 2-D view) or a scipy sparse / dense matrix (rows = outputs)."""
    if num_pes < 1:
        raise UserError(f"need at least one PE, got {num_pes}")
    if not 1 <= index_bits <= 16:
        raise UserError(f"relative index width must be 1..16 bits, got {index_bits}")
    view = _interleaved(weights, num_pes)
    pe = view.pe
    runs = _pe_zero_runs(view.csc.indptr, view.local_rows, pe, num_pes)
    nnz, pad = _per_segment(view.csc.indptr, pe, padding_entries(runs, 2 ** index_bits), num_pes)
    return InterleavedCSC(num_pes, index_bits, view.csc.shape, nnz, pad)
