"""deepcompress.runtime.load: compressed files run end to end against a dense PyTorch reference."""

from __future__ import annotations

import struct

import numba
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import LIST_HEAVY, without_torch

from deepcompress import format as dcz
from deepcompress.errors import UserError
from deepcompress.runtime import InputError, ModelError, conv_from_positions, load

REL_TOL = 1e-5


def random_layer(rng, name, kind, shape, density, k, empty_cols=(), bias=True):
    """A QuantizedLayer with uniform random sparsity, some whole columns of its 2-D view empty."""
    rows, cols = shape[0], int(np.prod(shape[1:]))
    mask = rng.random((rows, cols)) < density
    mask[:, list(empty_cols)] = False
    codebook = rng.standard_normal(k).astype(np.float32)
    weight = np.where(mask, codebook[rng.integers(0, k, mask.shape)], 0).astype(np.float32)
    b = rng.standard_normal(rows).astype(np.float32) if bias else None
    return dcz.QuantizedLayer.from_dense(name, kind, weight.reshape(shape), codebook, bias=b)


def fc_model(rng):
    """LeNet-300-100 in miniature: flatten, fc, relu, fc (no bias), relu, fc."""
    layers = [random_layer(rng, "ip1", "fc", (40, 42), 0.1, 32, empty_cols=(0, 5, 41)),
              random_layer(rng, "ip2", "fc", (30, 40), 0.2, 16, empty_cols=(3,), bias=False),
              random_layer(rng, "ip3", "fc", (10, 30), 0.3, 4)]
    ops = [{"op": "flatten"}, {"op": "fc", "layer": "ip1"}, {"op": "relu"}, {"op": "fc", "layer": "ip2"},
           {"op": "relu"}, {"op": "fc", "layer": "ip3"}]
    return layers, {"model": "tiny-fc", "input_shape": [1, 6, 7], "ops": ops}


def conv_model(rng):
    """LeNet-5-like: a dense-path conv (padded), pooling, a sparse-path conv (1008 weights per output,
    10% dense), overlapping pooling, then fc layers."""
    layers = [random_layer(rng, "conv1", "conv", (112, 1, 3, 3), 0.7, 64),
              random_layer(rng, "conv2", "conv", (8, 112, 3, 3), 0.1, 16, empty_cols=range(0, 1008, 7)),
              random_layer(rng, "ip1", "fc", (16, 32), 0.3, 16, empty_cols=(1, 2)),
              random_layer(rng, "ip2", "fc", (10, 16), 0.5, 8)]
    ops = [{"op": "conv", "layer": "conv1", "stride": [1, 1], "padding": [1, 1]},
           {"op": "maxpool", "kernel": 2, "stride": 2}, {"op": "relu"},
           {"op": "conv", "layer": "conv2", "stride": 1, "padding": 0},
           {"op": "maxpool", "k": 3, "stride": 1}, {"op": "flatten"},
           {"op": "fc", "layer": "ip1"}, {"op": "relu"}, {"op": "fc", "layer": "ip2"}]
    return layers, {"model": "tiny-conv", "input_shape": [1, 12, 12], "ops": ops}


MODELS = {"fc": fc_model, "conv": conv_model}


def torch_reference(layers, meta, x) -> np.ndarray:
    """The forward pass of meta['ops'] in float64 PyTorch on the decoded dense weights."""
    by_name = {layer.name: layer for layer in layers}
    t = torch.from_numpy(np.asarray(x, np.float64))
    for op in meta["ops"]:
        layer = by_name.get(op.get("layer"))
        if layer is not None:
            w = torch.from_numpy(layer.to_dense().astype(np.float64))
            b = None if layer.bias is None else torch.from_numpy(layer.bias.astype(np.float64))
        if op["op"] == "fc":
            t = F.linear(t, w, b)
        elif op["op"] == "conv":
            t = F.conv2d(t, w, b, op["stride"], op["padding"])
        elif op["op"] == "relu":
            t = F.relu(t)
        elif op["op"] == "maxpool":
            k = op.get("kernel", op.get("k"))
            t = F.max_pool2d(t, k, op.get("stride", k))
        elif op["op"] == "flatten":
            t = t.flatten(1)
    return t.numpy()


def rel_error(got, ref) -> float:
    """Norm-wise relative error."""
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))


def inputs(rng, shape, n):
    """n inputs of per-sample `shape`: about half zeros (like images and post-ReLU maps)."""
    x = rng.random((n, *shape)).astype(np.float32)
    x[rng.random(x.shape) < 0.5] = 0.0
    return x


@pytest.fixture(scope="module", params=sorted(MODELS))
def saved(request, tmp_path_factory):
    """(kind, path, layers, meta) of a random model written with deepcompress.format."""
    layers, meta = MODELS[request.param](np.random.default_rng(len(request.param)))
    path = tmp_path_factory.mktemp("models") / f"{request.param}.dcz"
    dcz.write(path, layers, meta)
    return request.param, path, layers, meta


@pytest.mark.parametrize("tuned_for", [1, 64])
def test_matches_dense_torch_reference(saved, tuned_for):
    kind, path, layers, meta = saved
    model = load(path, batch=tuned_for)
    rng = np.random.default_rng(tuned_for)
    shape = tuple(meta["input_shape"])
    for n in (1, 5, 70):  # 70 > the 64-sample blocks of the batched FC path
        x = inputs(rng, shape, n)
        got = model(x)
        assert got.dtype == np.float32 and got.shape == (n, 10)
        assert rel_error(got, torch_reference(layers, meta, x)) < REL_TOL
    one = inputs(rng, shape, 1)
    assert model(one[0]).shape == (10,)
    assert rel_error(model(one[0]), torch_reference(layers, meta, one)[0]) < REL_TOL
    zeros = np.zeros((3, *shape), np.float32)  # every activation of the first layer skipped
    assert rel_error(model(zeros), torch_reference(layers, meta, zeros)) < REL_TOL
    assert rel_error(model(zeros[0]), torch_reference(layers, meta, zeros[:1])[0]) < REL_TOL
    assert model(np.zeros((0, *shape), np.float32)).shape == (0, 10)


def test_float64_input_and_caller_array_untouched(saved):
    _, path, layers, meta = saved
    model = load(path)
    x = inputs(np.random.default_rng(1), tuple(meta["input_shape"]), 4).astype(np.float64) - 0.25
    before = x.copy()
    assert rel_error(model(x), torch_reference(layers, meta, x)) < REL_TOL
    np.testing.assert_array_equal(x, before)  # relu works in place, but on the model's own copy
    np.testing.assert_array_equal(model.predict(x), torch_reference(layers, meta, x).argmax(1))


def test_conv_paths_and_summary(saved):
    kind, path, _, _ = saved
    rows = {r["name"]: r for r in load(path).summary()}
    for r in rows.values():
        if r["kind"] == "fc":
            assert r["layout"] in ("csc", "panel")
            assert r["bytes_per_nonzero"]["entries"] <= 2.0  # the compactness limit, before pointers
        assert r["bytes"]["total"] == r["bytes"]["entries"] + r["bytes"]["pointers"] + r["bytes"]["codebook"]
    if kind == "conv":
        assert rows["conv1"]["layout"] == "dense" and rows["conv2"]["layout"] == "sparse-panel"
        assert rows["conv2"]["nonzeros"] > 0


class SpyLayout:
    """A layout that records, for each kernel call, the threads it is given and numba's thread count."""

    def __init__(self, layout):
        self.layout, self.calls = layout, []

    def __getattr__(self, name):
        return getattr(self.layout, name)

    def matvec(self, x, y, threads=1):
        """The wrapped matvec, recorded."""
        self.calls.append((threads, numba.get_num_threads()))
        self.layout.matvec(x, y, threads)

    def matmat(self, xt, yt, threads=1):
        """The wrapped matmat, recorded."""
        self.calls.append((threads, numba.get_num_threads()))
        self.layout.matmat(xt, yt, threads)


def test_threads_reach_the_fc_kernels_at_every_batch_size(saved):
    """load(path, threads=2) runs every FC kernel call on 2 threads, batch 1 included, and gives the outputs
    of the same layouts on one thread exactly (threads split output rows, never a sum)."""
    kind, path, _, meta = saved
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba may start only one thread here (NUMBA_NUM_THREADS)")
    model = load(path, threads=2)
    fcs = [op.layer for name, op in model.layers.items() if name.startswith("ip")]
    spies = []
    for layer in fcs:
        layer.layout = SpyLayout(layer.layout)
        spies.append(layer.layout)
    x = inputs(np.random.default_rng(4), tuple(meta["input_shape"]), 5)
    got = [model(x[0]), model(x)]
    assert [spy.calls for spy in spies] == [[(2, 2), (2, 2)]] * len(fcs)
    for layer in fcs:
        layer.threads = 1
    np.testing.assert_array_equal(got[0], model(x[0]))
    np.testing.assert_array_equal(got[1], model(x))
    if kind == "conv":
        assert model.layers["conv2"].conv._linear.threads == 2  # the sparse conv path


def test_conv_from_positions_passes_threads():
    rng = np.random.default_rng(5)
    layer = random_layer(rng, "conv", "conv", (8, 4, 3, 3), 0.2, 16)
    rows, cols = 8, 4 * 9
    col, row = np.divmod(np.asarray(layer.positions, np.int64), rows)
    args = (layer.shape, row * cols + col, layer.indices, layer.codebook, layer.bias)
    one = conv_from_positions(*args, path="sparse")
    two = conv_from_positions(*args, path="sparse", threads=2)
    assert (one._linear.threads, two._linear.threads) == (1, min(2, numba.config.NUMBA_NUM_THREADS))
    x = inputs(rng, (4, 9, 9), 3)
    np.testing.assert_array_equal(two(x), one(x))


def test_runtime_runs_without_torch_or_training_code(saved, tmp_path):
    """With torch blocked (convolutions then take the numpy path) the runtime imports no training code and
    matches the float64 reference."""
    kind, path, layers, meta = saved
    x = inputs(np.random.default_rng(2), tuple(meta["input_shape"]), 3)
    np.save(tmp_path / "x.npy", x)
    code = ("import numpy as np; from deepcompress.runtime import load\n"
            "np.save(sys.argv[3], load(sys.argv[1])(np.load(sys.argv[2])))\n" + LIST_HEAVY + "assert not heavy, heavy")
    without_torch(code, str(path), str(tmp_path / "x.npy"), str(tmp_path / "y.npy"))
    assert rel_error(np.load(tmp_path / "y.npy"), torch_reference(layers, meta, x)) < REL_TOL


def _write(tmp_path, layers, meta):
    path = tmp_path / "m.dcz"
    dcz.write(path, layers, meta)
    return path


@pytest.mark.parametrize("change, message", [
    ({"ops": None}, "no forward pass"),
    ({"ops": []}, "no forward pass"),
    ({"ops": "flatten"}, "no forward pass"),
    ({"ops": [{"op": "flatten"}, {"op": "rnn"}]}, "unsupported op 'rnn'"),
    ({"ops": [{"op": "flatten"}, {"layer": "ip1"}]}, "'op' name"),
    ({"ops": [{"op": "flatten"}, {"op": "fc", "layer": "nope"}]}, "'nope' is not in the file"),
    ({"ops": [{"op": "flatten"}, {"op": "fc"}]}, "must name its layer"),
    ({"ops": [{"op": "fc", "layer": "ip1"}]}, "flatten op may be missing"),
    ({"ops": [{"op": "flatten"}, {"op": "conv", "layer": "ip1"}]}, "is a fc layer, not conv"),
    ({"ops": [{"op": "maxpool", "kernel": 7}]}, "at least 7x7"),
    ({"ops": [{"op": "maxpool"}]}, "needs a kernel"),
    ({"ops": [{"op": "maxpool", "kernel": 0}]}, "kernel must be an integer >= 1"),
    ({"ops": [{"op": "maxpool", "kernal": 2}]}, "unknown key 'kernal'"),
    ({"ops": [{"op": "maxpool", "k": 2, "kernel": 2}]}, "given twice"),
    ({"ops": [{"op": "maxpool", "kernel": 2, "padding": 2}]}, "more than half the kernel"),
    ({"input_shape": None}, "input_shape"),
    ({"input_shape": [1, 0, 7]}, "input_shape"),
    ({"input_shape": [1, 6, 8]}, "takes 42 inputs"),
])
def test_files_the_runtime_cannot_run(tmp_path, change, message):
    layers, meta = fc_model(np.random.default_rng(0))
    meta = {k: v for k, v in {**meta, **change}.items() if v is not None}
    path = _write(tmp_path, layers, meta)
    with pytest.raises(ModelError, match=message) as info:
        load(path)
    assert isinstance(info.value, UserError) and str(path) in str(info.value)


def test_conv_op_parameters_checked(tmp_path):
    layers, meta = conv_model(np.random.default_rng(0))
    for bad, message in (({"stride": [1, 0]}, "stride must be an integer >= 1"),
                         ({"padding": -1}, "padding must be an integer >= 0"), ({"dilaton": 2}, "unknown key .dilaton."),
                         ({"stride": "1"}, "must be an integer"),
                         ({"groups": 0}, r"groups must be an integer >= 1, got 0$")):
        ops = [dict(meta["ops"][0], **bad)] + meta["ops"][1:]
        with pytest.raises(ModelError, match=message):
            load(_write(tmp_path, layers, dict(meta, ops=ops)))


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_f16_file_matches_dense_reference_of_its_decoded_weights(tmp_path, kind):
    layers, meta = MODELS[kind](np.random.default_rng(7))
    layers = [dcz.QuantizedLayer(**{**vars(layer), "value_dtype": "f16"}) for layer in layers]
    path = tmp_path / f"{kind}-f16.dcz"
    dcz.write(path, layers, meta)
    assert path.read_bytes()[4:6] == struct.pack("<H", 2)
    decoded, _ = dcz.read(path)
    for got, layer in zip(decoded, layers):  # float16 values come back as float32, exactly the rounded ones
        assert got.value_dtype == "f16" and got.codebook.dtype == np.float32 and got.equals(layer)
    rng = np.random.default_rng(3)
    shape = tuple(meta["input_shape"])
    for batch in (1, 64):
        model = load(path, batch=batch)
        for n in (1, 70):
            x = inputs(rng, shape, n)
            assert rel_error(model(x), torch_reference(decoded, meta, x)) < REL_TOL


def test_newer_format_version_and_missing_file(tmp_path):
    layers, meta = fc_model(np.random.default_rng(0))
    blob = bytearray(dcz.encode(layers, meta))
    blob[4:6] = struct.pack("<H", dcz.VERSION + 1)
    path = tmp_path / "new.dcz"
    path.write_bytes(bytes(blob))
    with pytest.raises(dcz.FormatError, match="newer than this reader supports"):
        load(path)
    with pytest.raises(dcz.FormatError, match="cannot read file"):
        load(tmp_path / "absent.dcz")


@pytest.mark.parametrize("make, message", [
    (lambda: np.zeros((1, 28, 28), np.float32), r"shape \(1, 28, 28\); the model takes \(1, 6, 7\)"),
    (lambda: np.zeros((2, 42), np.float32), "the model takes"),
    (lambda: np.zeros((6, 7), np.float32), "the model takes"),
    (lambda: np.zeros((2, 1, 6, 7), np.uint8), "floating point"),
    (lambda: np.zeros((1, 6, 7), np.int64), "floating point"),
    (lambda: np.array("a"), "floating point"),
    (lambda: np.where(np.eye(42)[:2].reshape(2, 1, 6, 7) > 0, np.nan, 0.0), "NaN"),
    (lambda: np.full((1, 6, 7), np.inf, np.float32), "infinite"),
])
def test_inputs_the_model_rejects(tmp_path, make, message):
    layers, meta = fc_model(np.random.default_rng(0))
    model = load(_write(tmp_path, layers, meta))
    with pytest.raises(InputError, match=message) as info:
        model(make())
    assert isinstance(info.value, UserError)


def test_large_finite_inputs_are_not_mistaken_for_infinite(tmp_path):
    layers, meta = fc_model(np.random.default_rng(0))
    model = load(_write(tmp_path, layers, meta))
    x = np.full((2, 1, 6, 7), 3e38, np.float32)  # their sum overflows; each value is finite
    assert model(x).shape == (2, 10)


def test_unequal_stride_padding_and_pooling_match_torch(tmp_path):
    layers, meta = conv_model(np.random.default_rng(3))
    ops = [dict(meta["ops"][0], stride=[1, 2], padding=[2, 1]), {"op": "maxpool", "kernel": [2, 1], "stride": [2, 1]},
           {"op": "relu"}, dict(meta["ops"][3], padding=[0, 1]), {"op": "maxpool", "kernel": [1, 2]},
           {"op": "flatten"}]
    meta = dict(meta, ops=ops)
    model = load(_write(tmp_path, layers, meta))
    x = inputs(np.random.default_rng(4), tuple(meta["input_shape"]), 3)
    ref = torch_reference(layers, meta, x)
    assert model.output_shape == ref.shape[1:]
    assert rel_error(model(x), ref) < REL_TOL
