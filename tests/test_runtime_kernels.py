"""The runtime's sparse FC and conv kernels against dense references built from the same quantized weights."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepcompress.runtime import (SparseConv2d, SparseLinear, choose_fc_layout, conv_from_positions,
                                  from_dense, from_positions, linear_from_dense, linear_from_positions)
from deepcompress.runtime.layouts import (ENTRY_BITS, build_csc, csc_bits, csc_padding, csc_row_starts,
                                         predicted_bytes)

LAYOUTS = ("csc", "panel", "grouped")
REL_TOL = 1e-5


def random_nonzeros(rng, shape, density, k, empty_rows=(), empty_cols=()):
    """Uniform random positions at `density`, with whole rows / columns forced empty, and random codes."""
    mask = rng.random(shape) < density
    mask[list(empty_rows), :] = False
    mask[:, list(empty_cols)] = False
    pos = np.flatnonzero(mask)
    codebook = rng.standard_normal(k).astype(np.float32)
    return from_positions(shape, pos, rng.integers(0, k, pos.size), codebook)


def sparse_inputs(rng, shape, act_density):
    """Inputs with about act_density nonzeros, some of them negative (not only post-ReLU values)."""
    x = rng.standard_normal(shape).astype(np.float32)
    x[rng.random(shape) >= act_density] = 0.0
    return x


def check_layer(layer, nz, bias, x):
    """layer(x) equals x @ W.T + b computed densely in float64, within REL_TOL (norm-wise)."""
    ref = x.astype(np.float64) @ nz.to_dense().astype(np.float64).T + bias
    got = layer(x)
    assert got.dtype == np.float32 and got.shape == ref.shape
    err = np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30)
    assert err < REL_TOL, (layer.kind, err)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("k", [1, 2, 15, 16, 17, 255, 256])
def test_layouts_match_dense_reference(layout, k):
    rng = np.random.default_rng(k)
    shape = (97, 130)
    nz = random_nonzeros(rng, shape, 0.15, k, empty_rows=(0, 5, 96), empty_cols=(0, 7, 129))
    bias = rng.standard_normal(shape[0]).astype(np.float32)
    layer = SparseLinear.from_layer(nz, bias, layout=layout)
    assert layer.kind == layout
    for act in (0.0, 0.3, 1.0):
        check_layer(layer, nz, bias, sparse_inputs(rng, shape[1], act))
        for n in (1, 5, 70, 130):  # 130: more than one batch block of 64
            check_layer(layer, nz, bias, sparse_inputs(rng, (n, shape[1]), act))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_all_zero_inputs_and_empty_matrix_give_the_bias(layout):
    rng = np.random.default_rng(1)
    bias = rng.standard_normal(40).astype(np.float32)
    for density in (0.0, 0.2):
        nz = random_nonzeros(rng, (40, 60), density, 16)
        layer = SparseLinear.from_layer(nz, bias, layout=layout)
        np.testing.assert_array_equal(layer(np.zeros(60, np.float32)), bias)
        np.testing.assert_array_equal(layer(np.zeros((3, 60), np.float32)), np.tile(bias, (3, 1)))
    no_bias = SparseLinear.from_layer(random_nonzeros(rng, (4, 6), 0.5, 3), layout=layout)
    np.testing.assert_array_equal(no_bias(np.zeros(6, np.float32)), np.zeros(4, np.float32))


@pytest.mark.parametrize("k", [16, 256])
def test_column_layout_pads_long_row_gaps(k):
    rng = np.random.default_rng(2)
    rows = 70_000  # more than 16 bits of row index, gaps far beyond the position field
    pos = np.array([0, 5 * rows // 7, rows - 1]) * 3 + np.array([0, 1, 2])
    pos = np.concatenate([pos, rng.choice(rows * 3, 50, replace=False)])
    pos = np.unique(pos)
    nz = from_positions((rows, 3), pos, rng.integers(0, k, pos.size), rng.standard_normal(k).astype(np.float32))
    layout = build_csc(nz)
    assert layout.padding == csc_padding(nz) > 0
    max_gap = (1 << (ENTRY_BITS - csc_bits(k))) - 1
    assert layout.padding <= 3 * (rows // max_gap)
    layer = SparseLinear(layout)
    check_layer(layer, nz, np.zeros(rows), rng.standard_normal(3).astype(np.float32))
    check_layer(layer, nz, np.zeros(rows), rng.standard_normal((4, 3)).astype(np.float32))


@pytest.mark.parametrize("block_rows", [1, 7, 33, 97, 1000])
def test_column_layout_in_row_blocks(block_rows):
    """Row blocks change the layout, not the result; gaps restart at each block, so padding never grows."""
    rng = np.random.default_rng(block_rows)
    nz = random_nonzeros(rng, (97, 130), 0.2, 256, empty_rows=(0, 40, 96), empty_cols=(3,))
    layout = build_csc(nz, block_rows)
    starts = csc_row_starts(97, block_rows)
    for threads in (1, 2, 3, 4):  # block count a multiple of the threads, never above block_rows each
        more = csc_row_starts(97, block_rows, threads)
        assert (more.size - 1) % threads == 0 and np.all(np.diff(more) <= block_rows) and more[-1] == 97
    np.testing.assert_array_equal(layout.row_start, starts)
    assert starts[0] == 0 and starts[-1] == 97 and np.all(np.diff(starts) <= block_rows)
    assert layout.col_ptr.shape == (starts.size - 1, 131)
    assert layout.padding == csc_padding(nz, block_rows) <= csc_padding(nz, 1000)
    bias = rng.standard_normal(97).astype(np.float32)
    layer = SparseLinear(layout, bias)
    for act in (0.0, 0.3, 1.0):
        check_layer(layer, nz, bias, sparse_inputs(rng, 130, act))
        check_layer(layer, nz, bias, sparse_inputs(rng, (5, 130), act))


def test_tall_column_layout_is_blocked_and_sized_as_predicted():
    rng = np.random.default_rng(11)
    nz = random_nonzeros(rng, (9000, 40), 0.05, 16)
    layout = build_csc(nz)
    assert layout.col_ptr.shape[0] == 3  # 9000 rows in blocks of at most 4096
    nbytes = layout.nbytes()
    assert nbytes.entries + nbytes.pointers == predicted_bytes(nz, "csc")
    check_layer(SparseLinear(layout), nz, np.zeros(9000), sparse_inputs(rng, 40, 0.5))


@pytest.mark.parametrize("n", [1, 5, 8, 24, 72, 136])
def test_panel_batch_kernels_generic_and_vector(n):
    """N % 8 == 0 runs the register-blocked vector kernel (all block sizes 64/32/16/8), else the generic one."""
    rng = np.random.default_rng(8)
    nz = random_nonzeros(rng, (50, 3000), 0.05, 16)
    layout = SparseLinear.from_layer(nz, layout="panel", batch=n).layout
    xt = sparse_inputs(rng, (3000, n), 0.5)
    yt = np.zeros((50, n), np.float32)
    layout.matmat(xt, yt)
    ref = nz.to_dense().astype(np.float64) @ xt
    assert np.linalg.norm(yt - ref) / np.linalg.norm(ref) < REL_TOL


@pytest.mark.parametrize("k", [2, 256])
def test_panel_layout_spans_several_panels(k):
    rng = np.random.default_rng(3)
    nz = random_nonzeros(rng, (30, 70_000 if k == 2 else 1_000), 0.01, k)
    layer = SparseLinear.from_layer(nz, layout="panel")
    assert layer.layout.ptr.shape[0] > 1
    check_layer(layer, nz, np.zeros(30), sparse_inputs(rng, nz.matrix_shape[1], 0.5))
    check_layer(layer, nz, np.zeros(30), sparse_inputs(rng, (3, nz.matrix_shape[1]), 0.5))


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(0, 40), cols=st.integers(0, 40), k=st.integers(1, 256),
       density=st.sampled_from([0.0, 0.05, 0.5, 1.0]), act=st.sampled_from([0.0, 0.5, 1.0]),
       batch=st.sampled_from([None, 1, 3]), seed=st.integers(0, 2**16))
def test_random_small_layers(rows, cols, k, density, act, batch, seed):
    rng = np.random.default_rng(seed)
    nz = random_nonzeros(rng, (rows, cols), density, k)
    bias = rng.standard_normal(rows).astype(np.float32)
    x = sparse_inputs(rng, cols if batch is None else (batch, cols), act)
    for layout in LAYOUTS:
        check_layer(SparseLinear.from_layer(nz, bias, layout=layout), nz, bias, x)


@pytest.mark.parametrize("k", [1, 16, 256])
def test_entries_take_two_bytes_per_nonzero(k):
    rng = np.random.default_rng(4)
    nz = random_nonzeros(rng, (600, 900), 0.09, k)
    for layout in LAYOUTS:
        built = SparseLinear.from_layer(nz, layout=layout)
        padding = getattr(built.layout, "padding", 0)
        assert built.nbytes().entries == 2 * (nz.nnz + padding)
        assert padding <= 0.01 * nz.nnz
    for act, batch in ((0.3, 1), (1.0, 1), (0.3, 64)):
        auto = SparseLinear.from_layer(nz, act_density=act, batch=batch)
        per_nz = auto.nbytes().per_nonzero()
        # pointers: one int32 per column (csc) or per row and panel (panel; 4 panels when K = 256)
        assert per_nz["entries"] <= 2.0 * 1.01 and per_nz["pointers"] <= 0.25, (auto.kind, per_nz)


def test_layout_choice_follows_input_density_batch_and_size():
    rng = np.random.default_rng(5)
    nz = random_nonzeros(rng, (400, 500), 0.1, 16)
    assert choose_fc_layout(nz, act_density=0.35) == "csc"
    assert choose_fc_layout(nz, act_density=1.0) == "panel"
    assert choose_fc_layout(nz) == "csc"
    assert choose_fc_layout(nz, act_density=0.35, batch=64) == "panel"
    assert SparseLinear.from_layer(nz, batch=64).layout.width == 512
    tall = random_nonzeros(rng, (9000, 300), 0.1, 16)  # long columns, short rows: csc even for dense inputs
    assert choose_fc_layout(tall, act_density=1.0) == "csc"
    nt_wd = random_nonzeros(rng, (8791, 600), 0.11, 16)  # 14.7 rows per column: panel measured faster
    assert choose_fc_layout(nt_wd, act_density=1.0) == "panel"
    wide = random_nonzeros(rng, (2, 20_000), 0.01, 16)  # per-column pointers dwarf 400 entries
    assert predicted_bytes(wide, "csc") > 1.25 * predicted_bytes(wide, "panel")
    assert choose_fc_layout(wide, act_density=0.1) == "panel"


def test_builders_from_dense_and_positions_agree():
    rng = np.random.default_rng(6)
    codebook = np.array([-0.5, 0.25, 1.5], np.float32)
    dense = codebook[rng.integers(0, 3, (20, 30))] * (rng.random((20, 30)) < 0.3)
    nz = from_dense(dense, codebook)
    np.testing.assert_array_equal(nz.to_dense(), dense)
    x = rng.standard_normal(30).astype(np.float32)
    a = linear_from_dense(dense, codebook, layout="csc")(x)
    pos = np.flatnonzero(dense)
    codes = np.searchsorted(codebook, dense.ravel()[pos])
    b = linear_from_positions(dense.shape, pos[::-1], codes[::-1], codebook, layout="panel")(x)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad, error", [
    (dict(positions=[0, 0], codes=[0, 1]), "repeat"),
    (dict(positions=[12], codes=[0]), "outside"),
    (dict(positions=[-1], codes=[0]), "outside"),
    (dict(codes=[0, 3]), "codebook index"),
    (dict(codebook=np.zeros(257, np.float32), codes=[0, 1]), "1..256"),
    (dict(codebook=np.array([np.nan, 1.0, 2.0], np.float32)), "NaN"),
    (dict(codes=[0]), "equal length"),
])
def test_bad_descriptions_are_rejected(bad, error):
    args = dict(shape=(3, 4), positions=[1, 5], codes=[0, 2], codebook=np.ones(3, np.float32)) | bad
    with pytest.raises(ValueError, match=error):
        from_positions(**args)
    with pytest.raises(ValueError, match="not a codebook value"):
        from_dense(np.array([[0.0, 2.0]]), np.array([1.0], np.float32))
    with pytest.raises(ValueError, match="65535"):
        SparseLinear.from_layer(from_positions((1, 70_000), [3], [0], np.ones(1)), layout="grouped")
    with pytest.raises(ValueError, match="unknown layout"):
        SparseLinear.from_layer(from_positions((1, 2), [1], [0], np.ones(1)), layout="dense")


def test_bad_inputs_are_rejected():
    layer = linear_from_positions((3, 4), [1, 5], [0, 0], np.ones(1, np.float32))
    with pytest.raises(ValueError, match=r"\(4,\) or \(N, 4\)"):
        layer(np.zeros(5, np.float32))
    with pytest.raises(ValueError, match=r"\(4,\) or \(N, 4\)"):
        layer(np.zeros((2, 2, 4), np.float32))
    with pytest.raises(TypeError, match="floating-point"):
        layer(np.zeros(4, np.int64))
    assert layer(np.ones(4, np.float64)).dtype == np.float32


@pytest.mark.parametrize("path", ["dense", "sparse"])
@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1)])
def test_conv_paths_match_torch(path, stride, padding):
    rng = np.random.default_rng(7)
    kernel_shape = (6, 3, 3, 3)
    nz = random_nonzeros(rng, (6, 27), 0.4, 16)
    bias = rng.standard_normal(6).astype(np.float32)
    conv = SparseConv2d(nz, kernel_shape, bias, stride, padding, path=path)
    assert conv.path == path
    x = sparse_inputs(rng, (2, 3, 9, 11), 0.6)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x).double(),
                                     torch.from_numpy(nz.to_dense().reshape(kernel_shape)).double(),
                                     torch.from_numpy(bias).double(), stride, padding).numpy()
    got = conv(x)
    assert got.shape == ref.shape and got.dtype == np.float32
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < REL_TOL


def test_conv_from_positions_and_bad_conv_inputs():
    conv = conv_from_positions((2, 1, 2, 2), [0, 7], [0, 1], np.array([1.0, -2.0], np.float32), path="sparse")
    x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    expected = np.array([[[[0, 1], [3, 4]], [[-8, -10], [-14, -16]]]], np.float32)
    np.testing.assert_array_equal(conv(x), expected)
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        conv(np.zeros((1, 2, 3, 3), np.float32))
    with pytest.raises(ValueError, match="smaller than"):
        conv(np.zeros((1, 1, 1, 3), np.float32))
    with pytest.raises(TypeError, match="floating-point"):
        conv(np.zeros((1, 1, 3, 3), np.int32))
    with pytest.raises(ValueError, match="do not fit"):
        SparseConv2d(from_positions((2, 3), [0], [0], np.ones(1)), (2, 1, 2, 2))


@pytest.mark.parametrize("layout", ["csc", "panel"])
@pytest.mark.parametrize("shape", [(97, 130), (9000, 40), (3, 500)])
def test_threads_give_bit_identical_outputs(layout, shape):
    """Threads split the output rows, never a sum, so every output equals the 1-thread one exactly."""
    rng = np.random.default_rng(shape[0])
    nz = random_nonzeros(rng, shape, 0.1, 16)
    bias = rng.standard_normal(shape[0]).astype(np.float32)
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba may start only one thread here (NUMBA_NUM_THREADS)")
    one = SparseLinear.from_layer(nz, bias, layout=layout)
    two = SparseLinear.from_layer(nz, bias, layout=layout, threads=2)
    assert two.threads == 2
    if layout == "csc":
        assert two.layout.col_ptr.shape[0] % 2 == 0  # row blocks shared evenly between the two threads
        assert two.nbytes().entries + two.nbytes().pointers == predicted_bytes(nz, "csc", threads=2)
    for x in (sparse_inputs(rng, shape[1], 0.4), sparse_inputs(rng, (16, shape[1]), 0.4),
              sparse_inputs(rng, (5, shape[1]), 1.0)):
        np.testing.assert_array_equal(two(x), one(x))
    check_layer(two, nz, bias, sparse_inputs(rng, shape[1], 0.4))
    with pytest.raises(ValueError, match="threads"):
        SparseLinear.from_layer(nz, bias, layout=layout, threads=0)


@pytest.mark.parametrize("shape, density, k", [((97, 130), 0.1, 16), ((9000, 40), 0.3, 2), ((5, 3000), 0.05, 256),
                                               ((1, 1), 1.0, 4)])
def test_c_kernels_are_bit_identical_to_the_numba_kernels(shape, density, k, monkeypatch):
    """The C twins (_spmm.c) of the csc matvec and the panel batch kernel do the same float32 operations
    in the same order: outputs equal the numba kernels' bit for bit (every lane tile: 64/32/16/8)."""
    from deepcompress.runtime import kernels, layouts
    if not kernels.HAVE_C:
        pytest.skip("the C extension is not built here")
    rng = np.random.default_rng(shape[0] + k)
    nz = random_nonzeros(rng, shape, density, k)
    bias = rng.standard_normal(shape[0]).astype(np.float32)
    cases = [("csc", 1, sparse_inputs(rng, shape[1], 0.4)), ("csc", 1, np.zeros(shape[1], np.float32))]
    cases += [("panel", n, sparse_inputs(rng, (n, shape[1]), 0.6)) for n in (8, 24, 64, 120)]
    for layout, batch, x in cases:
        built = SparseLinear.from_layer(nz, bias, layout=layout, batch=batch)
        got = built(x)
        monkeypatch.setattr(layouts, "C_KERNELS", False)
        want = built(x)
        monkeypatch.setattr(layouts, "C_KERNELS", True)
        np.testing.assert_array_equal(got, want)
        check_layer(built, nz, bias, x)
