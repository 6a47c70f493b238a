"""The forward-pass schema (deepcompress.format.graph): docs/FORMAT.md's example through the exporter, the
CPU runtime and the hardware models, and parse/emit round trips of every op."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from deepcompress import format as dcz
from deepcompress.compress.export import architecture_ops, load_into
from deepcompress.format import graph
from deepcompress.hardware.model_sim import simulate_model
from deepcompress.models import build_model
from deepcompress.runtime import load

FORMAT_MD = Path(__file__).resolve().parents[1] / "docs" / "FORMAT.md"


def documented_meta() -> dict:
    """The JSON example of FORMAT.md's section 4.1."""
    section = FORMAT_MD.read_text().split("### 4.1 Forward pass", 1)[1]
    return json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))


def quantized_like(model: torch.nn.Module, rng) -> list[dcz.QuantizedLayer]:
    """Random weight-shared layers with the shapes of the model's Linear and Conv2d layers."""
    layers = []
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            kind = "fc" if isinstance(module, torch.nn.Linear) else "conv"
            codebook = rng.standard_normal(16).astype(np.float32) * 0.1
            shape = tuple(module.weight.shape)
            labels = np.where(rng.random(shape) < 0.3, rng.integers(0, 16, shape), -1)
            bias = rng.standard_normal(shape[0]).astype(np.float32) * 0.1
            layers.append(dcz.QuantizedLayer.from_labels(name, kind, labels, codebook, bias=bias))
    return layers


def test_documented_example_runs_through_export_runtime_and_hardware(tmp_path):
    meta = documented_meta()
    model = build_model(meta["model"])
    assert architecture_ops(model, torch.zeros(1, *meta["input_shape"])) == meta["ops"]  # the exporter writes exactly the documented ops
    layers = quantized_like(model, np.random.default_rng(0))
    path = tmp_path / "lenet5.dcz"
    dcz.write(path, layers, meta)
    with torch.no_grad():
        load_into(model, path)
        x = np.random.default_rng(1).random((4, *meta["input_shape"]), dtype=np.float32)
        expected = model(torch.from_numpy(x)).numpy()
    got = load(path)(x)
    assert np.abs(got - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())
    for arch in ("eie", "diannao", "cpu", "gpu"):
        records = simulate_model(path, arch)
        assert not any(r.get("skipped") for r in records), arch
        assert records[-1]["layers_run"] == len(layers) and records[-1]["time_us"] > 0


def test_old_spellings_parse_to_the_same_records():
    old = [{"op": "conv", "layer": "c", "stride": 1, "padding": 0}, {"op": "maxpool", "k": 2}]
    new = [{"op": "conv", "layer": "c", "stride": [1, 1], "padding": [0, 0]},
           {"op": "maxpool", "kernel": 2, "stride": 2}]
    assert [graph.parse_op(o, i) for i, o in enumerate(old)] == [graph.parse_op(o, i) for i, o in enumerate(new)]
    assert graph.emit_ops(graph.parse_op(o, i) for i, o in enumerate(old)) == new


@pytest.mark.parametrize("op", [
    graph.Fc(layer="a"), graph.Conv(layer="b", stride=(2, 1), padding=(0, 3)), graph.Relu(), graph.Flatten(),
    graph.MaxPool((3, 3), (2, 2)), graph.MaxPool((2, 3), (1, 3)), graph.LeakyRelu(0.2), graph.Elu(0.5),
    graph.Softplus(2.0, 3.0), graph.Mish(), graph.Prelu((0.1, -0.2)), graph.GroupNorm(2, (1.0,) * 4, (0.5,) * 4, 1e-3),
    graph.Slice(-1, 2, None), graph.Slice(0, -3, -1), graph.Upsample((2, 3)),
])
def test_emit_then_parse_is_the_identity(op):
    assert graph.parse_op(json.loads(json.dumps(op.emit())), 0) == op


def test_shapes_are_inferred_for_every_op():
    layers = {"c": dcz.QuantizedLayer.from_labels("c", "conv", np.zeros((4, 2, 3, 3), int), [1.0]),
              "f": dcz.QuantizedLayer.from_labels("f", "fc", np.zeros((5, 16), int), [1.0]),
              "g": dcz.QuantizedLayer.from_labels("g", "fc", np.zeros((5, 36), int), [1.0])}
    meta = {"input_shape": [2, 7, 8],
            "ops": [{"op": "conv", "layer": "c", "stride": [2, 1], "padding": [1, 0]}, {"op": "relu"},
                    {"op": "maxpool", "kernel": [2, 3], "stride": [2, 2]}, {"op": "flatten"},
                    {"op": "fc", "layer": "f"}]}
    fp = graph.parse_forward(meta, layers)
    # conv: (7 + 2 - 3) // 2 + 1 = 4, (8 - 3) // 1 + 1 = 6; pool: (4 - 2) // 2 + 1 = 2, (6 - 3) // 2 + 1 = 2
    assert fp.input_shape == (2, 7, 8) and fp.outputs == ((4, 4, 6), (4, 4, 6), (4, 2, 2), (16,), (5,))
    meta["ops"][-1] = {"op": "fc", "layer": "g"}
    with pytest.raises(graph.GraphError, match=r"op 4 \(fc\): layer 'g' takes 36 inputs, gets shape \(16,\)"):
        graph.parse_forward(meta, layers)


@pytest.mark.parametrize("record, message", [
    ({"op": "elu", "alpha": "1"}, r"op 0 \(elu\): alpha must be a finite number, got '1'"),
    ({"op": "leaky_relu", "negative_slope": float("nan")}, "negative_slope must be a finite number"),
    ({"op": "softplus", "beta": 0}, r"beta must be > 0, got 0\.0"),
    ({"op": "prelu", "slope": []}, "slope must be a nonempty list"),
    ({"op": "group_norm", "groups": 3, "weight": [1, 1], "bias": [0, 0]}, r"a multiple of groups \(3\)"),
    ({"op": "group_norm", "groups": 0, "weight": [1], "bias": [0]}, "groups must be a positive integer, got 0"),
])
def test_a_malformed_activation_or_norm_record_is_refused_naming_the_field(record, message):
    with pytest.raises(graph.GraphError, match=message):
        graph.parse_op(record, 0)


@pytest.mark.parametrize("record, shape, message", [
    ({"op": "prelu", "slope": [0.1, 0.2]}, [3, 4], r"2 slopes, input \(3, 4\)"),
    ({"op": "group_norm", "groups": 2, "weight": [1] * 4, "bias": [0] * 4}, [6, 5], r"normalises 4 channels"),
])
def test_per_channel_records_check_the_channels_they_read(record, shape, message):
    with pytest.raises(graph.GraphError, match=message):
        graph.parse_forward({"input_shape": shape, "ops": [record]}, {})
