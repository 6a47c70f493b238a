"""One sample through an FC layer in one compiled call: bias, kernel and an optional ReLU together.

At LeNet-300-100's sizes a layer's kernel runs in 1-4 us, less than the Python around it (a bias copy,
the layout's method, a numba dispatch, a separate ReLU op); these calls do the same float32 operations
in the same order as the unfused path (bias copy, layout.matvec, then the ReLU), so the outputs are
the same numbers (README, end to end).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import kernels, layouts


@njit(cache=True, nogil=True)
def all_finite(x):
    """Whether every value of a C-contiguous float32 array is finite (its exponent bits not all 1)."""
    bits = x.reshape(-1).view(np.uint32)
    bad = 0
    for i in range(bits.shape[0]):  # an integer OR-reduction: vectorised, unlike a float test
        bad |= (bits[i] & 0x7F800000) == 0x7F800000
    return not bad


@njit(cache=True, nogil=True)
def copy_finite(src, dst):
    """dst[...] = src for C-contiguous float32 arrays of one shape; whether every value is finite."""
    s, d = src.reshape(-1).view(np.uint32), dst.reshape(-1).view(np.uint32)
    bad = 0
    for i in range(s.shape[0]):
        v = s[i]
        d[i] = v
        bad |= (v & 0x7F800000) == 0x7F800000
    return not bad


@njit(cache=True, nogil=True)
def relu_inplace(y):
    """y[i] = max(y[i], 0) for a 1-D float32 y (NaN stays NaN, a zero becomes +0)."""
    for i in range(y.shape[0]):
        if y[i] <= 0.0:
            y[i] = 0.0


@njit(cache=True, nogil=True)
def _copy(src, dst):
    for i in range(src.shape[0]):  # a loop: numba took 9 s to compile `dst[:] = src`
        dst[i] = src[i]


@njit(cache=True, nogil=True)
def _with_bias(bias):
    y = np.empty((1, bias.shape[0]), np.float32)
    _copy(bias, y[0])
    return y


@njit(cache=True, nogil=True)
def csc_vec(col_ptr, row_start, entries, codebook, bits, bias, relu, x):
    """(1, out) = act(W x[0] + b) on the column layout (numba kernel)."""
    y = _with_bias(bias)
    kernels.csc_matvec(col_ptr, row_start, entries, codebook, bits, x[0], y[0])
    if relu:
        relu_inplace(y[0])
    return y


if kernels.HAVE_C:
    @njit(cache=False, nogil=True)
    def csc_vec_c(col_ptr, row_start, entries, codebook, bits, bias, relu, x):
        """csc_vec with the C twin of the column kernel (bit-identical)."""
        y = _with_bias(bias)
        kernels.csc_matvec_c(col_ptr, row_start, entries, codebook, bits, x[0], y[0])
        if relu:
            relu_inplace(y[0])
        return y


@njit(cache=True, nogil=True)
def panel_vec(ptr, entries, codebook, bits, width, bias, relu, x):
    """(1, out) = act(W x[0] + b) on the row-panel layout."""
    y = _with_bias(bias)
    kernels.panel_matvec(ptr, entries, codebook, bits, width, x[0], y[0])
    if relu:
        relu_inplace(y[0])
    return y


def fp32_vec(layout, bias: np.ndarray, x: np.ndarray, relu: bool) -> np.ndarray:
    """(1, out) = act(W x[0] + b) for a one-thread SparseLinear's layout; x (1, in) float32, C-contiguous."""
    kind = type(layout)
    if kind is layouts.CscLayout:
        fn = csc_vec_c if kernels.HAVE_C and layouts.C_KERNELS else csc_vec
        return fn(layout.col_ptr, layout.row_start, layout.entries, layout.codebook, layout.bits, bias, relu, x)
    if kind is layouts.PanelLayout:
        return panel_vec(layout.ptr, layout.entries, layout.codebook, layout.bits, layout.width, bias, relu, x)
    y = bias.copy()
    layout.matvec(x[0], y)
    if relu:
        relu_inplace(y)
    return y.reshape(1, -1)


# The same calls writing into a given (out,) vector: the kernels of a compiled run of FC layers (compiled.py).

@njit(cache=True, nogil=True)
def csc_into(col_ptr, row_start, entries, codebook, bits, bias, x, y, relu):
    """y = act(W x + b) on the column layout (numba kernel), 1-D x and y."""
    _copy(bias, y)
    kernels.csc_matvec(col_ptr, row_start, entries, codebook, bits, x, y)
    if relu:
        relu_inplace(y)


if kernels.HAVE_C:
    @njit(cache=False, nogil=True)
    def csc_into_c(col_ptr, row_start, entries, codebook, bits, bias, x, y, relu):
        """csc_into with the C twin of the column kernel (bit-identical)."""
        _copy(bias, y)
        kernels.csc_matvec_c(col_ptr, row_start, entries, codebook, bits, x, y)
        if relu:
            relu_inplace(y)


@njit(cache=True, nogil=True)
def panel_into(ptr, entries, codebook, bits, width, bias, x, y, relu):
    """y = act(W x + b) on the row-panel layout, 1-D x and y."""
    _copy(bias, y)
    kernels.panel_matvec(ptr, entries, codebook, bits, width, x, y)
    if relu:
        relu_inplace(y)


def fp32_spec(layout, bias: np.ndarray):
    """(kernel, args, x index, y index) of a one-thread SparseLinear's batch-1 call, None for other layouts."""
    kind = type(layout)
    if kind is layouts.CscLayout:
        fn = csc_into_c if kernels.HAVE_C and layouts.C_KERNELS else csc_into
        return fn, (layout.col_ptr, layout.row_start, layout.entries, layout.codebook, layout.bits, bias), 6, 6
    if kind is layouts.PanelLayout:
        return panel_into, (layout.ptr, layout.entries, layout.codebook, layout.bits, layout.width, bias), 6, 6
    return None
