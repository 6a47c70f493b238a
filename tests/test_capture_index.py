"""Indexing and splitting captured as the file's slice / select ops (x[:, 1:], x[..., :k], narrow, and each
part of chunk / split / tensor_split / unbind / GLU), run from the file and through decompress against
PyTorch; what they cannot express refused; the slice record's own checks."""

import pytest
import torch
import torch.nn.functional as F

from deepcompress import decompress
from deepcompress import format as dcz
from deepcompress.compress.capture import Unsupported
from deepcompress.compress.export import architecture_ops
from deepcompress.format import graph
from deepcompress.hardware.model_file import load_model
from deepcompress.hardware.model_sim import simulate_model

from conftest import REL_TOL, Lambda, rel_error, round_trip

pytestmark = pytest.mark.usefixtures("one_thread")


def weighted_thirds(h):
    q, k, v = h.chunk(3, dim=-1)  # the fused qkv projection's split
    return q * k + 2 * v


def glu_by_hand(h):
    a, b = torch.split(h, [9, 9], dim=1)
    return a * torch.sigmoid(b)


@pytest.mark.parametrize("fn, ops", [
    (weighted_thirds, ["fc", "slice", "slice", "slice", "mul", "scalar", "add"]),
    (glu_by_hand, ["fc", "slice", "slice", "sigmoid", "mul"]),
    (lambda h: F.glu(h, -1), ["fc", "slice", "slice", "sigmoid", "mul"]),
    (torch.nn.GLU(1), ["fc", "slice", "slice", "sigmoid", "mul"]),  # a module: Lambda's submodule
    (lambda h: torch.split(h, [4, 8, 6], dim=1)[1].relu(), ["fc", "slice", "relu"]),
    (lambda h: torch.tensor_split(h, 3, dim=1)[2], ["fc", "slice"]),
    (lambda h: h[:, 2:10], ["fc", "slice"]),
    (lambda h: h[..., :-3] * 2, ["fc", "slice", "scalar"]),
    (lambda h: h[:, : h.shape[1] // 2], ["fc", "slice"]),  # a bound computed from a size
    (lambda h: h.narrow(1, 3, 5), ["fc", "slice"]),
    (lambda h: h.narrow(-1, -3, 3), ["fc", "slice"]),  # to the end: start + length is 0
    (lambda h: h.narrow(1, start=2, length=3), ["fc", "slice"]),
    (lambda h: h[:, :] * 2, ["fc", "scalar"]),  # keeps everything: no op
    (lambda h: (lambda p: p[0] + p[2])(h.reshape(-1, 3, 6).unbind(1)), ["fc", "reshape", "select", "select", "add"]),
    (lambda h: h.reshape(-1, 3, 6)[:, 1, 2:], ["fc", "reshape", "slice", "select"]),
    (lambda h: h.reshape(-1, 3, 6)[:, -1:, 1][:, 0], ["fc", "reshape", "slice", "select", "select"]),
])
def test_indexing_and_splitting_run_from_the_file_and_decompress(tmp_path, fn, ops):
    x = torch.rand(4, 8) - 0.5
    got, expected, path = round_trip(Lambda(fn, out=18), x, tmp_path)
    assert got.shape == expected.shape
    assert rel_error(got, expected) < REL_TOL
    assert [op["op"] for op in dcz.read(path)[1]["ops"]] == ops
    with torch.no_grad():
        assert rel_error(decompress(path)(x).numpy(), expected) < REL_TOL


def test_slices_are_listed_as_not_costed_by_the_hardware_models(tmp_path):
    path = round_trip(Lambda(weighted_thirds, out=18), torch.rand(2, 8), tmp_path)[2]
    total = simulate_model(load_model(path), "eie")[-1]
    assert total["not_costed"]["slice"] == 3 and not total["partial"]


@pytest.mark.parametrize("fn, message", [
    (lambda h: h[:, ::2], r"the slice slice\(None, None, 2\) .*slice with step 1"),
    (lambda h: h[1:], r"indexing with slice\(1, None, None\) .*keep the whole batch"),
    (lambda h: h[:, None], r"indexing with .*use unsqueeze for new axes"),
    (lambda h: h[:, [0, 2]], r"indexing with .*index with integers and slices"),
    (lambda h: h.chunk(2, 0)[0], r"chunk\(\) over dim 0 .*other than the batch dimension"),
    (lambda h: h[:, 20:], r"the empty slice slice\(20, None, None\) of an axis of 18"),
    (lambda h: torch.cat(h.chunk(2, 1), 1), r"chunk: using all the parts of chunk at once \(in cat\)"),
    (lambda h: torch.sort(h, 1)[0], r"sort\(\) returning 2 tensors is not supported; the file has no op for it"),
    (lambda h: sum(p for p in h.chunk(2, 1)), r"Proxy object cannot be iterated.*; unpack a chunk / split into names"),
])
def test_indexing_the_file_cannot_express_is_refused(fn, message):
    with pytest.raises((Unsupported, graph.GraphError), match=message):
        ops = architecture_ops(Lambda(fn, out=18), torch.rand(1, 8))
        graph.parse_forward({"input_shape": [8], "ops": ops}, {"fc": dcz.QuantizedLayer.from_labels(
            "fc", "fc", torch.zeros(18, 8, dtype=torch.int64).numpy(), torch.ones(1).numpy())})


@pytest.mark.parametrize("record, message", [
    ({"op": "slice", "dim": 0, "start": 1.5}, "start must be an integer"),
    ({"op": "slice", "dim": 0, "start": 0, "stop": "end"}, "stop must be an integer or null"),
    ({"op": "slice", "dim": 2, "start": 0}, "dim 2 is not an axis of a 1-d per-sample shape"),
    ({"op": "slice", "dim": 0, "start": 5, "stop": 2}, "positions 5..2 of axis 0 of \\(8,\\) are empty"),
])
def test_a_malformed_slice_record_is_refused_naming_the_field(record, message):
    with pytest.raises(graph.GraphError, match=message):
        graph.parse_forward({"input_shape": [8], "ops": [record]}, {})


def test_a_slice_record_round_trips_with_an_open_end():
    op = graph.parse_op({"op": "slice", "dim": -1, "start": -3, "stop": None}, 0)
    assert op == graph.Slice(-1, -3, None) and op.out_shape((4, 8), {}, "op 0") == (4, 3)
    assert graph.parse_op(op.emit(), 0) == op


def _write_into_view(h):
    q, _ = h.chunk(2, -1)
    F.relu(q, inplace=True)  # in PyTorch this writes into h
    return h * 2


def _relu_into_reshaped(h):
    torch.nn.functional.relu(h.reshape(-1, 2, 9), inplace=True)
    return h + 1


def _in_place_then_only_its_result(h):
    y = h * 2  # read before the write: PyTorch sees the old values too
    b = F.relu(h[:, 4:8], inplace=True)
    return torch.cat([b, y[:, :4]], 1)  # the written memory read only through the write's own result


@pytest.mark.parametrize("fn", [_write_into_view, _relu_into_reshaped])
def test_an_in_place_write_into_memory_read_later_is_refused(fn):
    with pytest.raises(Unsupported, match=r"in-place operation whose input \(or a view of it\) is used again"):
        architecture_ops(Lambda(fn, out=18), torch.rand(1, 8))


def test_an_in_place_write_read_only_through_its_result_is_captured(tmp_path):
    x = torch.rand(4, 8) - 0.5
    got, expected, _ = round_trip(Lambda(_in_place_then_only_its_result, out=18), x, tmp_path)
    assert rel_error(got, expected) < REL_TOL


def _add_into_slice(h):
    a = h[:, :4]
    a += 1.0  # torch.fx records a + 1.0: the write into h is invisible to it
    return h * 2


def _add_into_another_name(h):
    kept = h
    h += 1.0  # likewise: `kept` is the same tensor in PyTorch, the unmodified value in the trace
    return kept * 2


@pytest.mark.parametrize("fn", [_add_into_slice, _add_into_another_name])
def test_a_write_the_trace_cannot_see_is_caught_by_running_both(fn):
    with pytest.raises(Unsupported, match=r"torch\.fx's trace of forward\(\) computes other values than the "
                                          r"model on the example input"):
        architecture_ops(Lambda(fn, out=18), torch.rand(1, 8))


class _Shared(torch.nn.Module):
    """Two parts of one chunk, an in-place activation on the first: the second does not share its memory."""

    def __init__(self):
        super().__init__()
        self.fc, self.act = torch.nn.Linear(8, 18), torch.nn.SiLU(inplace=True)

    def forward(self, x):
        a, b = self.fc(x).chunk(2, -1)
        return self.act(a) * b


def _dropout_then_in_place(h):
    y = F.dropout(h, 0.1, training=False)  # in eval the same tensor
    return h + F.relu(y, inplace=True)


def _shape_read_then_in_place(h):
    n = h.shape[0]  # reading .shape reads no memory
    return F.relu(h, inplace=True).reshape(n, -1)


def test_in_place_writes_that_touch_nothing_read_later_are_captured_and_dropout_aliases(tmp_path):
    x = torch.rand(4, 8) - 0.5
    for model in (_Shared(), Lambda(_shape_read_then_in_place, out=18)):
        got, expected, _ = round_trip(model, x, tmp_path)
        assert rel_error(got, expected) < REL_TOL
    with pytest.raises(Unsupported, match=r"in-place operation whose input \(or a view of it\) is used again"):
        architecture_ops(Lambda(_dropout_then_in_place, out=18), torch.rand(1, 8))
