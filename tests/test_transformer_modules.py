"""PyTorch's own attention modules in the file: nn.MultiheadAttention (self-attention), nn.TransformerEncoderLayer
(post- and pre-norm, ReLU and GELU) and nn.TransformerEncoder, pruned and weight-shared (the packed input
projection as the layer NAME.in_proj_weight), run by the CPU runtime and by decompress at several sequence
lengths and compared with PyTorch on the decoded weights; compress_model end to end; the hardware models;
and what the file cannot describe refused in one line."""

import numpy as np
import pytest
import torch
from torch import nn

from deepcompress import format as dcz
from deepcompress.compress import compress_model
from deepcompress.compress.capture import Unsupported
from deepcompress.compress.export import architecture_ops
from deepcompress.compress.prune import prunable_layers
from deepcompress.data import Dataset
from deepcompress.hardware.model_sim import simulate_model
from deepcompress.runtime import load

from conftest import assert_runs_like_torch, write_pruned

pytestmark = pytest.mark.usefixtures("one_thread")

REL_TOL = 1e-5
WIDTH = 16
# one self-attention call, as a hand-written encoder (tests/test_attention_ops.py) captures to
ATTENTION_OPS = ["fc", *["slice", "reshape", "permute"] * 3, "permute", "matmul", "scalar", "softmax", "matmul",
                 "permute", "reshape", "fc"]


def rel_error(got, ref) -> float:
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))


class Classifier(nn.Module):
    """`body` over (N, T, WIDTH) inputs, mean over positions, a Linear to 3 classes."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body, self.head = body, nn.Linear(WIDTH, 3)

    def forward(self, x):
        return self.head(self.body(x).mean(dim=1))


class SelfAttention(nn.Module):
    """x + attn(x, x, x)[0], as a residual attention block writes it."""

    def __init__(self, heads: int = 4, bias: bool = True):
        super().__init__()
        self.attn = nn.MultiheadAttention(WIDTH, heads, bias=bias, batch_first=True)

    def forward(self, x):
        out, _ = self.attn(x, x, x)
        return x + out


def layer(**kwargs) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(WIDTH, 4, 32, batch_first=True, **kwargs)


def written(model: nn.Module, path, length: int = 5) -> nn.Module:
    """The model pruned and shared (conftest.write_pruned), written with a variable length."""
    torch.manual_seed(1)
    return write_pruned(model, path, torch.randn(1, length, WIDTH), variable_axes=(1,))


def tied(encoder: nn.TransformerEncoder) -> nn.TransformerEncoder:
    """ALBERT-style: every layer the first one (one set of weights, named once)."""
    for i in range(1, len(encoder.layers)):
        encoder.layers[i] = encoder.layers[0]
    return encoder


class ByKeyword(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = layer()

    def forward(self, x):
        return self.enc(src=x)


BODIES = {
    "attention": lambda: SelfAttention(),
    "attention-no-bias": lambda: SelfAttention(heads=2, bias=False),
    "post-norm-relu": lambda: layer(),
    "pre-norm-gelu": lambda: layer(activation="gelu", norm_first=True),
    "gelu-module": lambda: layer(activation=nn.GELU()),
    "encoder-with-norm": lambda: nn.TransformerEncoder(layer(), 2, norm=nn.LayerNorm(WIDTH),
                                                       enable_nested_tensor=False),
    "encoder": lambda: nn.TransformerEncoder(layer(norm_first=True), 2, enable_nested_tensor=False),
    "identity-norm": lambda: nn.TransformerEncoder(layer(activation=torch.relu), 1, norm=nn.Identity(),
                                                   enable_nested_tensor=False),
    "tied-layers": lambda: tied(nn.TransformerEncoder(layer(), 3, enable_nested_tensor=False)),
    "called-by-keyword": lambda: ByKeyword(),
    "output-as-index-minus-2": lambda: Uses(lambda a, x: a(x, x, x)[-2]),
}


@pytest.mark.parametrize("body", BODIES)
def test_runs_from_the_file_like_torch_at_any_length(tmp_path, body):
    torch.manual_seed(0)
    model = written(Classifier(BODIES[body]()), tmp_path / "m.dcz")
    assert_runs_like_torch(model, tmp_path / "m.dcz", [torch.randn(3, length, WIDTH) for length in (5, 1, 12)])


def test_the_packed_projection_is_one_pruned_layer_and_the_ops_match_hand_written_attention(tmp_path):
    model = Classifier(nn.TransformerEncoder(layer(), 2, enable_nested_tensor=False))
    names = list(prunable_layers(model))
    assert names == ["body.layers.0.self_attn.in_proj_weight", "body.layers.0.self_attn.out_proj",
                     "body.layers.0.linear1", "body.layers.0.linear2", "body.layers.1.self_attn.in_proj_weight",
                     "body.layers.1.self_attn.out_proj", "body.layers.1.linear1", "body.layers.1.linear2", "head"]
    written(model, tmp_path / "m.dcz")
    layers, meta = dcz.read(tmp_path / "m.dcz")
    shapes = {layer.name: layer.shape for layer in layers}
    assert shapes["body.layers.0.self_attn.in_proj_weight"] == (3 * WIDTH, WIDTH)
    assert all(abs(layer.density - 0.5) < 0.02 for layer in layers)
    one_layer = [*ATTENTION_OPS, "add", "layernorm", "fc", "relu", "fc", "add", "layernorm"]
    assert [op["op"] for op in meta["ops"]] == one_layer * 2 + ["mean", "fc"]
    assert meta["ops"][0]["layer"] == "body.layers.0.self_attn.in_proj_weight"


def test_pre_norm_puts_the_norms_before_attention_and_feed_forward():
    ops = [op["op"] for op in architecture_ops(nn.Sequential(layer(norm_first=True)), torch.zeros(1, 4, WIDTH))]
    assert ops == ["layernorm", *ATTENTION_OPS, "add", "layernorm", "fc", "relu", "fc", "add"]


def test_compress_model_end_to_end(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(96, 6, WIDTH)
    y = (x[:, :, 0].mean(1) > 0).long() + (x[:, :, 1].mean(1) > 0).long()
    data = Dataset("toy", x[:64], y[:64], x[64:], y[64:])
    model = Classifier(nn.TransformerEncoder(layer(), 1, enable_nested_tensor=False))
    attn = "body.layers.0.self_attn.in_proj_weight"
    recipe = {"prune": {"iterations": 1, "layers": {attn: 0.7, "body.layers.0.linear1": 0.5},
                        "retrain": {"epochs": 1, "batch_size": 16, "lr": 1e-3, "optimizer": "adam"}},
              "quantize": {"fc_bits": 4, "finetune": {"epochs": 1, "batch_size": 16, "lr": 1e-4, "optimizer": "adam"}}}
    outcome = compress_model(model, data, recipe, tmp_path, progress=False, example_input=x[:1])
    layers, _ = dcz.read(outcome["file"])
    density = {layer.name: layer.density for layer in layers}
    assert abs(density[attn] - 0.3) < 0.01 and abs(density["body.layers.0.linear1"] - 0.5) < 0.01
    with torch.no_grad():
        expected = model.eval()(data.test_x).numpy()  # the compressed model in memory holds the file's weights
    got = load(outcome["file"])(data.test_x.numpy())
    assert rel_error(got, expected) < REL_TOL
    assert outcome["test_error"] == pytest.approx(float((got.argmax(1) != data.test_y.numpy()).mean()))


def test_hardware_models_cost_the_projections_and_list_the_matmuls(tmp_path):
    written(Classifier(layer()), tmp_path / "m.dcz", length=6)
    eie = simulate_model(tmp_path / "m.dcz", "eie")
    assert eie[-1]["partial"] and eie[-1]["not_costed"]["matmul"] == 2
    packed = next(r for r in eie if r["layer"] == "body.self_attn.in_proj_weight")
    assert packed["calls"] == 6  # one vector per position
    assert not simulate_model(tmp_path / "m.dcz", "cpu")[-1]["partial"]


def test_a_model_pruned_with_torch_prune_is_read_through_its_masks(tmp_path):
    from torch.nn.utils import prune

    torch.manual_seed(0)
    x = torch.randn(40, 5, WIDTH)
    data = Dataset("toy", x[:32], (x[:32, 0, 0] > 0).long(), x[32:], (x[32:, 0, 0] > 0).long())
    model = Classifier(SelfAttention())
    prune.l1_unstructured(model.body.attn, "in_proj_weight", 0.6)
    attn = "body.attn.in_proj_weight"
    recipe = {"prune": {"iterations": 1, "layers": {attn: 0.7}, "retrain": {"epochs": 1, "batch_size": 16}},
              "quantize": {"fc_bits": 4}}
    outcome = compress_model(model, data, recipe, tmp_path, progress=False, example_input=x[:1])
    assert not hasattr(model.body.attn, "in_proj_weight_orig")
    layers, _ = dcz.read(outcome["file"])
    assert {layer.name: layer.density for layer in layers}[attn] == pytest.approx(0.3, abs=0.01)
    with torch.no_grad():
        expected = model.eval()(data.test_x).numpy()
    assert rel_error(load(outcome["file"])(data.test_x.numpy()), expected) < REL_TOL


class Uses(nn.Module):
    """fn(self.attn, x) with an nn.MultiheadAttention of the given settings."""

    def __init__(self, fn, **kwargs):
        super().__init__()
        self.fn, self.attn = fn, nn.MultiheadAttention(WIDTH, 4, **{"batch_first": True, **kwargs})

    def forward(self, x):
        return self.fn(self.attn, x)


def swapped(encoder_layer: nn.TransformerEncoderLayer, activation: nn.Module) -> nn.TransformerEncoderLayer:
    """The layer with its activation replaced after construction (PyTorch's fast path keeps the old one)."""
    encoder_layer.activation = activation
    return encoder_layer


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.dec = nn.TransformerDecoderLayer(WIDTH, 4, batch_first=True)

    def forward(self, x):
        return self.dec(x, x)


@pytest.mark.parametrize("model, message", [
    (Uses(lambda a, x: a(x, x, x)[0], batch_first=False), r"^attn: nn.MultiheadAttention\(batch_first=False\) .*"
                                                          r"construct the nn.MultiheadAttention with batch_first=True"),
    (Uses(lambda a, x: a(x, x * 2, x * 2)[0]), r"different query, key and value \(cross-attention\)"),
    (Uses(lambda a, x: a(x, x, x, key_padding_mask=x[:, :, 0] * 0.0)[0]), r"^attn: nn.MultiheadAttention with a "
                                                                          r"mask or is_causal"),
    (Uses(lambda a, x: a(x, x, x)[1].sum(1)), r"using nn.MultiheadAttention's attention weights"),
    (Uses(lambda a, x: a(x, x, x)[0] + a(x, x, x)[1].mean(-1, keepdim=True)), r"attention weights"),
    (Uses(lambda a, x: a(x, x[:, :, :8], x[:, :, :8])[0], kdim=8, vdim=8), r"cross-attention"),
    (Uses(lambda a, x: a((h := x.mean(1)), h, h)[0]), r"nn.MultiheadAttention on a 2-d input"),
    (Uses(lambda a, x: a(x, x, x)[0], add_bias_kv=True), r"add_bias_kv=True or add_zero_attn=True"),
    (Uses(lambda a, x: a(x, x, x)[0], add_zero_attn=True), r"add_bias_kv=True or add_zero_attn=True"),
    (nn.Sequential(layer(activation=nn.GELU(approximate="tanh"))), r"activation=GELU\(approximate='tanh'\)"),
    (nn.Sequential(swapped(layer(), nn.GELU())), r"^0: TransformerEncoderLayer whose activation was replaced by "
                                                r"GELU\(approximate='none'\) after it was built"),
    (nn.Sequential(nn.TransformerEncoder(layer(), 1, norm=nn.RMSNorm(WIDTH), enable_nested_tensor=False)),
     r"^0.norm: RMSNorm as a transformer's norm is not supported; use nn.LayerNorm"),
    (nn.Sequential(layer(activation=nn.SiLU())), r"activation=SiLU\(\)"),
    (Decoder(), r"^dec: TransformerDecoderLayer is not supported; the file describes self-attention only"),
])
def test_what_the_file_cannot_describe_is_refused_in_one_line(model, message):
    with pytest.raises(Unsupported, match=message) as info:
        architecture_ops(model, torch.rand(2, 5, WIDTH))
    assert "weights_only=True" in str(info.value) and "\n" not in str(info.value)


class MaskedEncoder(nn.Module):
    """An encoder given a padding mask computed from its input (a float mask of zeros)."""

    def __init__(self):
        super().__init__()
        self.enc = nn.TransformerEncoder(layer(), 1, enable_nested_tensor=False)

    def forward(self, x):
        return self.enc(x, src_key_padding_mask=x[:, :, 0] * 0.0)


def test_an_encoder_called_with_a_mask_is_refused():
    with pytest.raises(Unsupported, match=r"^enc: TransformerEncoder with a mask or is_causal"):
        architecture_ops(MaskedEncoder(), torch.rand(2, 5, WIDTH))


def test_a_layer_named_by_its_prefix_suggests_the_packed_projection():
    from deepcompress.recipes.schema import suggestion

    known = ["attn.in_proj_weight", "attn.out_proj", "head"]
    assert suggestion("attn.in_proj", known) == " (did you mean 'attn.in_proj_weight'?)"
    assert suggestion("attn.out_prj", known) == " (did you mean 'attn.out_proj'?)"
