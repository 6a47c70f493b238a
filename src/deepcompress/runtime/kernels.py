"""Compiled inner loops for the sparse FC layouts (see layouts.py for what each array holds).

Every kernel accumulates into its output array (callers pre-fill it with the bias), works in float32,
and reads weights straight from the compact 16-bit entries: no dense weight matrix is ever formed.

Batch kernels take the input transposed, xt of shape (in, N), and write yt of shape (out, N), so the
innermost loop runs over the batch with unit stride and vectorises without gathers; the panel layout's
batch kernel for N a multiple of 8 keeps its accumulators in vector registers (simd.py).

The `*_threads` variants split the output rows among numba's threads (parallel=True, prange): every
thread writes a disjoint range of y, so results are bit-identical to the single-threaded kernels.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .intkernels import LIB
from .simd import LANES, row_block1, row_block2, row_block4, row_block8

# C twins of csc_matvec and panel_matmat_vec (_spmm.c: the same float32 operations in the same order,
# so bit-identical; measured faster here), used where the extension is built
HAVE_C = LIB is not None
# batch lanes per pass over a panel's rows in the C panel kernel (64: one pass, eight registers of sums)
PANEL_TILE = 64

# Scalar code with independent accumulators, no fastmath: measured faster here than letting LLVM
# vectorise the row loops with gather instructions, which fastmath allows (NT-We, batch 1: 124 vs
# 168 us), and it keeps the summation order fixed, so results do not depend on the host CPU.


@njit(cache=True, nogil=True)
def _csc_block(ptr, row0, entries, codebook, bits, x, y):
    """y += one row block's part of W x; ptr is that block's column pointers, row0 its first row (each
    entry steps the row forward from the one before row0)."""
    mask = (1 << bits) - 1
    for j in range(x.shape[0]):
        xj = x[j]
        if xj == 0.0:
            continue
        seg = entries[ptr[j]:ptr[j + 1]]
        row = np.int64(row0) - 1
        for k in range(seg.shape[0]):
            e = np.int64(seg[k])
            row += e >> bits
            y[row] += codebook[e & mask] * xj


@njit(cache=True, nogil=True)
def csc_matvec(col_ptr, row_start, entries, codebook, bits, x, y):
    """y += W x for the column layout, skipping columns whose input is zero (EIE's LNZD in software).

    Row block b (rows row_start[b]..row_start[b+1]) is done for all columns before block b + 1, so the
    part of y being scattered into stays in L1.
    """
    for b in range(col_ptr.shape[0]):
        _csc_block(col_ptr[b], row_start[b], entries, codebook, bits, x, y)


@njit(cache=True, nogil=True, parallel=True)
def csc_matvec_threads(col_ptr, row_start, entries, codebook, bits, x, y):
    """csc_matvec with the row blocks shared among numba's threads (each writes only its blocks' rows)."""
    for b in prange(col_ptr.shape[0]):
        _csc_block(col_ptr[b], row_start[b], entries, codebook, bits, x, y)


@njit(cache=True, nogil=True)
def csc_matmat(col_ptr, row_start, entries, codebook, bits, xt, yt):
    """yt += W xt for the column layout; a column is skipped when its input is zero for the whole batch."""
    mask = (1 << bits) - 1
    n = xt.shape[1]
    for j in range(xt.shape[0]):
        xr = xt[j]
        nonzero = False
        for q in range(n):
            if xr[q] != 0.0:
                nonzero = True
                break
        if not nonzero:
            continue
        for b in range(col_ptr.shape[0]):
            seg = entries[col_ptr[b, j]:col_ptr[b, j + 1]]
            row = np.int64(row_start[b]) - 1
            for k in range(seg.shape[0]):
                e = np.int64(seg[k])
                row += e >> bits
                w = codebook[e & mask]
                yr = yt[row]
                for q in range(n):
                    yr[q] += w * xr[q]


@njit(cache=True, nogil=True)
def _panel_rows(ptr, entries, codebook, bits, width, x, y, r0, r1):
    """y[r0:r1] += rows r0..r1 of W x for the row-panel layout."""
    mask = (1 << bits) - 1
    for p in range(ptr.shape[0]):
        pp = ptr[p]
        xp = x[p * width:]
        for i in range(r0, r1):
            seg = entries[pp[i]:pp[i + 1]]
            n = seg.shape[0]
            a0 = np.float32(0.0)
            a1 = np.float32(0.0)
            a2 = np.float32(0.0)
            a3 = np.float32(0.0)
            m = n & ~3
            for k in range(0, m, 4):
                e0 = np.int64(seg[k])
                e1 = np.int64(seg[k + 1])
                e2 = np.int64(seg[k + 2])
                e3 = np.int64(seg[k + 3])
                a0 += codebook[e0 & mask] * xp[e0 >> bits]
                a1 += codebook[e1 & mask] * xp[e1 >> bits]
                a2 += codebook[e2 & mask] * xp[e2 >> bits]
                a3 += codebook[e3 & mask] * xp[e3 >> bits]
            for k in range(m, n):
                e0 = np.int64(seg[k])
                a0 += codebook[e0 & mask] * xp[e0 >> bits]
            y[i] += (a0 + a1) + (a2 + a3)


@njit(cache=True, nogil=True)
def panel_matvec(ptr, entries, codebook, bits, width, x, y):
    """y += W x for the row-panel layout (every nonzero is visited; no activation skipping)."""
    _panel_rows(ptr, entries, codebook, bits, width, x, y, 0, y.shape[0])


@njit(cache=True, nogil=True, parallel=True)
def panel_matvec_threads(ptr, entries, codebook, bits, width, x, y, chunks):
    """panel_matvec with the rows cut into `chunks` equal ranges shared among numba's threads."""
    rows = y.shape[0]
    for c in prange(chunks):
        _panel_rows(ptr, entries, codebook, bits, width, x, y, rows * c // chunks, rows * (c + 1) // chunks)


@njit(cache=True, nogil=True)
def panel_matmat(ptr, entries, codebook, bits, width, xt, yt):
    """yt += W xt for the row-panel layout."""
    mask = (1 << bits) - 1
    n = xt.shape[1]
    acc = np.empty(n, np.float32)
    for p in range(ptr.shape[0]):
        pp = ptr[p]
        base = p * width
        for i in range(yt.shape[0]):
            seg = entries[pp[i]:pp[i + 1]]
            cnt = seg.shape[0]
            if cnt == 0:
                continue
            for q in range(n):
                acc[q] = 0.0
            m = cnt & ~3
            # four nonzeros per pass: one load/store of acc per four rows of xt
            for k in range(0, m, 4):
                e0 = np.int64(seg[k])
                e1 = np.int64(seg[k + 1])
                e2 = np.int64(seg[k + 2])
                e3 = np.int64(seg[k + 3])
                w0 = codebook[e0 & mask]
                w1 = codebook[e1 & mask]
                w2 = codebook[e2 & mask]
                w3 = codebook[e3 & mask]
                x0 = xt[base + (e0 >> bits)]
                x1 = xt[base + (e1 >> bits)]
                x2 = xt[base + (e2 >> bits)]
                x3 = xt[base + (e3 >> bits)]
                for q in range(n):
                    acc[q] += (w0 * x0[q] + w1 * x1[q]) + (w2 * x2[q] + w3 * x3[q])
            for k in range(m, cnt):
                e0 = np.int64(seg[k])
                w0 = codebook[e0 & mask]
                x0 = xt[base + (e0 >> bits)]
                for q in range(n):
                    acc[q] += w0 * x0[q]
            yr = yt[i]
            for q in range(n):
                yr[q] += acc[q]


@njit(cache=True, nogil=True)
def _panel_rows_vec(ptr, entries, codebook, bits, width, xt, yt, r0, r1):
    """yt[r0:r1] += rows r0..r1 of W xt with register accumulators (xt.shape[1] a multiple of 8)."""
    n = xt.shape[1]
    for p in range(ptr.shape[0]):
        base = p * width
        for i in range(r0, r1):
            a = np.int64(ptr[p, i])
            b = np.int64(ptr[p, i + 1])
            if a == b:
                continue
            lane = 0
            while lane + 8 * LANES <= n:
                row_block8(entries, a, b, codebook, bits, xt, base, lane, yt, i * n + lane)
                lane += 8 * LANES
            if lane + 4 * LANES <= n:
                row_block4(entries, a, b, codebook, bits, xt, base, lane, yt, i * n + lane)
                lane += 4 * LANES
            if lane + 2 * LANES <= n:
                row_block2(entries, a, b, codebook, bits, xt, base, lane, yt, i * n + lane)
                lane += 2 * LANES
            if lane < n:
                row_block1(entries, a, b, codebook, bits, xt, base, lane, yt, i * n + lane)


@njit(cache=True, nogil=True)
def panel_matmat_vec(ptr, entries, codebook, bits, width, xt, yt):
    """yt += W xt for the row-panel layout with register accumulators; xt.shape[1] must be a multiple of 8."""
    _panel_rows_vec(ptr, entries, codebook, bits, width, xt, yt, 0, yt.shape[0])


@njit(cache=True, nogil=True, parallel=True)
def panel_matmat_vec_threads(ptr, entries, codebook, bits, width, xt, yt, chunks):
    """panel_matmat_vec with the rows cut into `chunks` equal ranges shared among numba's threads."""
    rows = yt.shape[0]
    for c in prange(chunks):
        _panel_rows_vec(ptr, entries, codebook, bits, width, xt, yt, rows * c // chunks,
                        rows * (c + 1) // chunks)


@njit(cache=True, nogil=True)
def grouped_matvec(row_ptr, counts, cols, codebook, x, y):
    """y += W x for the centroid-grouped row layout: sum the inputs of each centroid, then multiply once."""
    k_cb = codebook.shape[0]
    for i in range(y.shape[0]):
        p = row_ptr[i]
        acc = np.float32(0.0)
        for c in range(k_cb):
            n = np.int64(counts[i, c])
            if n == 0:
                continue
            seg = cols[p:p + n]
            s0 = np.float32(0.0)
            s1 = np.float32(0.0)
            s2 = np.float32(0.0)
            s3 = np.float32(0.0)
            m = n & ~3
            for k in range(0, m, 4):
                s0 += x[seg[k]]
                s1 += x[seg[k + 1]]
                s2 += x[seg[k + 2]]
                s3 += x[seg[k + 3]]
            for k in range(m, n):
                s0 += x[seg[k]]
            acc += codebook[c] * ((s0 + s1) + (s2 + s3))
            p += n
        y[i] += acc


@njit(cache=True, nogil=True)
def grouped_matmat(row_ptr, counts, cols, codebook, xt, yt):
    """yt += W xt for the centroid-grouped row layout."""
    k_cb = codebook.shape[0]
    n = xt.shape[1]
    acc = np.empty(n, np.float32)
    s = np.empty(n, np.float32)
    for i in range(yt.shape[0]):
        p = row_ptr[i]
        for q in range(n):
            acc[q] = 0.0
        for c in range(k_cb):
            cnt = np.int64(counts[i, c])
            if cnt == 0:
                continue
            seg = cols[p:p + cnt]
            for q in range(n):
                s[q] = 0.0
            for k in range(cnt):
                xr = xt[seg[k]]
                for q in range(n):
                    s[q] += xr[q]
            w = codebook[c]
            for q in range(n):
                acc[q] += w * s[q]
            p += cnt
        yr = yt[i]
        for q in range(n):
            yr[q] += acc[q]


if HAVE_C:
    import ctypes

    _P, _I64, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    _csc_c = LIB.dc_csc_matvec_f32
    _csc_c.argtypes, _csc_c.restype = [_P, _P, _I64, _I64, _P, _P, _INT, _P, _P, _P], None
    _panel_c = LIB.dc_panel_matmat_f32
    _panel_c.argtypes, _panel_c.restype = [_P, _I64, _I64, _P, _P, _INT, _I64, _P, _I64, _P, _I64, _I64, _I64], None

    @njit(cache=False, nogil=True)
    def csc_matvec_c(col_ptr, row_start, entries, codebook, bits, x, y):
        """csc_matvec in C (bit-identical)."""
        nzcols = np.empty(x.shape[0], np.int32)
        _csc_c(col_ptr.ctypes, row_start.ctypes, col_ptr.shape[0], x.shape[0], entries.ctypes, codebook.ctypes,
               bits, x.ctypes, y.ctypes, nzcols.ctypes)

    @njit(cache=False, nogil=True)
    def panel_matmat_c(ptr, entries, codebook, bits, width, xt, yt):
        """panel_matmat_vec in C (bit-identical); xt.shape[1] a multiple of 8."""
        _panel_c(ptr.ctypes, ptr.shape[0], yt.shape[0], entries.ctypes, codebook.ctypes, bits, width, xt.ctypes,
                 xt.shape[1], yt.ctypes, 0, yt.shape[0], PANEL_TILE)

    @njit(cache=False, nogil=True, parallel=True)
    def panel_matmat_c_threads(ptr, entries, codebook, bits, width, xt, yt, chunks):
        """panel_matmat_c with the rows cut into `chunks` equal ranges shared among numba's threads."""
        rows = yt.shape[0]
        for c in prange(chunks):
            _panel_c(ptr.ctypes, ptr.shape[0], rows, entries.ctypes, codebook.ctypes, bits, width, xt.ctypes,
                     xt.shape[1], yt.ctypes, rows * c // chunks, rows * (c + 1) // chunks, PANEL_TILE)
