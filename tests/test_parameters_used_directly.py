"""Parameters a user's module reads itself in forward(): a learned position table (x + self.pos), a
layer-scale vector (self.gamma * x), a learned number (x * self.alpha). Each is stored as a layer, pruned
and weight-shared like one, written as the file's `parameter` op, and runs in the runtime and in
decompress() as PyTorch computes it; every use the file cannot express is refused, naming it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import assert_runs_like_torch, write_pruned
from deepcompress import format as dcz
from deepcompress.compress.capture import Unsupported, capture
from deepcompress.compress.prune import prunable_layers
from deepcompress.errors import UserError
from deepcompress.format import graph


class Block(nn.Module):
    """A pre-norm MLP block with layer scale (CaiT, ConvNeXt): x + gamma * mlp(norm(x))."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm, self.fc1, self.fc2 = nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)
        self.gamma = nn.Parameter(torch.linspace(0.1, 1.0, dim))

    def forward(self, x):
        return x + self.gamma * self.fc2(F.gelu(self.fc1(self.norm(x))))


class Positions(nn.Module):
    """Rows of 6 features, 5 positions: a learned position table of shape `pos_shape`, layer-scale
    blocks, a learned temperature on the logits."""

    def __init__(self, pos_shape=(1, 5, 8)):
        super().__init__()
        self.stem, self.blocks = nn.Linear(6, 8), nn.Sequential(Block(8), Block(8))
        self.pos = nn.Parameter(torch.randn(*pos_shape))
        self.alpha = nn.Parameter(torch.tensor(1.7))
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = self.blocks(self.stem(x) + self.pos)
        return self.head(h.mean(1)) * self.alpha


def _inputs():
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(n, 5, 6, generator=gen) for n in (1, 2, 7)]


@pytest.mark.parametrize("pos_shape", [(1, 5, 8), (5, 8), (8,)])
def test_a_model_reading_its_parameters_runs_like_torch_from_the_file(tmp_path, pos_shape):
    torch.manual_seed(0)
    model = write_pruned(Positions(pos_shape), tmp_path / "m.dcz", torch.zeros(1, 5, 6))
    assert {"pos", "alpha", "blocks.0.gamma", "blocks.1.gamma"} <= set(prunable_layers(model))
    layers, meta = dcz.read(tmp_path / "m.dcz")
    shapes = {layer.name: layer.shape for layer in layers}
    want = {(1, 5, 8): (5, 8), (5, 8): (5, 8), (8,): (1, 8)}[pos_shape]
    assert shapes["pos"] == want and shapes["alpha"] == (1, 1) and shapes["blocks.0.gamma"] == (1, 8)
    held = [op for op in meta["ops"] if op["op"] == "parameter"]
    assert {op["layer"]: op["shape"] for op in held} == {
        "pos": list(pos_shape[1:] if len(pos_shape) == 3 else pos_shape), "alpha": [],
        "blocks.0.gamma": [8], "blocks.1.gamma": [8]}
    assert all(op["inputs"] == [] for op in held)
    assert_runs_like_torch(model, tmp_path / "m.dcz", _inputs())


def test_the_stored_values_are_the_pruned_and_shared_parameters(tmp_path):
    torch.manual_seed(1)
    model = write_pruned(Positions(), tmp_path / "m.dcz", torch.zeros(1, 5, 6))
    layers = {layer.name: layer for layer in dcz.read(tmp_path / "m.dcz")[0]}
    for name in ("pos", "blocks.1.gamma"):
        stored = layers[name].to_dense().reshape(model.get_parameter(name).shape)
        np.testing.assert_array_equal(stored, model.get_parameter(name).detach().numpy())
    assert int((model.pos != 0).sum()) == model.pos.numel() // 2  # pruned like any layer: half kept


class ExpandedSum(nn.Module):
    def __init__(self):
        super().__init__()
        self.cls, self.fc = nn.Parameter(torch.zeros(1, 1, 4)), nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(self.cls.expand(x.shape[0], -1, -1) + x)


class TwoTokens(ExpandedSum):
    def __init__(self):
        super().__init__()
        self.dist = nn.Parameter(torch.zeros(1, 1, 4))

    def forward(self, x):
        b = x.shape[0]
        tokens = torch.cat([self.cls.expand(b, -1, -1), self.dist.expand(b, -1, -1)], dim=1)  # no batch yet
        return self.fc(torch.cat([tokens, x], dim=1))


class ExpandedFixed(ExpandedSum):
    def forward(self, x):
        return self.fc(torch.cat([self.cls.expand(2, -1, -1), x], dim=1))  # the example's batch, hard-coded


class Sliced(nn.Module):
    def __init__(self):
        super().__init__()
        self.pos, self.fc = nn.Parameter(torch.zeros(1, 9, 4)), nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x + self.pos[:, :x.shape[1]])


class PerSample(nn.Module):
    def __init__(self):
        super().__init__()
        self.w, self.fc = nn.Parameter(torch.ones(2, 4)), nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x * self.w)  # (2, 4) against (N, 4): its first axis lines up with the batch


class Buffered(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("pe", torch.zeros(1, 3, 4))
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x + self.pe)


class NormWeight(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm, self.fc = nn.LayerNorm(4), nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x * self.norm.weight)


class Halved(nn.Module):
    def __init__(self):
        super().__init__()
        self.g, self.fc = nn.Parameter(torch.ones(4)), nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x * (self.g / 2))


class Product(nn.Module):
    def __init__(self):
        super().__init__()
        self.g, self.h, self.fc = nn.Parameter(torch.ones(4)), nn.Parameter(torch.ones(4)), nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x * (self.g * self.h))


@pytest.mark.parametrize("model, shape, why", [
    (ExpandedSum(), (2, 3, 4), r"forward\(\) cls: a parameter expanded to the batch and read by add"),
    (TwoTokens(), (2, 3, 4), r"forward\(\) cls: a parameter expanded to the batch and read by cat "),
    (ExpandedFixed(), (2, 3, 4), r"forward\(\) cls: a parameter read by expand"),
    (Sliced(), (2, 3, 4), r"forward\(\) pos: a parameter read by getitem"),
    (PerSample(), (2, 4), r"forward\(\) w: a parameter of shape \(2, 4\) whose first axis lines up with the batch"),
    (Buffered(), (2, 3, 4), r"forward\(\) pe: a buffer .* register it as a parameter"),
    (NormWeight(), (2, 4), r"forward\(\) norm.weight: a parameter of LayerNorm used directly"),
    (Halved(), (2, 4), r"forward\(\) g: a parameter read by truediv is not supported; the file reads a parameter "
                       r"only in \+, -, \*, / with a tensor that has the batch"),
    (Product(), (2, 4), r"forward\(\) g: a parameter combined in mul with a value that does not have the batch"),
])
def test_uses_the_file_cannot_express_are_refused_naming_the_parameter(model, shape, why):
    with pytest.raises(Unsupported, match=why):
        capture(model, torch.zeros(*shape))


def test_a_parameter_record_is_checked_against_its_layer():
    layer = dcz.QuantizedLayer.from_labels("pos", "fc", np.zeros((5, 8), np.int64), np.array([0.5], np.float32))
    meta = {"input_shape": [5, 8], "ops": [{"op": "parameter", "layer": "pos", "shape": [6, 8]},
                                           {"op": "add", "inputs": [-1, 0]}]}
    for shape in ([6, 8], [3, 5], [4, 8]):  # more values than the layer holds; not whole rows; fewer
        meta["ops"][0]["shape"] = shape
        with pytest.raises(graph.GraphError, match=rf"op 0 \(parameter\): shape \[{shape[0]}, {shape[1]}\] holds "
                                                   rf"{shape[0] * shape[1]} values; layer 'pos' \(5 x 8\) gives 40 "
                                                   r"\(its values\)"):
            graph.parse_forward(meta, {"pos": layer})
    meta["ops"][0]["rows"] = 4  # the first four rows, said so: positions 0..3 of a longer table
    assert graph.parse_forward({**meta, "input_shape": [4, 8]}, {"pos": layer}).outputs == ((4, 8), (4, 8))
    for rows, why in ((3, r"holds 32 values; layer 'pos' \(5 x 8\) gives 24 \(its first 3 rows\)"),
                      (6, r"rows 6 is more than the 5 rows of layer 'pos'"),
                      *((bad, rf"op 0 \(parameter\): rows must be a positive integer \(how many leading rows of "
                              rf"layer 'pos' to read\) or absent, got {bad!r}") for bad in (0, 2.5, True, "4"))):
        meta["ops"][0]["rows"] = rows
        with pytest.raises(graph.GraphError, match=why):
            graph.parse_forward({**meta, "input_shape": [4, 8]}, {"pos": layer})
    meta["ops"][0] = {"op": "parameter", "layer": "pos", "shape": [5, 8], "inputs": [-1]}
    with pytest.raises(graph.GraphError, match=r"takes 0 input\(s\), inputs lists 1"):
        graph.parse_forward(meta, {"pos": layer})
    meta["ops"][0] = {"op": "parameter", "layer": "pos", "shape": [5, 0]}
    with pytest.raises(graph.GraphError, match="shape must be a list of positive integers"):
        graph.parse_forward(meta, {"pos": layer})
    meta["ops"][0] = {"op": "parameter", "layer": "pos", "shape": [5, 8]}
    fp = graph.parse_forward(meta, {"pos": layer})
    assert fp.inputs == ((), (-1, 0)) and fp.outputs == ((5, 8), (5, 8))
    for reader in ({"op": "relu", "inputs": [0]}, {"op": "concat", "dim": 0, "inputs": [0, 0]},
                   {"op": "add", "inputs": [0, 0]}):
        meta["ops"][1] = reader
        with pytest.raises(graph.GraphError, match=r"op 1 \(\w+\): reads a parameter op's value; only add, mul, "
                                                   r"sub, div and concat with another op's value may"):
            graph.parse_forward(meta, {"pos": layer})


def test_compress_model_prunes_and_shares_a_parameter_and_the_cost_models_list_it(tmp_path):
    from deepcompress.compress import compress_model
    from deepcompress.data import Dataset
    from deepcompress.hardware.model_sim import simulate_model

    torch.manual_seed(0)
    x, model = torch.randn(300, 5, 6), Positions()
    y = model(x).argmax(1).detach()
    recipe = {"prune": {"iterations": 1, "layers": {"stem": 0.5, "pos": 0.5},
                        "retrain": {"epochs": 1, "batch_size": 50}}, "quantize": {"fc_bits": 5}}
    out = compress_model(model, Dataset("toy", x[:200], y[:200], x[200:], y[200:]), recipe, tmp_path / "run",
                         example_input=x[:1], progress=False)
    layers = {layer.name: layer for layer in dcz.read(tmp_path / "run" / "model.dcz")[0]}
    assert layers["pos"].nnz == 20 and len(np.unique(layers["blocks.0.gamma"].to_dense())) <= 2 ** 5
    assert out["test_error"] == pytest.approx(float((model(x[200:]).argmax(1) != y[200:]).float().mean()))
    total = simulate_model(tmp_path / "run" / "model.dcz", "eie")[-1]
    assert total["partial"] and total["skipped_layers"] == ["pos", "alpha", "blocks.0.gamma", "blocks.1.gamma"]


@pytest.mark.parametrize("precision, tol", [("int16", 2e-4), ("int8", 3e-2)])  # as tests/test_runtime_int.py
def test_the_integer_runtimes_read_parameters_too(tmp_path, precision, tol):
    from deepcompress.runtime import load

    torch.manual_seed(0)
    model = write_pruned(Positions(), tmp_path / "m.dcz", torch.zeros(1, 5, 6))
    x = _inputs()[-1]
    want, got = model(x).detach().numpy(), load(tmp_path / "m.dcz", precision=precision, batch=len(x))(x.numpy())
    assert np.linalg.norm(got - want) <= tol * np.linalg.norm(want)


@pytest.mark.parametrize("net, shape", [("Positions", (5, 6)), ("TinyViT", (1, 8, 8))])
def test_onnx_export_holds_the_parameters(tmp_path, net, shape):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import onnxruntime as ort

    from deepcompress.onnx_export import export_onnx

    torch.manual_seed(0)
    model = write_pruned(globals()[net](), tmp_path / "m.dcz", torch.zeros(1, *shape))
    out = export_onnx(tmp_path / "m.dcz", tmp_path / "m.onnx")
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(1))  # another batch than exported with
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(["output"], {"input": x.numpy()})[0]
    want = model(x).detach().numpy()
    assert np.linalg.norm(got - want) <= 1e-5 * np.linalg.norm(want)


def test_a_layer_scale_model_runs_at_any_length_of_a_variable_axis(tmp_path):
    torch.manual_seed(3)
    model = write_pruned(nn.Sequential(Block(8), Block(8)), tmp_path / "m.dcz", torch.zeros(1, 6, 8),
                         variable_axes=(1,))
    gen = torch.Generator().manual_seed(4)
    assert_runs_like_torch(model, tmp_path / "m.dcz", [torch.randn(3, t, 8, generator=gen) for t in (1, 4, 11)])


def test_global_pruning_and_the_sensitivity_scans_leave_parameters_alone():
    from deepcompress.compress.prune import Masks, matrix_layers

    torch.manual_seed(0)
    model = Positions()
    with torch.no_grad():
        model.blocks[0].gamma.fill_(1e-4)  # far below every Linear weight: a global cut would take it whole
    Masks(model).prune_global(0.5)
    assert bool((model.blocks[0].gamma == 1e-4).all()) and float(model.alpha) == pytest.approx(1.7)
    assert set(matrix_layers(model)) == set(prunable_layers(model)) - {"pos", "alpha", "blocks.0.gamma",
                                                                      "blocks.1.gamma"}


class MyEmbedding(nn.Embedding):
    pass


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.a, self.b = MyEmbedding(10, 4), Block(4), Block(4)
        self.b.gamma = self.a.gamma  # one parameter on two modules


def test_each_parameter_is_one_layer():
    layers = prunable_layers(Tied())
    assert "emb" in layers and "emb.weight" not in layers  # a subclass of PyTorch's module: its own slot
    assert "a.gamma" in layers and "b.gamma" not in layers


def test_a_weights_only_file_does_not_take_parameters_a_module_reads_itself(tmp_path):
    from deepcompress.compress import compress_model
    from deepcompress.data import Dataset

    x = torch.randn(40, 5, 6)
    y = torch.zeros(40, dtype=torch.long)
    with pytest.raises(UserError, match=r"the model \(Positions\), blocks.0 \(Block\), .*parameters the .dcz file "
                                        r"cannot store .* with the forward pass, parameters a module reads itself"):
        compress_model(Positions(), Dataset("toy", x, y, x, y), {"prune": {"layers": {"stem": 0.5}},
                                                                 "quantize": {"fc_bits": 5}},
                       tmp_path / "run", weights_only=True, progress=False)


class Listed(nn.Module):
    def __init__(self):
        super().__init__()
        self.scales, self.fc = nn.ParameterList([nn.Parameter(torch.ones(4))]), nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x * self.scales[0])


def test_a_parameter_list_is_refused_with_what_to_do():
    with pytest.raises(Unsupported, match=r"scales.0: a parameter read from a ParameterList is not supported; "
                                          r"register it on the module itself"):
        capture(Listed(), torch.zeros(2, 4))


def test_a_parameter_layer_with_a_bias_is_refused():
    layer = dcz.QuantizedLayer.from_labels("g", "fc", np.zeros((1, 8), np.int64), np.array([0.5], np.float32),
                                           bias=np.zeros(1, np.float32))
    meta = {"input_shape": [8], "ops": [{"op": "parameter", "layer": "g", "shape": [8]},
                                        {"op": "mul", "inputs": [-1, 0]}]}
    with pytest.raises(graph.GraphError, match="layer 'g' has a bias; a parameter's layer holds its values alone"):
        graph.parse_forward(meta, {"g": layer})


class TinyViT(nn.Module):
    """A vision transformer as timm writes one: 4 x 4 patches of an 8 x 8 image by a strided Conv2d, a class
    token joined in front, learned positions, an encoder layer, the class token's output to the head."""

    def __init__(self, dim: int = 16):
        super().__init__()
        self.patch = nn.Conv2d(1, dim, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 5, dim))
        self.encoder = nn.TransformerEncoderLayer(dim, 2, 32, dropout=0.0, batch_first=True, norm_first=True)
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, 3)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        return self.head(self.norm(self.encoder(x))[:, 0])


def test_a_vision_transformer_with_a_class_token_runs_like_torch_from_the_file(tmp_path):
    torch.manual_seed(5)
    model = write_pruned(TinyViT(), tmp_path / "vit.dcz", torch.zeros(1, 1, 8, 8))
    meta = dcz.read(tmp_path / "vit.dcz")[1]
    concat = next(op for op in meta["ops"] if op["op"] == "concat")
    assert meta["ops"][concat["inputs"][0]] == {"op": "parameter", "layer": "cls", "shape": [1, 16], "inputs": []}
    gen = torch.Generator().manual_seed(6)
    assert_runs_like_torch(model, tmp_path / "vit.dcz", [torch.randn(n, 1, 8, 8, generator=gen) for n in (1, 3)])
