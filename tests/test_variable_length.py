"""Files whose input has a variable axis (a sequence length): captured at one length with
`variable_axes`, they run in the CPU runtime and in decompress() at other lengths exactly as the PyTorch
model does at those lengths; what would compute something else at another length is refused."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepcompress import decompress
from deepcompress import format as dcz
from deepcompress.compress.capture import Unsupported, capture
from deepcompress.compress.export import architecture_ops, write_model
from deepcompress.compress.prune import Masks, TargetSparsity
from deepcompress.compress.quantize import SharedWeights
from deepcompress.errors import UserError
from deepcompress.format import graph
from deepcompress.runtime import load
from deepcompress.runtime.errors import InputError, ModelError

VOCAB, DIM, HEADS = 20, 8, 2
pytestmark = pytest.mark.usefixtures("one_thread")


class TinyEncoder(nn.Module):
    """Token ids (N, T) -> embedding -> one self-attention block written with view/permute/matmul ->
    mean over the sequence -> logits: its reshapes hold T."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, DIM)
        self.q, self.k, self.v = (nn.Linear(DIM, DIM) for _ in range(3))
        self.out = nn.Linear(DIM, 3)

    def heads(self, x):
        n, t, _ = x.shape
        return x.view(n, t, HEADS, DIM // HEADS).transpose(1, 2)

    def forward(self, ids):
        x = self.emb(ids)
        n, t, _ = x.shape
        q, k, v = self.heads(self.q(x)), self.heads(self.k(x)), self.heads(self.v(x))
        att = F.softmax(q @ k.transpose(-1, -2) * (DIM // HEADS) ** -0.5, dim=-1) @ v
        x = x + att.transpose(1, 2).reshape(n, t, DIM)
        return self.out(x.mean(1))


class FusedQkvEncoder(nn.Module):
    """Token ids (N, T) -> embedding -> self-attention with one fused qkv projection split by chunk(3) and
    scaled_dot_product_attention -> the first position plus the mean of the last two (x[:, 0], x[:, -2:])."""

    def __init__(self):
        super().__init__()
        self.emb, self.qkv, self.out = nn.Embedding(VOCAB, DIM), nn.Linear(DIM, 3 * DIM), nn.Linear(DIM, 3)

    def forward(self, ids):
        x = self.emb(ids)
        n, t, _ = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # fx unpacks into names, but cannot iterate a chunk
        q, k, v = (a.reshape(n, t, HEADS, DIM // HEADS).transpose(1, 2) for a in (q, k, v))
        x = x + F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, t, DIM)
        return self.out(x[:, 0] + x[:, -2:].mean(1))


class Narrowed(nn.Module):
    """The first three positions by narrow or a list: PyTorch refuses shorter sequences, a slice would
    clip."""

    def __init__(self, listed: bool = False):
        super().__init__()
        self.emb, self.listed = nn.Embedding(VOCAB, DIM), listed

    def forward(self, x):
        e = self.emb(x)
        return (e[:, [0, 1, 2]] if self.listed else e.narrow(1, 0, 3)).mean(1)


class LastByList(nn.Module):
    """nanoGPT's last position kept as an axis, x[:, [-1], :]: the same at every length."""

    def __init__(self):
        super().__init__()
        self.emb, self.out = nn.Embedding(VOCAB, DIM), nn.Linear(DIM, VOCAB)

    def forward(self, x):
        return self.out(self.emb(x)[:, [-1], :])


class FeatureHalves(nn.Module):
    """Halves of the feature axis by bounds computed from its (fixed) size, and the last two positions."""

    def __init__(self):
        super().__init__()
        self.emb, self.out = nn.Embedding(VOCAB, DIM), nn.Linear(DIM // 2, 3)

    def forward(self, ids):
        x = self.emb(ids)
        d = x.shape[-1] // 2
        return self.out((x[..., :d] * x[..., d:])[:, -2:].mean(1))


class CharModel(nn.Module):
    """Token ids (N, T) -> embedding -> LSTM -> per-position logits (N, T, V)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, DIM)
        self.rnn = nn.LSTM(DIM, DIM, batch_first=True)
        self.out = nn.Linear(DIM, VOCAB)

    def forward(self, ids):
        return self.out(self.rnn(self.emb(ids))[0])


def ids(n: int, t: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (n, t), generator=torch.Generator().manual_seed(seed))


def written(model: nn.Module, path, length: int = 6) -> None:
    """The model pruned to half and weight-shared to 4 bits in place, written with its forward pass
    captured at `length` tokens and a variable sequence axis."""
    torch.manual_seed(0)
    model.eval()
    masks = Masks(model)
    masks.prune({n: TargetSparsity(0.5) for n in masks.modules})
    shared = SharedWeights(model, masks, dict.fromkeys(masks.modules, 4))
    write_model(path, model, shared, dict.fromkeys(masks.modules, "auto"), shared.bits(), {"model": "t"},
                example_input=ids(1, length), variable_axes=(1,))


@pytest.mark.parametrize("make", [TinyEncoder, FusedQkvEncoder, FeatureHalves, CharModel, LastByList])
def test_a_file_runs_at_lengths_other_than_the_captured_one(tmp_path, make):
    torch.manual_seed(0)
    model = make()
    path = tmp_path / "m.dcz"
    written(model, path)
    meta = dcz.read(path)[1]
    assert meta["input_shape"] == [6] and meta["variable_axes"] == [0]
    runtime, back = load(path), decompress(path)
    for length in (1, 2, 6, 11, 17):
        x = ids(3, length, seed=length)
        with torch.no_grad():
            expected = model(x).numpy()
            again = back(x).numpy()
        got = runtime(x.numpy())
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(again, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(runtime(x[0].numpy()), expected[0], rtol=1e-5, atol=1e-6)  # one sample


def test_reshapes_infer_the_length_and_nothing_else_changes():
    model = TinyEncoder().eval()
    fixed = architecture_ops(model, ids(1, 6))
    free = architecture_ops(model, ids(1, 6), variable_axes=(1,))
    differs = [(a, b) for a, b in zip(fixed, free) if a != b]
    assert differs and all(a["op"] == b["op"] == "reshape" for a, b in differs)
    assert all(b["shape"].count(-1) == 1 and 6 in a["shape"] for a, b in differs)


class LengthAsNumber(nn.Module):
    """Multiplies by the length it reads from the input's shape: the file would hold one length's number."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, DIM)

    def forward(self, x):
        e = self.emb(x)
        return e.mean(1) * e.shape[1]  # a sum


class LengthSizedLayer(nn.Module):
    """A Linear over the sequence axis: its weights fix the length."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, DIM)
        self.mix = nn.Linear(6, 2)

    def forward(self, x):
        return self.mix(self.emb(x).transpose(1, 2))


class HalfSequence(nn.Module):
    """The first half of the sequence, by chunk or by a bound computed from the length."""

    def __init__(self, chunk: bool):
        super().__init__()
        self.emb, self.chunk = nn.Embedding(VOCAB, DIM), chunk

    def forward(self, x):
        e = self.emb(x)
        return (e.chunk(2, 1)[0] if self.chunk else e[:, : e.shape[1] // 4]).mean(1)  # // 4: 1 at 5 and 6


@pytest.mark.parametrize("model, message", [
    (LengthAsNumber(), r"variable_axes \[1\]: op 2 \(scalar\) depends on the input's length"),
    (HalfSequence(True), r"variable_axes \[1\]: op 1 \(slice\): a chunk / split / unbind of the variable-length"),
    (Narrowed(), r"variable_axes \[1\]: op 1 \(slice\): narrow\(\) of the variable-length axis is not supported"),
    (Narrowed(listed=True), r"variable_axes \[1\]: op 1 \(slice\): indexing the variable-length axis with a "
                            r"list of several positions is not supported"),
    (HalfSequence(False), r"variable_axes \[1\]: op 1 \(slice\): an index of the variable-length axis computed from sizes"),
    (LengthSizedLayer(), r"variable_axes \[1\]: the model fails at another length"),
])
def test_what_depends_on_the_length_is_refused(model, message):
    with pytest.raises(Unsupported, match=message):
        capture(model, ids(1, 6), variable_axes=(1,))
    capture(model, ids(1, 6))  # at its one length the model is fine


@pytest.mark.parametrize("axes", [(0,), (2,), (1, 1), ("1",)])
def test_variable_axes_are_checked(axes):
    with pytest.raises(UserError, match="variable_axes"):
        capture(TinyEncoder(), ids(1, 6), variable_axes=axes)


def test_a_file_declaring_a_variable_axis_its_pass_cannot_follow_is_refused(tmp_path):
    model = TinyEncoder()
    path = tmp_path / "fixed.dcz"
    written(model, path)
    layers, meta = dcz.read(path)
    fixed = architecture_ops(model, ids(1, 6))  # reshapes holding the length 6
    bad = tmp_path / "bad.dcz"
    dcz.write(bad, layers, {**meta, "ops": fixed})
    with pytest.raises(ModelError, match=r"variable_axes' \[0\]: the forward pass does not run at another "
                                         r"length \(op \d+ \(reshape\): cannot reshape"):
        load(bad)
    with pytest.raises(graph.GraphError, match="variable_axes"):
        graph.parse_forward({**meta, "variable_axes": [1]}, {l.name: l for l in layers})


def test_inputs_of_another_shape_are_checked_on_the_fixed_axes(tmp_path):
    path = tmp_path / "m.dcz"
    written(TinyEncoder(), path)
    model = load(path)
    with pytest.raises(InputError, match=r"the model takes \(T,\) or \(N, T\)"):
        model(np.zeros((2, 3, 4), np.int64))
    with pytest.raises(InputError, match=r"the model takes \(T,\) or \(N, T\)"):
        model(np.zeros((2, 0), np.int64))


def test_a_file_without_variable_axes_keeps_its_one_length(tmp_path):
    model = TinyEncoder().eval()
    path = tmp_path / "one.dcz"
    masks = Masks(model)
    shared = SharedWeights(model, masks, dict.fromkeys(masks.modules, 4))
    write_model(path, model, shared, dict.fromkeys(masks.modules, 5), shared.bits(), {}, example_input=ids(1, 6))
    assert "variable_axes" not in dcz.read(path)[1]
    with pytest.raises(InputError, match=r"the model takes \(6,\) or \(N, 6\)"):
        load(path)(np.zeros((1, 7), np.int64))
