"""Build the one sparse-layer type (deepcompress.format.QuantizedLayer) from the inputs the runtime's
own API takes: row-major positions, or a dense quantized matrix. The runtime's layouts read a layer's
`rows_cols()`, `indices` and `codebook` directly; nothing is re-encoded."""

from __future__ import annotations

import numpy as np

from ..format.layer import LayerError, QuantizedLayer

MAX_CODEBOOK = 256
NAME = "weights"


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


def _check_shape(shape) -> tuple[int, int]:
    if len(shape) != 2 or min(int(shape[0]), int(shape[1])) < 0:
        raise ValueError(f"shape must be (rows, cols) with non-negative sizes, got {shape!r}")
    return int(shape[0]), int(shape[1])


def from_positions(shape, positions, codes, codebook) -> QuantizedLayer:
    """A (rows x cols) layer from flat row-major positions (unique, any order), one codebook index per
    position, and the codebook."""
    shape = _check_shape(shape)
    cb = _check_codebook(codebook)
    pos, idx = np.asarray(positions), np.asarray(codes)
    if idx.size and np.issubdtype(idx.dtype, np.integer) and (idx.min() < 0 or idx.max() >= cb.shape[0]):
        raise ValueError(f"a codebook index lies outside 0..{cb.shape[0] - 1}")
    try:
        return QuantizedLayer.from_rowmajor(NAME, shape, pos, idx, cb, kind="fc")
    except LayerError as err:
        raise (TypeError if "integers" in str(err) else ValueError)("; ".join(err.problems)) from None


def from_dense(weights, codebook) -> QuantizedLayer:
    """A layer from a dense quantized matrix whose nonzero values all appear in the codebook."""
    w = np.asarray(weights)
    if w.ndim != 2:
        raise ValueError(f"weights must be 2-D, got shape {w.shape}")
    if not np.issubdtype(w.dtype, np.floating):
        raise TypeError(f"weights must be floating point, got {w.dtype}")
    _check_shape(w.shape)
    cb = _check_codebook(codebook)
    try:
        return QuantizedLayer.from_dense(NAME, "fc", w.astype(np.float32), cb)
    except ValueError:
        raise ValueError("a nonzero weight is not a codebook value") from None
