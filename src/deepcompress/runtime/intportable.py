"""Portable integer kernels of the int8/int16 modes: the integer arithmetic written out as numba loops,
bit-identical to the C paths (intkernels.py, _lut.c), and the helpers both use to quantize inputs and turn
integer sums into float outputs. Layouts as described in _lut.c."""

from __future__ import annotations

import numpy as np
from numba import njit

from .quantize import quantize_into


@njit(cache=True, nogil=True)
def decode(store, mask, nibble, table, out):
    """out[:] = the integer weights of one coded vector (layout in _lut.c): 4-bit codes into `table`,
    zero where `mask` (when it has entries) has a clear bit; or the stored weights themselves."""
    if not nibble:
        for j in range(out.shape[0]):
            out[j] = store[j]
        return
    for c in range(out.shape[0] // 32):
        for i in range(16):
            b = np.int64(store[16 * c + i])
            out[32 * c + i] = table[b & 15]
            out[32 * c + 16 + i] = table[b >> 4]
    if mask.shape[0] > 0:
        for j in range(out.shape[0]):
            if (mask[j >> 3] >> (j & 7)) & 1 == 0:
                out[j] = 0


@njit(cache=True, nogil=True)
def rows_portable(store, mask, nibble, table, x, acc):
    """acc[r] = sum_j W[r, j] x[j] for a row layout (store and mask: one coded vector per row)."""
    w = np.empty(x.shape[0], np.int64)
    for r in range(store.shape[0]):
        decode(store[r], mask[r], nibble, table, w)
        s = np.int64(0)
        for j in range(x.shape[0]):
            s += w[j] * np.int64(x[j])
        acc[r] = s


@njit(cache=True, nogil=True)
def rows_packed_portable(store, table, x, acc):
    """acc[r] = sum_j W[r, j] x[j] for the packed 6-bit row layout (row r: 3 bytes per 4 codes)."""
    for r in range(store.shape[0]):
        s = np.int64(0)
        for g in range(x.shape[0] // 4):
            bits = (np.int64(store[r, 3 * g]) | np.int64(store[r, 3 * g + 1]) << 8
                    | np.int64(store[r, 3 * g + 2]) << 16)
            for k in range(4):
                s += np.int64(table[(bits >> (6 * k)) & 63]) * np.int64(x[4 * g + k])
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
def cols_portable(store, mask, nibble, table, nzcols, n, x, acc):
    """acc[r] = sum over the n columns nzcols[:n] of W[r, j] x[j] (one coded vector per column)."""
    acc[:] = 0
    w = np.empty(acc.shape[0], np.int64)
    for k in range(n):
        j = nzcols[k]
        decode(store[j], mask[j], nibble, table, w)
        xj = np.int64(x[j])
        for r in range(acc.shape[0]):
            acc[r] += w[r] * xj


@njit(cache=True, nogil=True)
def blocks_portable(store, x, acc):
    """acc[:] = W x for the 64-row block layout (intblocks.BlocksLayout; store (blocks, cols, 64))."""
    acc[:] = 0
    for j in range(store.shape[1]):
        xj = np.int64(x[j])
        if xj == 0:
            continue
        for b in range(store.shape[0]):
            for r in range(64):
                acc[64 * b + r] += np.int64(store[b, j, r]) * xj


@njit(cache=True, nogil=True)
def quads_portable(store, x, acc):
    """acc[:] = W x for the quad-interleaved block layout (intblocks.QuadsLayout; store
    (blocks, groups, 64, 4))."""
    acc[:] = 0
    for g in range(store.shape[1]):
        for i in range(4):
            xj = np.int64(x[4 * g + i])
            if xj == 0:
                continue
            for b in range(store.shape[0]):
                for r in range(64):
                    acc[64 * b + r] += np.int64(store[b, g, r, i]) * xj


@njit(cache=True, nogil=True)
def rowquads_portable(row_ptr, qcols, qw, xt, acc):
    """acc[r, l] = sum_j W[r, j] xt[j, l] for the row-quad layout (introwquads.RowQuadsLayout)."""
    acc[:] = 0
    for r in range(row_ptr.shape[0] - 1):
        for q in range(row_ptr[r], row_ptr[r + 1]):
            for i in range(4):
                w = np.int64(qw[q, i])
                xr = xt[np.int64(qcols[q, i])]
                for lane in range(xt.shape[1]):
                    acc[r, lane] += w * np.int64(xr[lane])


@njit(cache=True, nogil=True)
def panelquads_portable(row_ptr, offsets, qw, panel_cols, panel_lanes, xt, acc):
    """acc[r, l] = sum_j W[r, j] xt[j, l] for the panel-quad layout (introwquads.PanelQuadsLayout):
    row r's quads in panel p are row_ptr[p * rows + r] .. + 1, their columns' byte offsets in the panel
    `offsets` (column offset x panel_lanes)."""
    acc[:] = 0
    rows = acc.shape[0]
    panels = (row_ptr.shape[0] - 1) // max(rows, 1)
    for p in range(panels):
        for r in range(rows):
            for q in range(row_ptr[p * rows + r], row_ptr[p * rows + r + 1]):
                for i in range(4):
                    w = np.int64(qw[q, i])
                    xr = xt[p * panel_cols + np.int64(offsets[q, i]) // panel_lanes]
                    for lane in range(xt.shape[1]):
                        acc[r, lane] += w * np.int64(xr[lane])


@njit(cache=True, nogil=True)
def finish_transposed(acc, scale_w, scales, bias, y):
    """y[i, r] = float32(float64(acc[r, i]) * (scale_w * scales[i])) + bias[r] (finish, lanes of acc)."""
    for i in range(y.shape[0]):
        scale = scale_w * scales[i]
        for r in range(y.shape[1]):
            y[i, r] = np.float32(np.float64(acc[r, i]) * scale) + bias[r]


@njit(cache=True, nogil=True)
def quantize_rows(x, qmax, xq, scales):
    """xq[i, :len(x[i])] = q_x of each row x[i] and scales[i] = its s_x (quantize_into per row)."""
    for i in range(x.shape[0]):
        scales[i] = quantize_into(x[i], qmax, xq[i])


@njit(cache=True, nogil=True)
def finish_rows(acc, scale_w, scales, bias, y):
    """y[i] = finish(acc[i], scale_w * scales[i], bias) for each row i."""
    for i in range(y.shape[0]):
        finish(acc[i], scale_w * scales[i], bias, y[i])


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
def csc_abs_portable(col_ptr, entries, table, code_bits, x, acc):
    """acc[:rows] = W x for the csc-abs layout (intcsc.AbsCscLayout; col_ptr (blocks, cols + 1)),
    zero inputs skipped: the integers of dc_csc8_avx2."""
    acc[:] = 0
    mask = (1 << code_bits) - 1
    block_rows = 1 << (16 - code_bits)
    for b in range(col_ptr.shape[0]):
        ptr = col_ptr[b]
        base = b * block_rows
        for j in range(x.shape[0]):
            xj = np.int64(x[j])
            if xj == 0:
                continue
            for k in range(ptr[j], ptr[j + 1]):
                e = np.int64(entries[k])
                acc[base + (e >> code_bits)] += np.int64(table[e & mask]) * xj


@njit(cache=True, nogil=True)
def finish(acc, scale, bias, y, relu=False):
    """y = float32(float64(acc) * scale) + bias (quantize.dequantize, elementwise); with `relu` then
    max(y, 0) (a following ReLU op fused in: NaN stays NaN, a zero becomes +0)."""
    for r in range(y.shape[0]):
        y[r] = np.float32(np.float64(acc[r]) * scale) + bias[r]
    if relu:
        for r in range(y.shape[0]):
            if y[r] <= 0.0:
                y[r] = 0.0
