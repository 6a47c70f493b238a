"""The integer arithmetic of the runtime's int8 and int16 modes, and its plain numpy reference.

Both modes are symmetric (no zero point), with round-half-to-even and saturation at +-QMAX:

- codebook (once per layer): s_w = max|c| / QMAX (float64; 1 when the codebook is all zero) and
  q_c = clip(rint(c / s_w), -QMAX, QMAX), computed in float64 from the float32 codebook.
- activations (per input vector, at run time): m = max|x| (float32); inv = float32(QMAX) / m in
  float32; q_x = clip(rint(x * inv), -QMAX, QMAX) in float32; s_x = float64(m) / QMAX (0 when m = 0).
  Negative inputs (layers not after a ReLU, e.g. the first layer of a model fed raw values) use the
  same signed range, so nothing is special-cased; after a ReLU every q_x is in 0..QMAX.
- accumulation: acc = sum_j q_w[r, j] q_x[j], exact (int32 in int8 mode: at most MAX_COLS_INT8
  inputs, so 127 * 127 * cols < 2^31; int64 in int16 mode).
- output: y = float32(float64(acc) * (s_w * s_x)) + bias (float32 add).

QMAX is 127 for int8 (so a post-ReLU activation uses 7 bits: |x| times a sign-adjusted weight stays
inside vpmaddubsw's int16 pairs without saturating) and 32767 for int16 (4-bit codes decoded to 16-bit
weights, 16-bit activations: the talk's mixed precision).
"""

from __future__ import annotations

import numpy as np
from numba import njit

QMAX = {"int8": 127, "int16": 32767}
PRECISIONS = ("fp32", "int8", "int16")
MAX_COLS_INT8 = ((1 << 31) - 1) // (127 * 127)


def check_precision(precision: str) -> str:
    """`precision` if it is one of PRECISIONS; ValueError otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision


def int_dtype(precision: str):
    """numpy dtype of quantized weights and activations."""
    return np.int8 if precision == "int8" else np.int16


def quantize_codebook(codebook: np.ndarray, precision: str) -> tuple[np.ndarray, float]:
    """(q_c, s_w): the codebook as integers of the mode's dtype and its scale (see the module docstring)."""
    c = np.asarray(codebook, np.float32).astype(np.float64)
    qmax = QMAX[precision]
    peak = float(np.abs(c).max()) if c.size else 0.0
    scale = peak / qmax if peak > 0 else 1.0
    q = np.clip(np.rint(c / scale), -qmax, qmax).astype(int_dtype(precision))
    return q, scale


@njit(cache=True, nogil=True)
def quantize_into(x, qmax, out):
    """out[:len(x)] = q_x of float32 x (module docstring), the rest of out untouched; returns s_x."""
    m = np.float32(0.0)
    for i in range(x.shape[0]):
        a = abs(x[i])
        if a > m:
            m = a
    if m == 0.0:
        for i in range(x.shape[0]):
            out[i] = 0
        return 0.0
    inv = np.float32(qmax) / m
    lim = np.float32(qmax)
    for i in range(x.shape[0]):
        v = np.rint(x[i] * inv)
        out[i] = min(max(v, -lim), lim)
    return np.float64(m) / qmax


def quantize_vector(x: np.ndarray, precision: str) -> tuple[np.ndarray, float]:
    """(q_x, s_x) of one float32 vector, in plain numpy (the reference of quantize_into)."""
    x = np.asarray(x, np.float32)
    qmax = QMAX[precision]
    m = np.float32(np.abs(x).max()) if x.size else np.float32(0)
    if m == 0:
        return np.zeros(x.shape, int_dtype(precision)), 0.0
    inv = np.float32(qmax) / m
    q = np.clip(np.rint(x * inv), -qmax, qmax).astype(int_dtype(precision))
    return q, float(np.float64(m) / qmax)


def dequantize(acc: np.ndarray, scale: float, bias: np.ndarray) -> np.ndarray:
    """float32(acc * scale) + bias, scale = s_w * s_x."""
    return (acc.astype(np.float64) * scale).astype(np.float32) + bias


def reference_forward(layer, bias: np.ndarray | None, x: np.ndarray, precision: str) -> np.ndarray:
    """The int8/int16 output of a QuantizedLayer for x (in,) or (N, in), from a dense int64 matrix of
    quantized weights (bias None: none): the numpy reference every integer kernel must match bit for bit."""
    q_c, s_w = quantize_codebook(layer.codebook, precision)
    rows, cols = layer.rows_cols()
    w = np.zeros(layer.matrix_shape, np.int64)
    w[rows, cols] = q_c[layer.indices]
    x2 = np.atleast_2d(np.asarray(x, np.float32))
    out = np.empty((x2.shape[0], layer.matrix_shape[0]), np.float32)
    bias = np.zeros(layer.matrix_shape[0], np.float32) if bias is None else bias  # asarray(None) is NaN
    for i, v in enumerate(x2):
        q_x, s_x = quantize_vector(v, precision)
        out[i] = dequantize(w @ q_x.astype(np.int64), s_w * s_x, np.asarray(bias, np.float32))
    return out if np.ndim(x) == 2 else out[0]
