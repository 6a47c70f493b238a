"""The neutral description of a pruned, weight-shared matrix that every runtime layout is built from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_CODEBOOK = 256


@dataclass(frozen=True)
class Nonzeros:
    """A (rows x cols) matrix given by its nonzeros: positions, one codebook index each, and the codebook.

    rows, cols and codes are int64 arrays of equal length in row-major order of position; the weight at
    (rows[k], cols[k]) is codebook[codes[k]]. codebook is float32 with 1 to 256 entries.
    """

    shape: tuple[int, int]
    rows: np.ndarray
    cols: np.ndarray
    codes: np.ndarray
    codebook: np.ndarray

    @property
    def nnz(self) -> int:
        """Number of stored nonzeros."""
        return int(self.rows.shape[0])

    @property
    def density(self) -> float:
        """Stored nonzeros over rows x cols (0 for an empty shape)."""
        total = self.shape[0] * self.shape[1]
        return self.nnz / total if total else 0.0

    def to_dense(self) -> np.ndarray:
        """The float32 matrix these nonzeros describe."""
        dense = np.zeros(self.shape, np.float32)
        dense[self.rows, self.cols] = self.codebook[self.codes]
        return dense


def _check_shape(shape) -> tuple[int, int]:
    if len(shape) != 2 or min(int(shape[0]), int(shape[1])) < 0:
        raise ValueError(f"shape must be (rows, cols) with non-negative sizes, got {shape!r}")
    return int(shape[0]), int(shape[1])


def _check_codebook(codebook) -> np.ndarray:
    cb = np.asarray(codebook)
    if cb.ndim != 1 or not 1 <= cb.shape[0] <= MAX_CODEBOOK:
        raise ValueError(f"codebook must be 1-D with 1..{MAX_CODEBOOK} entries, got shape {cb.shape}")
    if not np.issubdtype(cb.dtype, np.floating):
        raise TypeError(f"codebook must be floating point, got {cb.dtype}")
    cb = cb.astype(np.float32)
    if not np.all(np.isfinite(cb)):
        raise ValueError("codebook has NaN or infinite entries")
    return cb


def from_positions(shape, positions, codes, codebook) -> Nonzeros:
    """Nonzeros from flat row-major positions (unique, any order) and one codebook index per position."""
    rows_n, cols_n = _check_shape(shape)
    cb = _check_codebook(codebook)
    pos = np.asarray(positions)
    idx = np.asarray(codes)
    if pos.ndim != 1 or idx.shape != pos.shape:
        raise ValueError(f"positions and codes must be 1-D of equal length, got {pos.shape} and {idx.shape}")
    if pos.size and not (np.issubdtype(pos.dtype, np.integer) and np.issubdtype(idx.dtype, np.integer)):
        raise TypeError(f"positions and codes must be integers, got {pos.dtype} and {idx.dtype}")
    pos = pos.astype(np.int64)
    idx = idx.astype(np.int64)
    if pos.size:
        if pos.min() < 0 or pos.max() >= rows_n * cols_n:
            raise ValueError(f"a position lies outside the {rows_n}x{cols_n} matrix")
        if idx.min() < 0 or idx.max() >= cb.shape[0]:
            raise ValueError(f"a codebook index lies outside 0..{cb.shape[0] - 1}")
    order = np.argsort(pos, kind="stable")
    pos = pos[order]
    if pos.size > 1 and np.any(pos[1:] == pos[:-1]):
        raise ValueError("positions repeat")
    rows, cols = np.divmod(pos, cols_n) if cols_n else (pos, pos)
    return Nonzeros((rows_n, cols_n), rows, cols, idx[order], cb)


def from_dense(weights, codebook) -> Nonzeros:
    """Nonzeros of a dense quantized matrix whose nonzero values all appear in the codebook."""
    w = np.asarray(weights)
    if w.ndim != 2:
        raise ValueError(f"weights must be 2-D, got shape {w.shape}")
    if not np.issubdtype(w.dtype, np.floating):
        raise TypeError(f"weights must be floating point, got {w.dtype}")
    cb = _check_codebook(codebook)
    w32 = w.astype(np.float32)
    pos = np.flatnonzero(w32)
    values = w32.ravel()[pos]
    order = np.argsort(cb, kind="stable")
    where = np.searchsorted(cb[order], values).clip(0, cb.shape[0] - 1)
    codes = order[where]
    if not np.array_equal(cb[codes], values):
        raise ValueError("a nonzero weight is not a codebook value")
    return from_positions(w.shape, pos, codes, cb)
