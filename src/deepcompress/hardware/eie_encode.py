"""EIE's storage of a weight matrix: interleaved CSC over N PEs with relative row indices.

Row i belongs to PE i mod N, at local row i // N. Within one PE's slice of a column, each nonzero is
stored as a weight index plus the number of zeros before it (its gap) in `index_bits` bits; a gap too
large for the field is bridged by padding zeros (an entry with weight index 0), one per 2^index_bits
skipped rows. A PE's column pointer marks where its entries for that column start.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp

from ..errors import UserError


@numba.njit(cache=True)
def _count_entries(indptr, indices, num_pes, span):  # pragma: no cover - compiled
    ncols = indptr.shape[0] - 1
    nnz = np.zeros((ncols, num_pes), dtype=np.int32)
    pad = np.zeros((ncols, num_pes), dtype=np.int32)
    last = np.empty(num_pes, dtype=np.int64)
    for c in range(ncols):
        last[:] = -1
        for k in range(indptr[c], indptr[c + 1]):
            r = indices[k]
            p = r % num_pes
            local = r // num_pes
            pad[c, p] += (local - last[p] - 1) // span
            nnz[c, p] += 1
            last[p] = local
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


def encode(matrix, num_pes: int, index_bits: int = 4) -> InterleavedCSC:
    """Count nonzeros and padding zeros of `matrix` (rows = outputs) per column and PE in EIE's layout."""
    if num_pes < 1:
        raise UserError(f"need at least one PE, got {num_pes}")
    if not 1 <= index_bits <= 16:
        raise UserError(f"relative index width must be 1..16 bits, got {index_bits}")
    csc = as_csc(matrix)
    nnz, pad = _count_entries(csc.indptr.astype(np.int64), csc.indices.astype(np.int64),
                              num_pes, 2 ** index_bits)
    return InterleavedCSC(num_pes, index_bits, csc.shape, nnz, pad)
