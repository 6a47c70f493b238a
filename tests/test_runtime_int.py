"""The int8/int16 modes: every kernel, layout and dispatch path equals the numpy reference bit for bit;
models in int16/int8 stay close to fp32; load/CLI wiring; threads reach the kernels."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from deepcompress import format as dcz
from deepcompress.runtime import intkernels, load
from deepcompress.runtime.int_fc import IntLinear
from deepcompress.runtime.intcsc import build_abs_csc
from deepcompress.runtime.intdense import build_rows
from deepcompress.runtime.intpolicy import LAYOUTS_FOR, runs_on
from deepcompress.runtime.nonzeros import from_dense
from deepcompress.runtime.ops import Fc
from deepcompress.runtime.quantize import (QMAX, quantize_codebook, quantize_into, quantize_vector,
                                           reference_forward)
from deepcompress.runtime.sparse_fc import SparseLinear

from test_runtime_model import MODELS, inputs

PATHS = intkernels.available_paths()


def codebook_of(kind: str, rng) -> np.ndarray:
    """Codebooks that exercise each row storage: 4-bit codes with a zero code appended (7), 4-bit codes
    whose zero is a codebook entry (16, one entry 0), stored weights (16 without 0, and 40)."""
    if kind == "k7":
        return np.sort(rng.uniform(-1, 1, 7)).astype(np.float32)
    if kind == "k16zero":
        c = np.sort(rng.uniform(-1, 1, 16)).astype(np.float32)
        c[3] = 0.0
        return c
    if kind == "k16":
        return np.concatenate([rng.uniform(-1, -0.1, 8), rng.uniform(0.1, 1, 8)]).astype(np.float32)
    return np.sort(rng.uniform(-2, 2, 40)).astype(np.float32)


def layer(rng, shape, density, book):
    codebook = codebook_of(book, rng)
    w = codebook[rng.integers(0, codebook.size, shape)] * (rng.random(shape) < density)
    return from_dense(w.astype(np.float32), codebook)


def signed_inputs(rng, n, cols):
    x = (rng.standard_normal((n, cols)) * (rng.random((n, cols)) < 0.4)).astype(np.float32)
    x[0] = 0.0  # an all-zero input vector
    x[-1, ::3] = np.abs(x[-1, ::3]) * 50  # a wide range in one vector
    return x


@pytest.mark.parametrize("x", [np.array([0.5, -1.5, 2.5, 0.0, -0.0, 3.0], np.float32),
                               np.random.default_rng(0).standard_normal(1001).astype(np.float32),
                               np.zeros(5, np.float32), np.array([1e-30, -2e-30], np.float32)])
@pytest.mark.parametrize("precision", ["int8", "int16"])
def test_compiled_activation_quantizer_equals_numpy_rule(x, precision):
    out = np.full(x.size + 7, 99, np.int8 if precision == "int8" else np.int16)
    scale = quantize_into(x, QMAX[precision], out)
    ref, ref_scale = quantize_vector(x, precision)
    assert np.array_equal(out[:x.size], ref) and scale == ref_scale
    assert (out[x.size:] == 99).all()
    assert np.abs(ref).max(initial=0) <= QMAX[precision]


def test_quantization_rules_by_hand():
    q, s = quantize_codebook(np.array([-0.5, 0.25, 1.0, 0.0], np.float32), "int8")
    assert s == 1.0 / 127 and q.tolist() == [-64, 32, 127, 0]  # -63.5 -> -64, 31.75 -> 32 (half to even, then nearest)
    q, s = quantize_vector(np.array([2.0, -1.0, 1.0 / 127, 0.0], np.float32), "int8")
    assert s == 2.0 / 127 and q.tolist() == [127, -64, 0, 0]  # -63.5 rounds to even -64; 0.5 to 0


@pytest.mark.parametrize("book", ["k7", "k16zero", "k16", "k40"])
@pytest.mark.parametrize("shape, density", [((37, 75), 0.3), ((1, 1), 1.0), ((65, 33), 0.05), ((300, 130), 0.5)])
@pytest.mark.parametrize("precision", ["int8", "int16"])
def test_every_layout_and_path_equals_numpy_reference(book, shape, density, precision):
    rng = np.random.default_rng(shape[0] * 7 + len(book))
    nz = layer(rng, shape, density, book)
    bias = rng.standard_normal(shape[0]).astype(np.float32)
    x = signed_inputs(rng, 4, shape[1])
    ref = reference_forward(nz, bias, x, precision)
    for name in LAYOUTS_FOR[precision]:
        for path in filter(lambda path: runs_on(name, path), PATHS):
            fc = IntLinear(nz, bias, precision, name, path=path)
            assert np.array_equal(fc(x), ref), (name, path)
            assert np.array_equal(fc(x[1]), ref[1]), (name, path)
            for i in range(x.shape[0]):  # the batch-1 call (Fc's route) on every vector
                y = np.empty(shape[0], np.float32)
                fc.matvec(x[i], y)
                assert np.array_equal(y, ref[i]), (name, path, i)


def kernel_inputs(rng, shape: tuple, signs: str, keep: float) -> np.ndarray:
    """float32 test inputs: "relu" (non-negative), "signed", or "sparse" (each entry kept with probability
    `keep`)."""
    x = rng.standard_normal(shape).astype(np.float32)
    if signs == "relu":
        return np.maximum(x, 0)
    if signs == "sparse":
        x *= rng.random(x.shape) < keep
    return x


@pytest.mark.parametrize("shape", [(1, 3), (63, 4), (64, 5), (65, 130), (200, 7), (129, 1001), (70, 513)])
@pytest.mark.parametrize("signs", ["relu", "signed", "sparse"])
@pytest.mark.parametrize("name", ["blocks", "quads", "rowquads", "panelquads"])
def test_block_layouts_batches_and_odd_shapes_equal_numpy_reference(shape, signs, name):
    """The 64-row block kernels: partial blocks, column counts not a multiple of 4 (padded quads), the
    batched call (many samples per call, more than one call) and post-ReLU, signed and very sparse inputs."""
    rng = np.random.default_rng(shape[0] + shape[1])
    nz = layer(rng, shape, 0.4, "k16")
    bias = rng.standard_normal(shape[0]).astype(np.float32)
    x = kernel_inputs(rng, (150, shape[1]), signs, keep=0.05)
    x[3] = 0.0
    ref = reference_forward(nz, bias, x, "int8")
    for path in PATHS:
        fc = IntLinear(nz, bias, "int8", name, path=path)
        if name not in ("rowquads", "panelquads"):
            assert fc.layout.store.ctypes.data % 64 == 0
        assert np.array_equal(fc(x), ref), path
        assert np.array_equal(fc(x[:2]), ref[:2]), path
        y = np.empty(shape[0], np.float32)
        fc.matvec(x[5], y)
        assert np.array_equal(y, ref[5]), path


@pytest.mark.parametrize("shape, k", [((4097, 20), 16), ((2049, 7), 17), ((600, 30), 256), ((3, 40), 5), ((70, 1), 16)])
@pytest.mark.parametrize("signs", ["relu", "signed", "sparse"])
def test_csc_abs_row_blocks_and_codebook_sizes_equal_numpy_reference(shape, k, signs):
    """The csc-abs kernels: several row blocks (4096 rows at 4 code bits, 2048 at 5, 256 at 8) with a
    partial last block, empty columns, an all-zero input and one with a single nonzero."""
    rng = np.random.default_rng(shape[0] + k)
    book = np.sort(rng.uniform(-1, 1, k)).astype(np.float32)
    w = book[rng.integers(0, k, shape)] * (rng.random(shape) < 0.2)
    w[:, ::5] = 0.0  # empty columns
    nz = from_dense(w.astype(np.float32), book)
    bias = rng.standard_normal(shape[0]).astype(np.float32)
    x = kernel_inputs(rng, (6, shape[1]), signs, keep=0.1)
    x[0] = 0.0
    x[1] = 0.0
    x[1, -1] = 2.0
    ref = reference_forward(nz, bias, x, "int8")
    for path in PATHS:
        fc = IntLinear(nz, bias, "int8", "csc-abs", path=path)
        assert np.array_equal(fc(x), ref), path
        for i in range(x.shape[0]):
            y = np.empty(shape[0], np.float32)
            fc.matvec(x[i], y)
            assert np.array_equal(y, ref[i]), (path, i)


def test_csc_abs_entries_by_hand():
    """Entries are (row offset in the block << code bits) | code, columns in row order; pointers per
    row block and column."""
    book = np.array([-1.0, 0.5, 1.0], np.float32)
    w = np.zeros((4100, 3), np.float32)
    w[[2, 4097], 0] = [1.0, -1.0]
    w[[4096, 0], 2] = [0.5, 1.0]
    lay = build_abs_csc(from_dense(w, book), "int8")
    assert lay.code_bits == 4 and lay.table.tolist() == [-127, 64, 127] + [0] * 13
    assert lay.col_ptr.tolist() == [[0, 1, 1, 2], [2, 3, 3, 4]]
    assert lay.entries.tolist() == [(2 << 4) | 2, (0 << 4) | 2, (1 << 4) | 0, (0 << 4) | 1]
    assert lay.nbytes().entries == 8 and lay.nbytes().pointers == 32


def test_csc_abs_is_int8_only():
    nz = layer(np.random.default_rng(4), (5, 8), 0.5, "k7")
    with pytest.raises(ValueError, match="no int16 kernels"):
        IntLinear(nz, None, "int16", "csc-abs")
    with pytest.raises(ValueError, match="int8 only"):
        build_abs_csc(nz, "int16")


@pytest.mark.parametrize("signs", ["relu", "signed"])
def test_panelquads_empty_rows_and_panels_equal_numpy_reference(signs):
    """Rows with weights in only some column panels (the sums kept between panels; a row's first panel
    empty), rows with none, a last panel of one column; batches of 1, 5 (32 lanes), 40 and 64 (64 lanes)."""
    rng = np.random.default_rng(7)
    book = codebook_of("k16", rng)
    w = book[rng.integers(0, 16, (90, 513))] * (rng.random((90, 513)) < 0.3)
    w[:30, :256] = 0  # nothing in panel 0
    w[30:60, 256:512] = 0  # nothing in panel 1
    w[60:70] = 0  # empty rows
    w[70:80, :512] = 0  # only the one-column last panel
    nz = from_dense(w.astype(np.float32), book)
    bias = rng.standard_normal(90).astype(np.float32)
    x = rng.standard_normal((64, 513)).astype(np.float32)
    x = np.maximum(x, 0) if signs == "relu" else x
    ref = reference_forward(nz, bias, x, "int8")
    for path in PATHS:
        fc = IntLinear(nz, bias, "int8", "panelquads", path=path)
        assert fc.layout.panels == 3
        for n in (1, 5, 40, 64):
            assert np.array_equal(fc(x[:n]), ref[:n]), (path, n)


@pytest.mark.skipif("avx2" not in PATHS, reason="no AVX2 here")
@pytest.mark.parametrize("n, cols, lanes", [(1, 1, 32), (5, 17, 32), (32, 300, 32), (40, 513, 64), (64, 64, 64)])
def test_batch_transpose_equals_numpy(n, cols, lanes):
    """The batched row-quad kernels' input: quantized rows transposed into lanes, zero past the batch,
    and the flag that says whether some quantized input is negative."""
    rng = np.random.default_rng(n + cols)
    x = rng.standard_normal((n, cols)).astype(np.float32)
    for signed in (False, True):
        xs = x if signed else np.maximum(x, 0)
        xq = np.full((lanes, cols), 5, np.int8)
        xt = np.full((cols + 3, lanes), 7, np.int8)
        scales = np.empty(lanes)
        neg = intkernels.quantize_transposed(xs, xq, xt, scales)
        q = np.zeros((lanes, cols), np.int8)
        for i in range(n):
            q[i], s = quantize_vector(xs[i], "int8")
            assert scales[i] == s
        assert np.array_equal(xt[:cols], q.T) and (xt[cols:] == 7).all()
        assert neg == int((q < 0).any())


@pytest.mark.skipif("avx2" not in PATHS, reason="no AVX2 here")
@pytest.mark.parametrize("cols", [1, 7, 8, 31, 32, 33, 1001])
def test_batch_quantizer_equals_quantize_into(cols):
    """The C quantizer of the batched row-quad kernels gives quantize_into's integers and scales (and
    quantize_vector's, the numpy rule): ties (x * inv exactly k + 0.5 round to even), near-ties, all-zero
    rows, negative values, lengths around the 8- and 32-float vector steps. (Finite inputs only: the
    runtime refuses NaN and infinities before any kernel.)"""
    rng = np.random.default_rng(cols)
    x = rng.standard_normal((8, cols)).astype(np.float32)
    x[1] = 0.0
    x[2] = (np.arange(cols) % 9 - 4.5).astype(np.float32)  # m = 4.5: inexact products x * (127 / 4.5)
    x[3] = (np.arange(cols) % 255 - 127).astype(np.float32) + 0.5  # m = 126.5 or 127.5, many near-ties
    x[4] = np.float32(127.0)
    x[4, ::2] = (np.arange(0, cols, 2) % 20 - 10).astype(np.float32) + 0.5  # inv = 1: exact ties
    x[5] *= 1e-30  # tiny values
    x[6, -1] = 3e38  # a huge one: the rest round to 0
    x[7] = -np.abs(x[7])
    xq = np.full((8, cols), 9, np.int8)
    xt = np.zeros((cols, 32), np.int8)
    scales = np.empty(32)
    intkernels.quantize_transposed(x, xq, xt, scales)
    for i in range(8):
        ref = np.full(cols, 9, np.int8)
        s = quantize_into(x[i], 127, ref)
        q, s2 = quantize_vector(x[i], "int8")
        assert np.array_equal(xq[i], ref) and scales[i] == s, i
        assert np.array_equal(xq[i], q) and scales[i] == s2, i


@pytest.mark.parametrize("name", ["blocks", "quads", "rowquads", "panelquads"])
def test_block_layouts_are_int8_only(name):
    nz = layer(np.random.default_rng(2), (5, 8), 0.5, "k7")
    with pytest.raises(ValueError, match="no int16 kernels"):
        IntLinear(nz, None, "int16", name)


def test_row_storage_follows_the_codebook():
    rng = np.random.default_rng(3)
    kinds = {book: build_rows(layer(rng, (9, 40), 0.5, book), "int8").vectors.storage for book in ("k7", "k16zero", "k16", "k40")}
    assert kinds == {"k7": "nibble", "k16zero": "nibble", "k16": "masked", "k40": "stored"}
    rows = build_rows(layer(rng, (9, 40), 0.5, "k7"), "int8")
    assert rows.vectors.store.shape == (9, 32) and rows.nbytes().entries == 9 * 32  # 64 columns at 4 bits each


def test_paths_and_errors():
    nz = layer(np.random.default_rng(1), (5, 8), 0.5, "k7")
    assert PATHS[0] == "portable" and intkernels.best_path() == PATHS[-1]
    with pytest.raises(ValueError, match="not available"):
        IntLinear(nz, None, "int8", path="sve")
    with pytest.raises(ValueError, match="unknown precision"):
        SparseLinear.from_layer(nz, precision="int4")
    with pytest.raises(ValueError, match="unknown int layout"):
        IntLinear(nz, None, "int8", "panel")
    wide = from_dense(np.ones((1, 140_000), np.float32), np.array([1.0], np.float32))
    with pytest.raises(ValueError, match="overflow int32"):
        IntLinear(wide, None, "int8", "rows")


@pytest.fixture(scope="module", params=sorted(MODELS))
def saved(request, tmp_path_factory):
    layers, meta = MODELS[request.param](np.random.default_rng(len(request.param)))
    path = tmp_path_factory.mktemp("intmodels") / f"{request.param}.dcz"
    dcz.write(path, layers, meta)
    return request.param, path, meta


@pytest.mark.parametrize("precision, tol", [("int16", 2e-4), ("int8", 3e-2)])
def test_models_in_integer_modes_stay_close_to_fp32(saved, precision, tol):
    _, path, meta = saved
    x = inputs(np.random.default_rng(5), tuple(meta["input_shape"]), 64)
    ref = load(path)(x)
    model = load(path, precision=precision)
    got = model(x)
    err = np.linalg.norm(got - ref, axis=1) / np.linalg.norm(ref, axis=1)
    assert np.median(err) < tol
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.9
    assert np.array_equal(model(x[7]), got[7])  # batch 1 (Fc's matvec) equals the batch path
    rows = [r for r in model.summary() if r["kind"] == "fc"]
    assert rows and all(r["layout"].startswith(precision) and "cost model" in r["why"] for r in rows)


class _Recorder:
    """A layout stand-in that records the thread count each matvec is called with."""

    def __init__(self, layout):
        self.inner, self.calls = layout, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def matvec(self, x, y, threads=1):
        self.calls.append(threads)
        self.inner.matvec(x, y, threads)


def test_batch1_fc_layers_run_on_the_threads_asked_for(saved):
    kind, path, meta = saved
    model = load(path, threads=2)
    fcs = [op for op in model.ops if isinstance(op, Fc)]
    for op in fcs:
        op.layer.layout = _Recorder(op.layer.layout)
    model(np.zeros(tuple(meta["input_shape"]), np.float32))
    expected = min(2, numba.config.NUMBA_NUM_THREADS)
    assert [op.layer.layout.calls for op in fcs] == [[expected]] * len(fcs)


def test_conv_from_positions_keeps_its_threads():
    from deepcompress.runtime import conv_from_positions
    conv = conv_from_positions((4, 3, 3, 3), np.arange(0, 108, 5), np.zeros(22, np.int64),
                               np.array([0.5], np.float32), path="sparse", threads=2)
    assert conv._linear.threads == min(2, numba.config.NUMBA_NUM_THREADS)


_NO_EXTENSION = """
import importlib.util, warnings
real = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name == "deepcompress.runtime._lut" else real(name, *a)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from deepcompress.runtime import intkernels, kernels, SparseLinear
    from deepcompress.runtime.int_fc import IntLinear
import numpy as np
from deepcompress.runtime.nonzeros import from_dense
from deepcompress.runtime.quantize import reference_forward
assert [str(w.message).split(";")[0] for w in caught] == ["deepcompress: SIMD kernels not built (no C compiler at set-up?)"]
assert intkernels.available_paths() == ("portable",) and not kernels.HAVE_C
rng = np.random.default_rng(0)
book = np.linspace(-1, 1, 16).astype(np.float32)
w = book[rng.integers(0, 16, (70, 90))] * (rng.random((70, 90)) < 0.3)
nz = from_dense(w.astype(np.float32), book)
x = np.maximum(rng.standard_normal((40, 90)), 0).astype(np.float32)
for name in ("auto", "blocks", "quads", "rowquads", "panelquads", "rows"):
    assert np.array_equal(IntLinear(nz, None, "int8", name, batch=40)(x), reference_forward(nz, np.zeros(70), x, "int8"))
for layout in ("csc", "panel"):
    got = SparseLinear.from_layer(nz, layout=layout, batch=40)(x)
    assert np.allclose(got, x @ w.T, rtol=1e-4, atol=1e-4)
print("ok")
"""


def test_without_the_extension_everything_runs_on_the_portable_kernels():
    """A machine whose set-up could not compile _lut: one warning, the portable path, the same integers."""
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != intkernels.SIMD_LIBRARY_ENV}  # no test build either
    out = subprocess.run([sys.executable, "-c", _NO_EXTENSION], capture_output=True, text=True, timeout=600,
                         env=env)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
