"""exp of non-positive float32 values in compiled loops the compiler vectorises.

numpy's float32 exp took 2.5 ns a value on this 2-core AMD machine (0.5 ms on all-MiniLM-L6-v2's
128 x 1536 FFN activations, as much again in every softmax) where torch takes under 1 ns. The softmax (after
subtracting the row maximum) and the GELU's exp(-z^2) only need x <= 0: k = round(x / ln 2),
r = x - k ln 2 (Cody & Waite's two-part ln 2, exact for |k| <= 126), exp(r) by its Taylor polynomial of
degree 7 (truncation below 6e-9 on |r| <= ln 2 / 2), times 2^k built from its exponent bits. Relative error
a few float32 ulps (tests/test_runtime_rows.py compares with numpy's exp); below -87.3 (where exp(x) is under
float32's smallest normal, 1.2e-38) the result is 0 (exp(-inf) = 0), NaN stays NaN.
"""

from __future__ import annotations

import numpy as np
from numba import njit

LOG2E = np.float32(1.4426950408889634)
LN2_HI = np.float32(0.693359375)  # 355 / 512: k * LN2_HI is exact in float32 for |k| < 2^15
LN2_LO = np.float32(-2.12194440e-4)
LOWEST = np.float32(-87.3)  # exp below it: under float32's smallest normal number
_C = tuple(np.float32(1.0 / f) for f in (1, 1, 2, 6, 24, 120, 720, 5040))


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def exp_parts(v):
    """(p, bits) with exp(v) = p * (2^k as float32 bits `bits`) for v <= 0, v >= LOWEST; (0 or NaN, 127 << 23)
    otherwise (below LOWEST: 0; NaN: NaN)."""
    c0, c1, c2, c3, c4, c5, c6, c7 = _C
    w = max(v, LOWEST)
    k = np.floor(w * LOG2E + np.float32(0.5))
    r = (w - k * LN2_HI) - k * LN2_LO
    p = c0 + r * (c1 + r * (c2 + r * (c3 + r * (c4 + r * (c5 + r * (c6 + r * c7))))))
    p = p if v >= LOWEST else np.float32(0.0)
    p = p if v == v else v  # NaN fails the test above too
    return p, (np.int32(k) + np.int32(127)) << np.int32(23)


@njit(cache=True, nogil=True, error_model="numpy")
def _parts_into(x, out, bits):
    for i in range(x.shape[0]):
        out[i], bits[i] = exp_parts(x[i])


@njit(cache=True, nogil=True, error_model="numpy")
def scale(p, bits):
    """p[i] *= the float32 whose bits are bits[i] (1-D)."""
    factor = bits.view(np.float32)
    for i in range(p.shape[0]):
        p[i] *= factor[i]


def exp_nonpositive(x: np.ndarray) -> np.ndarray:
    """exp(x), a new float32 array, for float32 x <= 0 (positive values give wrong results: callers
    guarantee x <= 0)."""
    # always a new array: a loop whose output argument may overlap an input argument (x) runs
    # unvectorised (the compiler's overlap check fails), 5x slower
    x = np.ascontiguousarray(x, dtype=np.float32)
    flat = x.reshape(-1)
    p, bits = np.empty_like(flat), np.empty(flat.shape[0], np.int32)
    _parts_into(flat, p, bits)
    scale(p, bits)
    return p.reshape(x.shape)
