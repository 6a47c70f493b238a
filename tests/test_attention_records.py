"""The sequence and attention op records alone (matmul, scalar, sub, mean, conv1d): the shapes they infer,
what they emit against what they parse, the shapes and parameters they refuse, and their FORMAT.md rows."""

from pathlib import Path

import numpy as np
import pytest

from deepcompress import format as dcz
from deepcompress.format import graph
from deepcompress.format.op_records_attn import ATTN_OPS


@pytest.mark.parametrize("obj, shapes, out", [
    ({"op": "matmul", "inputs": [-1, -1]}, [(2, 5, 3), (1, 3, 4)], (2, 5, 4)),
    ({"op": "matmul", "inputs": [-1, -1]}, [(5, 3), (2, 3, 4)], (2, 5, 4)),
    ({"op": "scalar", "fn": "rdiv", "value": 2}, [(3, 4)], (3, 4)),
    ({"op": "sub", "inputs": [-1, -1]}, [(3, 1), (4,)], (3, 4)),
    ({"op": "mean", "dims": [0, -1]}, [(3, 4, 5)], (4,)),
    ({"op": "mean", "dims": [1], "keepdim": True}, [(3, 4, 5)], (3, 1, 5)),
])
def test_op_records_infer_shapes_and_emit_what_they_parse(obj, shapes, out):
    op = graph.parse_op(obj, 0)
    assert tuple(op.infer(shapes, {}, "op 0")) == out
    assert graph.parse_op(op.emit(), 0) == op


def test_conv1d_record_shape_and_defaults():
    layer = dcz.QuantizedLayer.from_labels("c", "conv", np.zeros((6, 2, 1, 3), int), [1.0])
    op = graph.parse_op({"op": "conv1d", "layer": "c", "stride": 2, "padding": [1, 2], "groups": 2}, 0)
    assert op.out_shape((4, 10), {"c": layer}, "op 0") == (6, (10 + 3 - 3) // 2 + 1)
    assert graph.parse_op({"op": "conv1d", "layer": "c"}, 0).emit() == {"op": "conv1d", "layer": "c", "stride": 1,
                                                                       "padding": 0}
    tall = dcz.QuantizedLayer.from_labels("t", "conv", np.zeros((6, 2, 3, 3), int), [1.0])
    with pytest.raises(graph.GraphError, match="kernel height 3"):
        graph.parse_op({"op": "conv1d", "layer": "t"}, 0).out_shape((2, 10), {"t": tall}, "op 0")


@pytest.mark.parametrize("obj, shapes, message", [
    ({"op": "matmul", "inputs": [-1, -1]}, [(5, 3), (4, 4)], "cannot multiply"),
    ({"op": "matmul", "inputs": [-1, -1]}, [(2, 5, 3), (3, 3, 4)], "do not broadcast"),
    ({"op": "mean", "dims": [0, 0]}, [(3, 4)], "name an axis twice"),
    ({"op": "mean", "dims": [2]}, [(3, 4)], "dim 2 is not an axis"),
])
def test_op_records_refuse_shapes_they_cannot_take(obj, shapes, message):
    with pytest.raises(graph.GraphError, match=message):
        graph.parse_op(obj, 0).infer(shapes, {}, "op 0")


@pytest.mark.parametrize("obj, message", [
    ({"op": "scalar", "fn": "pow", "value": 2}, "fn must be one of"),
    ({"op": "scalar", "fn": "mul", "value": float("inf")}, "value must be a finite number"),
    ({"op": "scalar", "fn": "mul"}, "value must be a finite number"),
    ({"op": "mean", "dims": []}, "dims must be a nonempty list"),
    ({"op": "matmul"}, "takes 2 input"),
    ({"op": "conv1d", "layer": "c", "padding": [1, 2, 3]}, r"padding must be an integer or \[left, right\]"),
])
def test_op_records_refuse_bad_parameters(obj, message):
    if obj["op"] == "matmul":
        obj = {**obj, "inputs": [-1]}
    with pytest.raises(graph.GraphError, match=message):
        graph.parse_op(obj, 0)


def test_every_new_op_is_documented_in_format_md():
    section = (Path(__file__).resolve().parents[1] / "docs" / "FORMAT.md").read_text().split("#### 4.1.1", 1)[1]
    table = [line for line in section.split("\n## ", 1)[0].splitlines() if line.startswith("| `")]
    documented = {name.strip(" `") for line in table for name in line.split("|")[1].split(",")}
    assert set(ATTN_OPS) <= documented
    assert set(ATTN_OPS) <= set(graph.OPS)
