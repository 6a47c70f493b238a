"""Sequence and attention ops (Conv1d, Linear over the last axis, matmul between activations, arithmetic
with numbers, mean, scaled_dot_product_attention) end to end: captured with torch.fx into the file, run by
the CPU runtime and by deepcompress.decompress, compared with PyTorch on the decoded weights; a tiny BERT
encoder layer written through write_model; the hardware models cost what they can and list the rest. The
op records alone (shapes, parameters, FORMAT.md): test_attention_records.py."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepcompress import decompress
from deepcompress import format as dcz
from deepcompress.compress.capture import Unsupported
from deepcompress.compress.export import architecture_ops, load_into, write_model
from deepcompress.compress.prune import Masks, TargetSparsity
from deepcompress.compress.quantize import SharedWeights
from deepcompress.format import graph
from deepcompress.hardware.diannao import simulate_layer
from deepcompress.hardware.model_sim import EIE_MATMUL_NOTE, simulate_model
from deepcompress.hardware.netspecs import LayerShape
from deepcompress.hardware.report import format_layer_records
from deepcompress.runtime import load

from conftest import shared_layers

REL_TOL = 1e-5


def rel_error(got, ref) -> float:
    """Norm-wise relative error."""
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))




def check_round_trip(model: nn.Module, x: torch.Tensor, tmp_path, density: float = 0.6) -> str:
    """Write the model (weights shared, forward pass captured on one sample); assert that the CPU runtime
    and decompress() both compute what the model computes; return the file's path."""
    model.eval()
    layers = shared_layers(model, np.random.default_rng(0), density=density)
    meta = {"input_shape": list(x.shape[1:]), "ops": architecture_ops(model, x[:1])}
    path = tmp_path / "model.dcz"
    dcz.write(path, layers, meta)
    with torch.no_grad():
        expected = model(x).numpy()
        back = decompress(path)(x).numpy()
    got = load(path)(x.numpy())
    assert got.shape == expected.shape == back.shape
    assert rel_error(got, expected) < REL_TOL and rel_error(back, expected) < REL_TOL
    return str(path)


class Fn(nn.Module):
    """fn(x, self): small models for one op each."""

    def __init__(self, fn, *modules: nn.Module):
        super().__init__()
        self.fn, self.mods = fn, nn.ModuleList(modules)

    def forward(self, x):
        return self.fn(x, self.mods)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's own, on the model
@pytest.mark.parametrize("conv, length", [
    (nn.Conv1d(4, 6, 3), 11),
    (nn.Conv1d(4, 8, 3, stride=2, padding=2, dilation=2, groups=2), 11),
    (nn.Conv1d(4, 4, 4, padding="same", groups=4, bias=False), 9),   # even kernel: the extra pad at the end
    (nn.Conv1d(4, 6, 5, padding="same", dilation=3), 16),
    (nn.Conv1d(4, 2, 1, padding="valid"), 7),
])
def test_conv1d_runs_like_torch(tmp_path, conv, length):
    torch.manual_seed(0)
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))
    model(torch.zeros(1, 4, length))  # materialise the lazy layer
    check_round_trip(model, torch.randn(3, 4, length), tmp_path)
    op = graph.parse_op(architecture_ops(model, torch.zeros(1, 4, length))[0], 0)
    assert isinstance(op, graph.Conv1d) and op.stride == conv.stride[0] and op.groups == conv.groups


def test_conv1d_file_layer_is_a_height_one_conv_and_loads_back(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(3, 5, 3, padding=1), nn.Tanh())
    path = check_round_trip(model, torch.randn(2, 3, 8), tmp_path)
    layers, _ = dcz.read(path)
    assert layers[0].kind == "conv" and layers[0].shape == (5, 3, 1, 3)
    fresh = nn.Sequential(nn.Conv1d(3, 5, 3, padding=1), nn.Tanh())
    load_into(fresh, path)
    assert torch.equal(fresh[0].weight, model[0].weight) and torch.equal(fresh[0].bias, model[0].bias)


def test_linear_over_the_last_axis_of_a_sequence(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 10), nn.GELU(), nn.Linear(10, 4))
    check_round_trip(model, torch.randn(3, 7, 6), tmp_path)
    check_round_trip(model, torch.randn(2, 2, 5, 6), tmp_path)


def heads(x, h=2):
    """(B, T, D) -> (B, h, T, D / h), the usual multi-head split written with sizes read from x."""
    b, t, d = x.shape
    return x.view(b, t, h, d // h).permute(0, 2, 1, 3)


@pytest.mark.parametrize("fn", [
    lambda x, m: torch.matmul(m[0](x), m[1](x).transpose(-1, -2)),
    lambda x, m: m[0](x) @ m[1](x).transpose(1, 2),
    lambda x, m: torch.bmm(m[0](x), torch.transpose(m[1](x), 1, 2)),
    lambda x, m: heads(m[0](x)) @ heads(m[1](x)).mT,
    lambda x, m: torch.matmul(heads(m[0](x)), heads(m[1](x)).permute(0, 1, 3, 2)) @ heads(m[1](x)),
    lambda x, m: (m[0](x).unsqueeze(1) @ m[1](x).transpose(-1, -2).unsqueeze(1)).squeeze(1),
])
def test_matmul_between_activations(tmp_path, fn):
    torch.manual_seed(0)
    check_round_trip(Fn(fn, nn.Linear(8, 8), nn.Linear(8, 8)), torch.randn(3, 5, 8), tmp_path)


@pytest.mark.parametrize("fn, record", [
    (lambda x, m: m[0](x) / math.sqrt(8), ("div", math.sqrt(8))),
    (lambda x, m: m[0](x) * 0.5, ("mul", 0.5)),
    (lambda x, m: m[0](x) + 1, ("add", 1.0)),
    (lambda x, m: m[0](x) - 0.25, ("sub", 0.25)),
    (lambda x, m: 1 - m[0](x), ("rsub", 1.0)),
    (lambda x, m: 2 / (torch.sigmoid(m[0](x)) + 1), ("rdiv", 2.0)),
    (lambda x, m: 3 * m[0](x), ("mul", 3.0)),
    (lambda x, m: -m[0](x), ("mul", -1.0)),
    (lambda x, m: m[0](x).div(4).add(0.5), ("div", 4.0)),
    (lambda x, m: m[0](x) / m[0](x).size(-1) ** 0.5, ("div", 8 ** 0.5)),  # a number computed from a size
    (lambda x, m: m[0](x) * x.shape[1], ("mul", 5.0)),
])
def test_arithmetic_with_numbers(tmp_path, fn, record):
    torch.manual_seed(0)
    model = Fn(fn, nn.Linear(8, 8))
    check_round_trip(model, torch.randn(3, 5, 8), tmp_path)
    scalars = [op for op in architecture_ops(model, torch.zeros(1, 5, 8)) if op["op"] == "scalar"]
    assert any(s["fn"] == record[0] and s["value"] == pytest.approx(record[1]) for s in scalars)


@pytest.mark.parametrize("fn", [
    lambda x, m: m[0](x) - m[1](x),
    lambda x, m: m[0](x) / (torch.sigmoid(m[1](x)) + 0.5),
    lambda x, m: torch.sub(m[0](x), m[1](x).mean(dim=1, keepdim=True)),
])
def test_sub_and_div_of_two_tensors(tmp_path, fn):
    torch.manual_seed(0)
    check_round_trip(Fn(fn, nn.Linear(8, 8), nn.Linear(8, 8)), torch.randn(3, 5, 8), tmp_path)


@pytest.mark.parametrize("fn", [
    lambda x, m: m[0](x).mean(dim=1),                        # mean pooling over the sequence
    lambda x, m: torch.mean(m[0](x), 1, keepdim=True),
    lambda x, m: m[0](x).mean(dim=(-1, -2)),
    lambda x, m: F.softmax(m[0](x), dim=1),                  # softmax over the sequence axis
    lambda x, m: torch.tanh(m[0](x)) + F.gelu(m[0](x), approximate="tanh") + F.gelu(m[0](x)),
])
def test_reductions_and_activations(tmp_path, fn):
    torch.manual_seed(0)
    check_round_trip(Fn(fn, nn.Linear(8, 8)), torch.randn(3, 5, 8), tmp_path)


@pytest.mark.parametrize("kwargs", [{}, {"scale": 0.3}])
def test_scaled_dot_product_attention_becomes_matmul_softmax_matmul(tmp_path, kwargs):
    torch.manual_seed(0)
    model = Fn(lambda x, m: F.scaled_dot_product_attention(heads(m[0](x)), heads(m[1](x)), heads(m[2](x)), **kwargs),
               nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8))
    check_round_trip(model, torch.randn(3, 5, 8), tmp_path)
    names = [op["op"] for op in architecture_ops(model, torch.zeros(1, 5, 8))]
    assert names[-5:] == ["permute", "matmul", "scalar", "softmax", "matmul"]


class EncoderLayer(nn.Module):
    """A BERT encoder layer (post-LayerNorm, as all-MiniLM-L6-v2's) written as a plain module."""

    def __init__(self, d: int = 32, h: int = 4, ff: int = 64):
        super().__init__()
        self.h, self.dh = h, d // h
        self.query, self.key, self.value, self.out = (nn.Linear(d, d) for _ in range(4))
        self.norm1, self.norm2 = nn.LayerNorm(d, eps=1e-12), nn.LayerNorm(d, eps=1e-12)
        self.ff1, self.ff2 = nn.Linear(d, ff), nn.Linear(ff, d)
        self.dropout = nn.Dropout(0.1)

    def split(self, x):
        b, t, _ = x.size()
        return x.view(b, t, self.h, self.dh).permute(0, 2, 1, 3)

    def forward(self, x):
        q, k, v = self.split(self.query(x)), self.split(self.key(x)), self.split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.dh)
        context = (self.dropout(scores.softmax(dim=-1)) @ v).permute(0, 2, 1, 3).contiguous()
        context = context.view(context.size(0), context.size(1), -1)
        x = self.norm1(x + self.dropout(self.out(context)))
        return self.norm2(x + self.ff2(F.gelu(self.ff1(x))))


class Encoder(nn.Module):
    """Two encoder layers, mean pooling and a classifier on float inputs (the embeddings' output)."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(EncoderLayer(), EncoderLayer())
        self.head = nn.Linear(32, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.layers(x).mean(dim=1)))


# What one encoder layer captures to (op names in order), for models built on it.
ENCODER_LAYER_OPS = ["fc", "reshape", "permute", "fc", "reshape", "permute", "fc", "reshape", "permute",
                     "permute", "matmul", "scalar", "softmax", "matmul", "permute", "reshape", "fc", "add",
                     "layernorm", "fc", "gelu", "fc", "add", "layernorm"]


def written_encoder(tmp_path, seq: int = 6):
    """The encoder pruned to 50% per layer and weight-shared to 4 bits, written by write_model."""
    torch.manual_seed(0)
    model = Encoder().eval()
    masks = Masks(model)
    masks.prune({name: TargetSparsity(0.5) for name in masks.modules})
    shared = SharedWeights(model, masks, {name: 4 for name in masks.modules})
    path = tmp_path / "encoder.dcz"
    names = list(masks.modules)
    write_model(path, model, shared, dict.fromkeys(names, "auto"), shared.bits(), {"model": "encoder"},
                example_input=torch.randn(1, seq, 32))
    return model, path


def test_a_bert_encoder_runs_from_the_file_like_torch(tmp_path):
    model, path = written_encoder(tmp_path)
    x = torch.randn(4, 6, 32)
    with torch.no_grad():
        expected = model(x).numpy()
        back = decompress(path)(x).numpy()
    got = load(path)(x.numpy())
    assert rel_error(got, expected) < REL_TOL and rel_error(back, expected) < REL_TOL
    names = [op["op"] for op in dcz.read(path)[1]["ops"]]
    assert names == ENCODER_LAYER_OPS * 2 + ["mean", "tanh", "fc"]
    layer = EncoderLayer().eval()
    assert [op["op"] for op in architecture_ops(layer, torch.zeros(1, 6, 32))] == ENCODER_LAYER_OPS


def test_hardware_models_cost_the_encoder_and_list_what_they_cannot(tmp_path):
    _, path = written_encoder(tmp_path, seq=6)
    layers = dcz.read(path)[0]
    eie = simulate_model(path, "eie")
    skipped = [r for r in eie if r.get("skipped")]
    assert [r["layer"] for r in skipped] == ["matmul10", "matmul13", "matmul34", "matmul37"]
    assert all(r["note"] == EIE_MATMUL_NOTE for r in skipped)
    assert eie[-1]["partial"] and eie[-1]["not_costed"]["matmul"] == 4
    assert "PARTIAL total: 4 layer(s) or matmul(s) not costed" in format_layer_records(eie)
    fc_q = next(r for r in eie if r["layer"] == "layers.0.query")
    assert fc_q["calls"] == 6  # one simulated vector per position of the sequence
    for arch in ("diannao", "cpu", "gpu"):
        records = simulate_model(path, arch, batch=2)
        total = records[-1]
        assert not total["partial"] and "matmul" not in total["not_costed"]
        assert total["layers_run"] == len(layers) + 4
        assert total["time_us"] == pytest.approx(sum(r["time_us"] for r in records[:-1]))
    diannao = simulate_model(path, "diannao", batch=2)
    scores = next(r for r in diannao if r["layer"] == "matmul10")  # q k^T per head: (6 x 8) x (8 x 6)
    one = simulate_layer(LayerShape("qk", "fc", 8, 6), 6)
    assert scores["calls"] == 2 * 4 and scores["macs"] == 6 * 8 * 6
    assert scores["time_us"] == pytest.approx(8 * one.time_s * 1e6)
    query = next(r for r in diannao if r["layer"] == "layers.0.query")  # 2 samples x 6 positions
    assert query["macs"] == 2 * 6 * 32 * 32 and query["batch"] == 2


def test_conv1d_is_costed_as_a_height_one_convolution(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(4, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6, 3))
    path = check_round_trip(model, torch.randn(2, 4, 12), tmp_path)
    conv = next(r for r in simulate_model(path, "diannao") if r["layer"] == "0")
    assert conv["macs"] == 8 * 4 * 3 * 6  # out_c x in_c x k x output length (12 + 2 - 3) // 2 + 1


class MaskedAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q = nn.Linear(8, 8)

    def forward(self, x):
        q = self.q(x)
        return F.scaled_dot_product_attention(q, q, q, attn_mask=q[:, :, :5] * 0.0)


@pytest.mark.parametrize("model, shape, message", [
    (nn.Sequential(nn.TransformerEncoderLayer(8, 2)), (5, 8), r"^0: TransformerEncoderLayer\(batch_first=False\) is "
                                                              r"not supported"),
    (MaskedAttention(), (5, 8), r"scaled_dot_product_attention with a mask, dropout_p"),
    (Fn(lambda x, m: m[0](x) / x.size(0), nn.Linear(8, 8)), (5, 8), r"a number that depends on the batch size"),
    (Fn(lambda x, m: m[0](x).mean(dim=1, dtype=torch.float32), nn.Linear(8, 8)), (5, 8), r"mean over dims 1 with "
                                                                                          r"dtype"),
    (Fn(lambda x, m: m[0](x).unsqueeze(1) @ m[0](x).transpose(1, 2), nn.Linear(8, 8)), (5, 8),
     r"a matrix product of shapes \(2, 1, 5, 8\), \(2, 8, 5\)"),
    (Fn(lambda x, m: m[0](x) + m[0](x).sum(), nn.Linear(8, 8)), (5, 8), r"sum\w*: an operation whose output is a single number"),
    (Fn(lambda x, m: torch.div(m[0](x), 2, rounding_mode="floor"), nn.Linear(8, 8)), (5, 8),
     r"keyword arguments \(rounding_mode\)"),
    (nn.Sequential(nn.Conv1d(2, 2, 3, padding=1, padding_mode="circular")), (2, 6), "padding_mode='circular'"),
])
def test_what_the_file_cannot_describe_is_refused_in_one_line(model, shape, message):
    with pytest.raises(Unsupported, match=message) as info:
        architecture_ops(model, torch.rand(2, *shape))
    assert "weights_only=True" in str(info.value) and "\n" not in str(info.value)


def test_int8_runtime_runs_an_encoder_file(tmp_path):
    model, path = written_encoder(tmp_path)
    x = torch.randn(2, 6, 32)
    with torch.no_grad():
        expected = model(x).numpy()
    got = load(path, precision="int8")(x.numpy())
    # measured 0.3% .. 1.3% over three inputs; 3e-2 is the int8 bound test_runtime_int.py uses for its models
    assert got.shape == expected.shape and rel_error(got, expected) < 3e-2


@pytest.mark.slow
def test_a_minilm_sized_encoder_runs_from_the_file(tmp_path):
    """all-MiniLM-L6-v2's encoder shapes (hidden 384, 12 heads, FFN 1536, 6 layers) at 128 tokens, weights
    pruned to 30% and shared to 16 levels: the file's forward pass (144 ops) run by the CPU runtime and by
    decompress() matches PyTorch (measured: 1.8e-7 and 0 relative error)."""
    torch.manual_seed(0)
    model = nn.Sequential(*[EncoderLayer(384, 12, 1536) for _ in range(6)])
    path = check_round_trip(model, torch.randn(2, 128, 384), tmp_path, density=0.3)
    assert [op["op"] for op in dcz.read(path)[1]["ops"]] == ENCODER_LAYER_OPS * 6
    total = simulate_model(path, "cpu")[-1]
    assert not total["partial"] and total["layers_run"] == 6 * 6 + 6 * 2


def test_conv1d_through_write_model_and_load_into(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv1d(6, 6, 3, groups=3), nn.Flatten(),
                          nn.Linear(6 * 8, 2)).eval()
    masks = Masks(model)
    masks.prune({name: TargetSparsity(0.5) for name in masks.modules})
    shared = SharedWeights(model, masks, {name: 4 for name in masks.modules})
    path = tmp_path / "conv1d.dcz"
    write_model(path, model, shared, dict.fromkeys(masks.modules, 5), shared.bits(), {},
                example_input=torch.randn(1, 3, 10))
    assert [q.shape for q in dcz.read(path)[0]] == [(6, 3, 1, 3), (6, 2, 1, 3), (2, 48)]
    x = torch.randn(4, 3, 10)
    with torch.no_grad():
        expected = model(x).numpy()
    assert rel_error(load(path)(x.numpy()), expected) < REL_TOL
    fresh = nn.Sequential(nn.Conv1d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv1d(6, 6, 3, groups=3), nn.Flatten(),
                          nn.Linear(6 * 8, 2)).eval()
    load_into(fresh, path)
    with torch.no_grad():
        assert rel_error(fresh(x).numpy(), expected) < REL_TOL
