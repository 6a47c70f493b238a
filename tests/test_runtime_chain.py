"""The batch-1 fast path (runtime/chain.py, fused.py): a chain model run step by step with each FC's
ReLU fused in gives the op-by-op graph evaluation's outputs bit for bit, in every precision; the one-pass
input copy and finiteness test agree with numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepcompress import format as dcz
from deepcompress.runtime import intkernels, kernels, load
from deepcompress.runtime.compiled import FcRun, fc_run
from deepcompress.runtime.errors import InputError
from deepcompress.runtime.fused import all_finite, copy_finite
from deepcompress.runtime.nonzeros import from_dense
from deepcompress.runtime.ops import Fc
from deepcompress.runtime.sparse_fc import SparseLinear
from deepcompress.runtime.int_fc import IntLinear

from test_runtime_model import MODELS, inputs, random_layer

LENET_300_100 = Path(__file__).parent / "data" / "lenet-300-100-mnist.dcz"


def graph_outputs(model, x) -> np.ndarray:
    """model(x) evaluated op by op through the graph (the path every DAG takes), not the chain."""
    chain, single, model._chain, model._single = model._chain, model._single, None, None
    try:
        return model(x)
    finally:
        model._chain, model._single = chain, single


def same_bits(a, b) -> bool:
    """Equal float32 arrays bit for bit (a zero's sign and NaN payloads included)."""
    return a.shape == b.shape and np.array_equal(np.asarray(a, np.float32).view(np.uint32),
                                                 np.asarray(b, np.float32).view(np.uint32))


@pytest.mark.parametrize("precision", ["fp32", "int16", "int8"])
@pytest.mark.parametrize("kind", sorted(MODELS))
def test_chain_equals_the_graph_evaluation_bit_for_bit(tmp_path, kind, precision):
    layers, meta = MODELS[kind](np.random.default_rng(11))
    path = tmp_path / "m.dcz"
    dcz.write(path, layers, meta)
    model = load(path, precision=precision)
    assert model._chain is not None
    fused = [model.ops[i + 1] for i, op in enumerate(model.ops[:-1])
             if isinstance(op, Fc) and meta["ops"][i + 1]["op"] == "relu"]
    assert fused and not any(relu is step for relu in fused for step in model._chain.steps)  # in the FC call
    x = inputs(np.random.default_rng(3), tuple(meta["input_shape"]), 6)
    x[2] = 0.0  # every activation zero: the ReLU's zeros and the kernels' skipping
    for batch in (x[0], x[2], x[:1], x):
        assert same_bits(model(batch), graph_outputs(model, batch))


@pytest.mark.parametrize("precision", ["fp32", "int16", "int8"])
def test_lenet_300_100_runs_its_fc_layers_as_one_compiled_call(precision):
    """The file's three FC layers are one FcRun (where the C extension is built), equal to the op-by-op
    evaluation bit for bit; a layer given another layout after loading is run op by op (never stale)."""
    if not kernels.HAVE_C or intkernels.best_path() == "portable":
        pytest.skip("the C extension is not built here")
    model = load(LENET_300_100, precision=precision)
    runs = [s for s in model._chain.steps if isinstance(s, FcRun)]
    assert len(runs) == 1 and len(runs[0].fcs) == 3 and runs[0].relus == [True, True, False]
    x = inputs(np.random.default_rng(7), (1, 28, 28), 5)
    for i in range(5):
        assert same_bits(model(x[i]), graph_outputs(model, x[i]))
    layer = model.layers["ip2"].layer
    calls = []
    original = layer.layout

    class Spy:
        def __getattr__(self, name):
            return getattr(original, name)

        def matvec(self, *args):
            calls.append("matvec")
            return original.matvec(*args)

        def run(self, *args):
            calls.append("run")
            return original.run(*args)

    layer.layout = Spy()
    want = model(x[1])
    assert calls and same_bits(want, graph_outputs(model, x[1]))


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_one_sample_runs_straight_from_the_callers_array(precision):
    """One float32 sample (or a batch of one) goes to the compiled call without the checked copy: the same
    bits as the graph evaluation, the caller's array untouched, NaN and inf still refused by name, and
    other dtypes or strides taking the checked path to the same outputs."""
    if not kernels.HAVE_C or intkernels.best_path() == "portable":
        pytest.skip("the C extension is not built here")
    model = load(LENET_300_100, precision=precision)
    assert model._single is model._chain.steps[-1]
    x = inputs(np.random.default_rng(5), (1, 28, 28), 2)
    kept = x.copy()
    assert same_bits(model(x[0]), graph_outputs(model, x[0])) and same_bits(model(x[:1]), graph_outputs(model, x[:1]))
    assert same_bits(x, kept)
    assert same_bits(model(x[0].astype(np.float64)), model(x[0]))
    assert same_bits(model(np.asfortranarray(x[0, 0])[None]), model(x[0]))
    for bad, word in ((np.nan, "NaN"), (np.inf, "infinite")):
        y = x[0].copy()
        y[0, 3, 4] = bad
        with pytest.raises(InputError, match=word):
            model(y)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_inf_from_an_earlier_step_runs_layer_by_layer_as_before(precision):
    """LeNet-5's convolutions overflow to inf on a huge finite input: its compiled FC run then gives the
    layer-by-layer outputs (the graph evaluation's), in their shape, for one sample and a batch of one."""
    model = load(Path(__file__).parent / "data" / "lenet-5-mnist.dcz", precision=precision)
    x = np.full((1, 1, 28, 28), 3e38, np.float32)
    for batch in (x[0], x):
        got, want = model(batch), graph_outputs(model, batch)
        assert got.shape == want.shape == (10,) * (batch.ndim == 3) + (1, 10) * (batch.ndim == 4)
        assert same_bits(got, want)


def test_a_graph_that_is_not_a_chain_runs_op_by_op(tmp_path):
    rng = np.random.default_rng(2)
    layers = [random_layer(rng, "a", "fc", (12, 12), 0.5, 8), random_layer(rng, "b", "fc", (12, 12), 0.5, 8)]
    ops = [{"op": "fc", "layer": "a"}, {"op": "relu"}, {"op": "fc", "layer": "b"},
           {"op": "add", "inputs": [1, 2]}]
    meta = {"model": "residual", "input_shape": [12], "ops": ops}
    path = tmp_path / "r.dcz"
    dcz.write(path, layers, meta)
    model = load(path)
    assert model._chain is None
    x = inputs(rng, (12,), 3)
    w = [layer.to_dense() for layer in layers]
    h = np.maximum(x @ w[0].T + layers[0].bias, 0)
    np.testing.assert_allclose(model(x), h + h @ w[1].T + layers[1].bias, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layout", ["csc", "panel", "grouped", "int8-rows", "int8-blocks", "int8-rowquads", "int8-panelquads",
                                    "int8-csc", "int8-csc-abs", "int16-rows", "int16-csc"])
def test_fused_relu_equals_relu_after_the_layer(layout):
    """Fc(x, relu=True) at batch 1 (bias, kernel and ReLU in one call) and at batch 3 equals
    np.maximum(Fc(x), 0), the separate Relu op's result, bit for bit."""
    rng = np.random.default_rng(len(layout))
    book = np.sort(rng.uniform(-1, 1, 16)).astype(np.float32)
    w = book[rng.integers(0, 16, (70, 90))] * (rng.random((70, 90)) < 0.3)
    nz = from_dense(w.astype(np.float32), book)
    bias = rng.standard_normal(70).astype(np.float32)
    if layout.startswith("int"):
        precision, name = layout.split("-", 1)
        fc = Fc(IntLinear(nz, bias, precision, name), "ip", "op 0")
    else:
        fc = Fc(SparseLinear.from_layer(nz, bias, layout), "ip", "op 0")
    x = np.maximum(rng.standard_normal((3, 90)), 0).astype(np.float32)
    for batch in (x[:1], x):
        want = np.maximum(fc(batch), 0.0)
        assert (want == 0).any() and (want > 0).any()
        assert same_bits(fc(batch, relu=True), want), layout


@pytest.mark.parametrize("shape", [(1, 5), (3, 1, 7, 7), (0, 4), (2, 300)])
def test_one_pass_copy_and_finiteness_test_agree_with_numpy(shape):
    rng = np.random.default_rng(sum(shape))
    x = (rng.standard_normal(shape) * 1e37).astype(np.float32)
    x.reshape(-1)[:2] = [np.finfo(np.float32).max, -np.finfo(np.float32).tiny / 4][:x.size]  # finite extremes
    dst = np.empty_like(x)
    assert copy_finite(x, dst) and all_finite(x) and same_bits(dst, x)
    for bad in (np.inf, -np.inf, np.nan):
        if x.size:
            y = x.copy()
            y.reshape(-1)[rng.integers(y.size)] = bad
            assert not copy_finite(y, dst) and not all_finite(y)
            assert same_bits(dst, y)


@pytest.mark.parametrize("layouts", [("csc", "panel", "csc"), ("int8-rows", "int8-cols", "int8-blocks"),
                                     ("int8-quads", "int8-rows", "int8-cols"),
                                     ("int8-csc-abs", "int8-csc-abs", "int8-blocks"),
                                     ("int16-rows", "int16-rows", "int16-rows"),
                                     ("int8-rows", "int8-rows-packed", "int8-rows")])
def test_every_compiled_kernel_equals_the_layer_by_layer_calls(layouts):
    """An FcRun over each layout with a compiled batch-1 call (stored and coded int16 rows: 40 and
    16 entries) equals the layers called one by one with the separate ReLU, bit for bit."""
    if not kernels.HAVE_C or intkernels.best_path() == "portable":
        pytest.skip("the C extension is not built here")
    if "int8-rows-packed" in layouts and intkernels.best_path() != "vbmi":
        pytest.skip("rows-packed's kernel needs AVX-512 VBMI")
    rng = np.random.default_rng(len("".join(layouts)))
    sizes, fcs = [50, 70, 40, 10], []
    for j, layout in enumerate(layouts):
        k = 40 if j == 1 else 16
        book = np.sort(rng.uniform(-1, 1, k)).astype(np.float32)
        shape = (sizes[j + 1], sizes[j])
        w = book[rng.integers(0, k, shape)] * (rng.random(shape) < 0.3)
        nz, bias = from_dense(w.astype(np.float32), book), rng.standard_normal(shape[0]).astype(np.float32)
        if layout.startswith("int"):
            precision, name = layout.split("-", 1)
            fcs.append(Fc(IntLinear(nz, bias, precision, name), f"ip{j}", f"op {j}"))
        else:
            fcs.append(Fc(SparseLinear.from_layer(nz, bias, layout), f"ip{j}", f"op {j}"))
    run = fc_run(fcs, [True, True, False])
    assert run is not None
    for x in (np.maximum(rng.standard_normal((1, 50)), 0).astype(np.float32), np.zeros((1, 50), np.float32)):
        want = np.maximum(fcs[0](x), 0.0)
        want = fcs[2](np.maximum(fcs[1](want), 0.0))
        assert same_bits(run(x), want), layouts
