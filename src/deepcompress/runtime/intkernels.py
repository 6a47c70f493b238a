"""Integer kernels of the int8/int16 modes: portable numba loops and, where built and supported, SIMD C.

Each kernel sets acc (int32 in int8 mode, int64 in int16 mode) to exact integer sums of products of
quantized weights and a quantized input (quantize.py), so every path gives the same integers:

- 'portable': numba scalar loops, always there.
- 'avx2': _lut.c with AVX2 (vpshufb table lookup on 4-bit codes, vpmaddubsw / vpmaddwd sums).
- 'vnni': _lut.c with AVX-512 VNNI (vpdpbusd) for the int8 row kernel, AVX2 for the rest.

The C kernels are an extension module compiled by pip at set-up (setup.py), loaded here with ctypes and
called from numba without Python in between; the CPU's features are read at run time (cpuid through
gcc's __builtin_cpu_supports). Without the module the portable path is used, after a one-line warning.
"""

from __future__ import annotations

import ctypes
import importlib.util
import warnings

import numpy as np
from numba import njit

PATHS = ("portable", "avx2", "vnni")
_F_AVX2, _F_VNNI = 1, 2


def _load():
    spec = importlib.util.find_spec("deepcompress.runtime._lut")
    if spec is None or spec.origin is None:
        warnings.warn("deepcompress: SIMD kernels not built (no C compiler at set-up?); "
                      "int8/int16 run on the portable kernels", RuntimeWarning, stacklevel=3)
        return None
    return ctypes.CDLL(spec.origin)


def _bind(lib, name, *argtypes):
    fn = getattr(lib, name)
    fn.argtypes, fn.restype = list(argtypes), None
    return fn


LIB = _load()
FEATURES = 0
if LIB is not None:
    LIB.dc_features.restype = ctypes.c_int
    FEATURES = int(LIB.dc_features())


def available_paths() -> tuple[str, ...]:
    """The dispatch paths this machine can run, fastest last."""
    paths = ["portable"]
    if FEATURES & _F_AVX2:
        paths.append("avx2")
    if FEATURES & _F_VNNI and FEATURES & _F_AVX2:
        paths.append("vnni")
    return tuple(paths)


def best_path() -> str:
    """The fastest dispatch path available here."""
    return available_paths()[-1]


# ---- portable kernels (the integer arithmetic written out; bit-identical to the C paths) ----

@njit(cache=True, nogil=True)
def rows_nibble(codes, table, x, acc):
    """acc[r] = sum_j table[code(r, j)] x[j] for 4-bit codes (layout in _lut.c), chunk c of 32 columns."""
    for r in range(codes.shape[0]):
        s = np.int64(0)
        row = codes[r]
        for c in range(row.shape[0] // 16):
            for i in range(16):
                b = np.int64(row[16 * c + i])
                s += np.int64(table[b & 15]) * np.int64(x[32 * c + i])
                s += np.int64(table[b >> 4]) * np.int64(x[32 * c + 16 + i])
        acc[r] = s


@njit(cache=True, nogil=True)
def rows_stored(weights, x, acc):
    """acc[r] = sum_j weights[r, j] x[j] (integer weights stored row-major)."""
    for r in range(weights.shape[0]):
        s = np.int64(0)
        row = weights[r]
        for j in range(row.shape[0]):
            s += np.int64(row[j]) * np.int64(x[j])
        acc[r] = s


@njit(cache=True, nogil=True)
def nonzero_columns(x, out):
    """Indices of the nonzero entries of x written to out; returns their count."""
    n = 0
    for j in range(x.shape[0]):
        if x[j] != 0:
            out[n] = j
            n += 1
    return n


@njit(cache=True, nogil=True)
def cols_portable(weights, nzcols, n, x, acc):
    """acc[r] = sum over the n columns nzcols[:n] of weights[j, r] x[j] (column-major weights)."""
    acc[:] = 0
    for k in range(n):
        j = nzcols[k]
        xj = np.int64(x[j])
        col = weights[j]
        for r in range(col.shape[0]):
            acc[r] += np.int64(col[r]) * xj


@njit(cache=True, nogil=True)
def csc_int(col_ptr, row_start, entries, table, bits, x, acc):
    """acc = W x for the column layout (layouts.CscLayout) with an integer codebook, zero inputs skipped."""
    acc[:] = 0
    mask = (1 << bits) - 1
    for b in range(col_ptr.shape[0]):
        ptr = col_ptr[b]
        for j in range(x.shape[0]):
            xj = np.int64(x[j])
            if xj == 0:
                continue
            row = np.int64(row_start[b]) - 1
            for k in range(ptr[j], ptr[j + 1]):
                e = np.int64(entries[k])
                row += e >> bits
                acc[row] += np.int64(table[e & mask]) * xj


@njit(cache=True, nogil=True)
def finish(acc, scale, bias, y):
    """y = float32(float64(acc) * scale) + bias (quantize.dequantize, elementwise)."""
    for r in range(y.shape[0]):
        y[r] = np.float32(np.float64(acc[r]) * scale) + bias[r]


# ---- SIMD kernels through ctypes, called from numba ----

if LIB is not None:
    _P, _I64, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    _rows8_avx2 = _bind(LIB, "dc_rows8_avx2", _P, _INT, _P, _I64, _I64, _I64, _P, _P)
    _rows8_vnni = _bind(LIB, "dc_rows8_vnni", _P, _INT, _P, _I64, _I64, _I64, _P, _P)
    _rows16_avx2 = _bind(LIB, "dc_rows16_avx2", _P, _INT, _P, _I64, _I64, _I64, _P, _P)
    _cols8_avx2 = _bind(LIB, "dc_cols8_avx2", _P, _I64, _P, _I64, _P, _P)

    @njit(cache=False, nogil=True)
    def rows8_simd(vnni, store, nibble, table, chunks, x, acc):
        """dc_rows8_* on a (rows, bytes) code or weight array `store`."""
        if vnni:
            _rows8_vnni(store.ctypes, nibble, table.ctypes, store.shape[0], chunks, store.shape[1],
                        x.ctypes, acc.ctypes)
        else:
            _rows8_avx2(store.ctypes, nibble, table.ctypes, store.shape[0], chunks, store.shape[1],
                        x.ctypes, acc.ctypes)

    @njit(cache=False, nogil=True)
    def rows16_simd(store, nibble, tables, chunks, stride, x, acc):
        """dc_rows16_avx2; stride in bytes."""
        _rows16_avx2(store.ctypes, nibble, tables.ctypes, store.shape[0], chunks, stride, x.ctypes, acc.ctypes)

    @njit(cache=False, nogil=True)
    def cols8_simd(weights, nzcols, n, x, acc):
        """dc_cols8_avx2 on column-major int8 weights (cols, rows_pad)."""
        _cols8_avx2(weights.ctypes, weights.shape[1], nzcols.ctypes, n, x.ctypes, acc.ctypes)
