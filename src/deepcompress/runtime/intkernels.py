"""The int8/int16 modes' SIMD C kernels: loading the extension, the dispatch paths, and their calls from numba.

Each kernel sets acc (int32 in int8 mode, int64 in int16 mode) to exact integer sums of products of
quantized weights and a quantized input (quantize.py), so every path gives the same integers:

- 'portable': numba scalar loops (intportable.py), always there.
- 'avx2': _lut.c with AVX2 (vpshufb table lookup on 4-bit codes, vpmaddubsw / vpmaddwd sums).
- 'vnni': _lut.c with AVX-512 VNNI (vpdpbusd) for the int8 row, blocks and quads kernels, AVX2 for the rest.
- 'vbmi': the 'vnni' path plus AVX-512 VBMI, which decodes the 'rows-packed' layout's 6-bit codes (vpermb,
  vpmultishiftqb, vpermi2b); only that layout differs from 'vnni'.
The AVX-512 paths are checked natively on a Zen 4 and, on machines without AVX-512, through a SIMDe build of
the same source (tests/test_simd_emulated.py).

The C kernels are an extension module compiled by pip at set-up (setup.py), loaded here with ctypes and
called from numba without Python in between; the CPU's features are read at run time (cpuid through
gcc's __builtin_cpu_supports). Without the module the portable path is used, after a one-line warning.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import warnings

from numba import njit

from ..errors import UserError
from .intportable import finish, finish_rows, finish_transposed, nonzero_columns, quantize_rows
from .quantize import quantize_into

PATHS = ("portable", "avx2", "vnni", "vbmi")
# every function of the extension (_lut.c, _spmm.c, _csc8.c) the runtime binds
SYMBOLS = ("dc_features", "dc_rows8_avx2", "dc_rows8_vnni", "dc_rows8_vbmi", "dc_rows16_avx2", "dc_cols8_avx2",
           "dc_blocks8_avx2", "dc_blocks8_vnni", "dc_blocks8_scratch", "dc_quads8_avx2", "dc_quads8_vnni",
           "dc_quads8_scratch", "dc_rowquads8_avx2", "dc_panelquads8_avx2", "dc_transpose8_avx2",
           "dc_quantize8_avx2", "dc_csc_matvec_f32", "dc_panel_matmat_f32", "dc_csc8_avx2")
_F_AVX2, _F_VNNI, _F_VBMI = 1, 2, 4
# a test hook: another build of the extension to load, e.g. tests/simde_build.py's, whose AVX-512 functions
# run through SIMDe's portable intrinsics on a CPU without AVX-512
SIMD_LIBRARY_ENV = "DEEPCOMPRESS_SIMD_LIBRARY"


def _origin() -> tuple[str | None, bool]:
    """(path of the extension to load, whether SIMD_LIBRARY_ENV named it): the built one, or that test build."""
    override = os.environ.get(SIMD_LIBRARY_ENV)
    if override:
        if not os.path.isfile(override):
            raise UserError(f"{SIMD_LIBRARY_ENV}={override}: no such file (a build of _lut.c to load instead "
                            "of the installed one; unset it to use the installed kernels)")
        return override, True
    spec = importlib.util.find_spec("deepcompress.runtime._lut")
    return (None if spec is None else spec.origin), False


def _load():
    origin, override = _origin()
    if origin is None:
        warnings.warn("deepcompress: SIMD kernels not built (no C compiler at set-up?); "
                      "int8/int16 run on the portable kernels", RuntimeWarning, stacklevel=3)
        return None
    try:
        lib = ctypes.CDLL(origin)
    except OSError as exc:
        if not override:
            raise
        raise UserError(f"{SIMD_LIBRARY_ENV}={origin}: not a loadable shared library ({exc})") from None
    missing = [name for name in SYMBOLS if not hasattr(lib, name)]
    if missing:  # built from an older _lut.c
        fix = f"rebuild {origin} from this _lut.c" if override else "rebuild with pip install -e ."
        warnings.warn(f"deepcompress: SIMD kernels out of date (no {missing[0]}; {fix}); "
                      "the runtime runs on the portable kernels", RuntimeWarning, stacklevel=3)
        return None
    return lib


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
        if FEATURES & _F_VBMI:
            paths.append("vbmi")
    return tuple(paths)


def uses_vnni(path: str) -> bool:
    """Whether `path` runs the int8 rows, blocks and quads kernels with VNNI (the 'vnni' and 'vbmi' paths)."""
    return path in ("vnni", "vbmi")


def blocks8_scratch(cols: int) -> int:
    """int32 scratch entries dc_blocks8_* needs per sample (0 without the extension)."""
    return int(LIB.dc_blocks8_scratch(cols)) if LIB is not None else 0


def quads8_scratch(groups: int) -> int:
    """int32 scratch entries dc_quads8_* needs per sample (0 without the extension)."""
    return int(LIB.dc_quads8_scratch(groups)) if LIB is not None else 0


def best_path() -> str:
    """The fastest dispatch path available here, which layers run on unless told otherwise (VNNI's
    kernels ran 1.25x (rows), 1.18x (blocks) and 1.12x (quads) AVX2's speed on a Zen 4, geomeans over EIE's
    nine layers: benchmarks/results/int_paths.json)."""
    return available_paths()[-1]


# ---- SIMD kernels through ctypes, called from numba ----

if LIB is not None:
    _P, _I64, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    _ROWS = (_P, _INT, _P, _I64, _P, _I64, _I64, _I64, _P, _P)
    _rows8_avx2 = _bind(LIB, "dc_rows8_avx2", *_ROWS)
    _rows8_vnni = _bind(LIB, "dc_rows8_vnni", *_ROWS)
    _rows8_vbmi = _bind(LIB, "dc_rows8_vbmi", _P, _P, _I64, _I64, _I64, _P, _P)
    _rows16_avx2 = _bind(LIB, "dc_rows16_avx2", *_ROWS)
    _cols8_avx2 = _bind(LIB, "dc_cols8_avx2", _P, _INT, _P, _I64, _P, _I64, _I64, _P, _I64, _P, _P)
    _BLOCKS = (_P, _I64, _I64, _P, _I64, _I64, _P, _P)
    _blocks8_avx2, _blocks8_vnni = (_bind(LIB, f"dc_blocks8_{isa}", *_BLOCKS) for isa in ("avx2", "vnni"))
    LIB.dc_blocks8_scratch.argtypes, LIB.dc_blocks8_scratch.restype = [_I64], _I64
    _quads8_avx2, _quads8_vnni = (_bind(LIB, f"dc_quads8_{isa}", *_BLOCKS) for isa in ("avx2", "vnni"))
    _rowquads8_avx2 = _bind(LIB, "dc_rowquads8_avx2", _P, _I64, _P, _P, _P, _I64, _INT, _P)
    LIB.dc_quads8_scratch.argtypes, LIB.dc_quads8_scratch.restype = [_I64], _I64
    _transpose8_avx2 = _bind(LIB, "dc_transpose8_avx2", _P, _I64, _I64, _I64, _P)
    _transpose8_avx2.restype = _INT
    _quantize8_avx2 = _bind(LIB, "dc_quantize8_avx2", _P, _I64, _I64, _I64, _P, _I64, _P)
    _panelquads8_avx2 = _bind(LIB, "dc_panelquads8_avx2", _P, _I64, _I64, _I64, _P, _P, _I64, _INT, _P)
    _csc8_avx2 = _bind(LIB, "dc_csc8_avx2", _P, _I64, _I64, _I64, _P, _P, _INT, _P, _P, _P)

    @njit(cache=False, nogil=True)
    def rows8_simd(vnni, store, mask, nibble, table, chunks, x, acc):
        """dc_rows8_* on a (rows, bytes) code or weight array `store` and its mask (rows, 0) if none."""
        if vnni:
            _rows8_vnni(store.ctypes, nibble, mask.ctypes, mask.shape[1], table.ctypes, store.shape[0], chunks,
                        store.shape[1], x.ctypes, acc.ctypes)
        else:
            _rows8_avx2(store.ctypes, nibble, mask.ctypes, mask.shape[1], table.ctypes, store.shape[0], chunks,
                        store.shape[1], x.ctypes, acc.ctypes)

    @njit(cache=False, nogil=True)
    def rows8_packed_simd(store, table, chunks, x, acc):
        """dc_rows8_vbmi on a (rows, 24 * chunks) array of packed 6-bit codes (8 readable bytes past its end)."""
        _rows8_vbmi(store.ctypes, table.ctypes, store.shape[0], chunks, store.shape[1], x.ctypes, acc.ctypes)

    @njit(cache=False, nogil=True)
    def rows8_packed_fused(store, table, chunks, x, xq, acc, s_w, bias, y, relu=False):
        """y = W x + b in int8 on the packed 6-bit row layout (quantize_into, rows8_packed_simd, finish)."""
        s_x = quantize_into(x, 127, xq)
        rows8_packed_simd(store, table, chunks, xq, acc)
        finish(acc, s_w * s_x, bias, y, relu)

    @njit(cache=False, nogil=True)
    def rows16_simd(store, mask, nibble, tables, chunks, stride, x, acc):
        """dc_rows16_avx2; stride in bytes."""
        _rows16_avx2(store.ctypes, nibble, mask.ctypes, mask.shape[1], tables.ctypes, store.shape[0], chunks, stride,
                     x.ctypes, acc.ctypes)

    @njit(cache=False, nogil=True)
    def cols8_simd(store, mask, nibble, table, rows_pad, nzcols, n, x, acc):
        """dc_cols8_avx2 on one coded vector per column."""
        _cols8_avx2(store.ctypes, nibble, mask.ctypes, mask.shape[1], table.ctypes, rows_pad, store.shape[1],
                    nzcols.ctypes, n, x.ctypes, acc.ctypes)

    # One call per layer and input vector for the SIMD row and column kernels: quantize, sum, scale
    # (three calls from Python cost about 2.5 us a layer, this about 1).

    @njit(cache=False, nogil=True)
    def rows8_fused(vnni, store, mask, nibble, table, chunks, x, xq, acc, s_w, bias, y, relu=False):
        """y = W x + b in int8 on the row layout (quantize_into, rows8_simd, finish)."""
        s_x = quantize_into(x, 127, xq)
        rows8_simd(vnni, store, mask, nibble, table, chunks, xq, acc)
        finish(acc, s_w * s_x, bias, y, relu)

    @njit(cache=False, nogil=True)
    def rows16_fused(store, mask, nibble, tables, chunks, stride, perm, x, xq, xp, acc, s_w, bias, y, relu=False):
        """y = W x + b in int16 on the row layout; xp receives xq in the kernel's column order `perm`."""
        s_x = quantize_into(x, 32767, xq)
        for c in range(chunks):
            for i in range(32):
                xp[32 * c + i] = xq[32 * c + perm[i]]
        rows16_simd(store, mask, nibble, tables, chunks, stride, xp, acc)
        finish(acc, s_w * s_x, bias, y, relu)

    @njit(cache=False, nogil=True)
    def cols8_fused(store, mask, nibble, table, x, xq, nzcols, acc, s_w, bias, y, relu=False):
        """y = W x + b in int8 on the column layout."""
        s_x = quantize_into(x, 127, xq)
        n = nonzero_columns(xq[:x.shape[0]], nzcols)
        cols8_simd(store, mask, nibble, table, acc.shape[0], nzcols, n, xq, acc)
        finish(acc, s_w * s_x, bias, y, relu)

    def _block_kernels(sums):
        """(SIMD sums, one-vector fused, batched fused) kernels of a 64-row block layout whose int32 sums
        the C function `sums` computes (dc_blocks8_* or dc_quads8_*, avx2 or vnni: the same arguments)."""

        @njit(cache=False, nogil=True)
        def simd(store, xq, scratch, acc):
            """`sums` on xq (N, >= cols) int8 into acc (N, blocks * 64)."""
            sums(store.ctypes, store.shape[0], store.shape[1], xq.ctypes, xq.shape[1], xq.shape[0], scratch.ctypes,
                 acc.ctypes)

        @njit(cache=False, nogil=True)
        def fused(store, x, xq, scratch, acc, s_w, bias, y, relu=False):
            """y = W x + b in int8 on the block layout, one input vector (xq, acc: (1, ...))."""
            s_x = quantize_into(x, 127, xq[0])
            simd(store, xq, scratch, acc)
            finish(acc[0], s_w * s_x, bias, y, relu)

        @njit(cache=False, nogil=True)
        def batch_fused(store, x, xq, scales, scratch, acc, s_w, bias, y):
            """y[i] = W x[i] + b in int8 on the block layout for every row of x (N, in)."""
            quantize_rows(x, 127, xq, scales)
            simd(store, xq, scratch, acc)
            finish_rows(acc, s_w, scales, bias, y)

        return simd, fused, batch_fused

    # the 64-row block layout (store (blocks, cols, 64)) and the quad-interleaved one (blocks, groups, 64, 4),
    # by whether the path sums with VNNI
    BLOCK_KERNELS = {("blocks", False): _block_kernels(_blocks8_avx2), ("blocks", True): _block_kernels(_blocks8_vnni),
                     ("quads", False): _block_kernels(_quads8_avx2), ("quads", True): _block_kernels(_quads8_vnni)}

    @njit(cache=False, nogil=True)
    def rowquads8_simd(row_ptr, qcols, qw, xt, neg, acc):
        """dc_rowquads8_avx2: acc (rows, lanes) = W xt, xt (cols, lanes) int8, lanes a multiple of 32;
        neg: whether xt has a negative entry."""
        _rowquads8_avx2(row_ptr.ctypes, row_ptr.shape[0] - 1, qcols.ctypes, qw.ctypes, xt.ctypes, xt.shape[1],
                        neg, acc.ctypes)

    @njit(cache=False, nogil=True)
    def quantize_transposed(x, xq, xt, scales):
        """xt[:, i] = int8 q_x of x[i] and scales[i] = its s_x for each row of x (C-contiguous rows;
        dc_quantize8_avx2 into xq, the integers and scales of quantize_rows, then dc_transpose8_avx2);
        xt's lanes past x's rows are 0. xq: (xt's lanes, >= in) int8, xt: (>= in, lanes). Returns 1 if
        some q_x is negative, else 0."""
        n = x.shape[0]
        _quantize8_avx2(x.ctypes, n, x.shape[1], x.strides[0] // 4, xq.ctypes, xq.shape[1], scales.ctypes)
        xq[n:] = 0
        return _transpose8_avx2(xq.ctypes, xq.shape[1], xt.shape[1], x.shape[1], xt.ctypes)

    @njit(cache=False, nogil=True)
    def rowquads8_batch_fused(row_ptr, qcols, qw, x, xq, xt, scales, acc, s_w, bias, y):
        """y[i] = W x[i] + b in int8 on the row-quad layout for the rows of x (N <= xt's lanes)."""
        neg = quantize_transposed(x, xq, xt, scales)
        rowquads8_simd(row_ptr, qcols, qw, xt, neg, acc)
        finish_transposed(acc, s_w, scales, bias, y)

    @njit(cache=False, nogil=True)
    def panelquads8_simd(row_ptr, panels, width, recs, xt, lanes, neg, acc):
        """dc_panelquads8_avx2: acc[:, :lanes] = W xt[:, :lanes], xt (panels * width, 64) int8, acc (rows, 64)
        int32, lanes 32 or 64; recs (quads, 6) uint16; neg: whether xt has a negative entry."""
        _panelquads8_avx2(row_ptr.ctypes, acc.shape[0], panels, width, recs.ctypes, xt.ctypes, lanes, neg,
                          acc.ctypes)

    @njit(cache=False, nogil=True)
    def panelquads8_batch_fused(row_ptr, panels, width, recs, x, xq, xt, scales, acc, s_w, bias, y):
        """y[i] = W x[i] + b in int8 on the panel-quad layout for the rows of x (N <= 64)."""
        neg = quantize_transposed(x, xq, xt, scales)
        panelquads8_simd(row_ptr, panels, width, recs, xt, 32 if x.shape[0] <= 32 else 64, neg, acc)
        finish_transposed(acc, s_w, scales, bias, y)

    @njit(cache=False, nogil=True)
    def csc_abs8_simd(col_ptr, entries, table, code_bits, x, nzcols, acc):
        """dc_csc8_avx2: acc[:rows] = W x (x int8, at least cols entries) for the csc-abs layout."""
        _csc8_avx2(col_ptr.ctypes, col_ptr.shape[0], col_ptr.shape[1] - 1, acc.shape[0], entries.ctypes,
                   table.ctypes, code_bits, x.ctypes, nzcols.ctypes, acc.ctypes)

    @njit(cache=False, nogil=True)
    def csc_abs8_fused(col_ptr, entries, table, code_bits, x, xq, nzcols, acc, s_w, bias, y, relu=False):
        """y = W x + b in int8 on the csc-abs layout (quantize_into, csc_abs8_simd, finish)."""
        s_x = quantize_into(x, 127, xq)
        csc_abs8_simd(col_ptr, entries, table, code_bits, xq, nzcols, acc)
        finish(acc, s_w * s_x, bias, y, relu)
