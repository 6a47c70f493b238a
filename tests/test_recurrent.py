"""Embedding, LSTM and GRU end to end: pruned and weight-shared by the pipeline's own Masks and
SharedWeights, written with write_model, run by the CPU runtime and by deepcompress.decompress, compared
with PyTorch on the same (decoded) weights; refusals name the module. The hardware models' costs:
test_recurrent_hardware.py."""

import numpy as np
import pytest
import torch
from torch import nn

from deepcompress import format as dcz
from deepcompress.compress import compress_model
from deepcompress.compress.capture import Unsupported
from deepcompress.compress.export import architecture_ops, write_model
from deepcompress.compress.prune import Masks, TargetSparsity, prunable_layers
from deepcompress.compress.quantize import SharedWeights
from deepcompress.data import Dataset
from deepcompress.format import graph
from deepcompress.runtime import load
from deepcompress.runtime.errors import InputError
from deepcompress.to_torch import decompress

REL_TOL = 1e-5
VOCAB = 23


class LanguageModel(nn.Module):
    """The benchmark's model: Embedding(V, E) -> LSTM/GRU -> Linear(H * D, V) on the whole sequence."""

    def __init__(self, cell=nn.LSTM, layers=2, bidirectional=False, bias=True):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 6)
        self.rnn = cell(6, 5, num_layers=layers, batch_first=True, bidirectional=bidirectional, bias=bias)
        self.out = nn.Linear(5 * (2 if bidirectional else 1), VOCAB)

    def forward(self, x):
        seq, _ = self.rnn(self.emb(x))
        return self.out(seq)


class TimeMajor(nn.Module):
    """batch_first=False between the transposes that make its input and output sequence-first."""

    def __init__(self, cell=nn.LSTM, layers=1, last_step=False):
        super().__init__()
        self.rnn, self.last_step = cell(4, 5, num_layers=layers), last_step
        self.out = nn.Linear(5, 3)

    def forward(self, x):
        seq, _ = self.rnn(x.transpose(0, 1))
        return self.out(seq[-1] if self.last_step else seq.transpose(0, 1))


class FinalState(nn.Module):
    """A classifier on the last layer's final h (LSTM: h or c) or on the last step of the sequence."""

    def __init__(self, cell=nn.LSTM, which="h"):
        super().__init__()
        self.emb, self.rnn, self.which = nn.Embedding(VOCAB, 6, padding_idx=0), cell(6, 5, 2, batch_first=True), which
        self.out = nn.Linear(5, 4)

    def forward(self, x):
        seq, state = self.rnn(self.emb(x))
        if self.which == "last":
            return self.out(seq[:, -1])
        if isinstance(self.rnn, nn.LSTM):
            h, c = state
            return self.out(h[-1] if self.which == "h" else c[0])
        return self.out(state[-1])


class SequenceAndState(nn.Module):
    """The sequence output and final states of one LSTM/GRU call, all used: h[-1] twice, once through an
    in-place ReLU, and (LSTM) c[0]."""

    def __init__(self, cell=nn.LSTM, bidirectional=False):
        super().__init__()
        self.emb, self.rnn = nn.Embedding(VOCAB, 6), cell(6, 5, 2, batch_first=True, bidirectional=bidirectional)
        self.seq = nn.Linear(5 * (2 if bidirectional else 1), 4)
        self.h1, self.h2, self.c = nn.Linear(5, 4), nn.Linear(5, 4), nn.Linear(5, 4)

    def forward(self, x):
        seq, state = self.rnn(self.emb(x))
        h, c = state if isinstance(self.rnn, nn.LSTM) else (state, state)
        return self.seq(seq[:, -1]) + self.h1(torch.relu(h[-1])) + self.h2(h[-1]) + self.c(c[0])


def compress_and_write(model: nn.Module, x: torch.Tensor, path, sparsity: float = 0.5, bits: int = 4):
    """Prune every layer to `sparsity`, share weights with k-means (the pipeline's own classes), write."""
    model.eval()
    masks = Masks(model)
    masks.prune({n: TargetSparsity(sparsity) for n in masks.modules})
    shared = SharedWeights(model, masks, {n: bits for n in masks.modules})
    write_model(path, model, shared, {n: 5 for n in masks.modules}, shared.bits(), {"model": "t"}, example_input=x)
    return shared


def rel_error(got, ref) -> float:
    """Norm-wise relative error."""
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))


def ids(n=3, steps=7, seed=0):
    """Random token ids (n, steps) in 0..VOCAB-1."""
    return torch.randint(0, VOCAB, (n, steps), generator=torch.Generator().manual_seed(seed))


MODELS = [
    (lambda: LanguageModel(nn.LSTM, 1), "ids"),
    (lambda: LanguageModel(nn.LSTM, 2), "ids"),
    (lambda: LanguageModel(nn.GRU, 2), "ids"),
    (lambda: LanguageModel(nn.LSTM, 2, bidirectional=True), "ids"),
    (lambda: LanguageModel(nn.GRU, 1, bidirectional=True, bias=False), "ids"),
    (lambda: TimeMajor(nn.LSTM, 2), "floats"),
    (lambda: TimeMajor(nn.GRU, 1, last_step=True), "floats"),
    (lambda: FinalState(nn.LSTM, "h"), "ids"),
    (lambda: FinalState(nn.LSTM, "c"), "ids"),
    (lambda: FinalState(nn.GRU, "h"), "ids"),
    (lambda: FinalState(nn.GRU, "last"), "ids"),
    (lambda: SequenceAndState(nn.LSTM), "ids"),
    (lambda: SequenceAndState(nn.LSTM, bidirectional=True), "ids"),
    (lambda: SequenceAndState(nn.GRU), "ids"),
]


def example(kind: str) -> torch.Tensor:
    return ids() if kind == "ids" else torch.randn(3, 7, 4, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("make, kind", MODELS)
def test_runtime_and_decompressed_model_match_torch_on_the_decoded_weights(tmp_path, make, kind):
    torch.manual_seed(0)
    model, x = make(), example(kind)
    compress_and_write(model, x, tmp_path / "m.dcz")
    with torch.no_grad():
        expected = model(x).numpy()  # the model's weights are now exactly the shared (decoded) ones
    got = load(tmp_path / "m.dcz")(x.numpy())
    assert got.shape == expected.shape
    assert rel_error(got, expected) < REL_TOL
    with torch.no_grad():
        rebuilt = decompress(tmp_path / "m.dcz")(x).numpy()
    assert rel_error(rebuilt, got) < REL_TOL
    one = load(tmp_path / "m.dcz")(x[0].numpy())  # a single sample runs the matvec path
    assert rel_error(one, expected[0]) < REL_TOL


@pytest.mark.parametrize("cell, bidirectional", [(nn.LSTM, False), (nn.LSTM, True), (nn.GRU, False)])
def test_one_call_whose_sequence_and_states_are_used_runs_once(tmp_path, monkeypatch, cell, bidirectional):
    from deepcompress.runtime.recurrent import Recurrent

    torch.manual_seed(0)
    model, x = SequenceAndState(cell, bidirectional), ids()
    compress_and_write(model, x, tmp_path / "m.dcz")
    records = [op for op in dcz.read(tmp_path / "m.dcz")[1]["ops"] if op["op"] == cell.__name__.lower()]
    assert [op.get("output", "sequence") for op in records] == (["sequence", "h_n", "h_n", "c_n"] if cell is nn.LSTM
                                                                 else ["sequence", "h_n", "h_n", "h_n"])
    runtime = load(tmp_path / "m.dcz")
    directions = []
    run = Recurrent._direction
    monkeypatch.setattr(Recurrent, "_direction", lambda self, *a, **k: directions.append(1) or run(self, *a, **k))
    with torch.no_grad():
        expected = model(x).numpy()
    for _ in range(2):  # the second call runs afresh on its input
        assert rel_error(runtime(x.numpy()), expected) < REL_TOL
    assert len(directions) == 2 * 2 * (2 if bidirectional else 1)  # 2 calls x 2 layers x directions


def test_file_stores_each_gate_matrix_as_its_own_layer_with_its_bias(tmp_path):
    torch.manual_seed(0)
    model = LanguageModel(nn.LSTM, 2)
    compress_and_write(model, ids(), tmp_path / "m.dcz", sparsity=0.6)
    layers, meta = dcz.read(tmp_path / "m.dcz")
    by_name = {layer.name: layer for layer in layers}
    assert list(by_name) == ["emb", "rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.weight_ih_l1", "rnn.weight_hh_l1",
                             "out"]
    for name, layer in by_name.items():
        if name.startswith("rnn."):
            attr = name[4:]
            assert np.array_equal(layer.to_dense(), getattr(model.rnn, attr).detach().numpy())
            assert np.array_equal(layer.bias, getattr(model.rnn, attr.replace("weight", "bias")).detach().numpy())
            assert layer.shape[0] == 4 * 5 and abs(layer.density - 0.4) < 0.02 and len(layer.codebook) <= 16
    assert by_name["emb"].bias is None and by_name["emb"].shape == (VOCAB, 6)
    assert meta["input_dtype"] == "int64" and meta["input_shape"] == [7]
    assert meta["ops"] == [{"op": "embedding", "layer": "emb"}, {"op": "lstm", "layer": "rnn", "num_layers": 2},
                           {"op": "fc", "layer": "out"}]
    rebuilt = decompress(tmp_path / "m.dcz")
    assert torch.equal(rebuilt.weights["rnn"].weight_hh_l1, model.rnn.weight_hh_l1)
    assert torch.equal(rebuilt.weights["emb"].weight, model.emb.weight)


def test_padding_row_stays_zero_through_weight_sharing(tmp_path):
    torch.manual_seed(0)
    model = FinalState(nn.LSTM, "h")
    compress_and_write(model, ids(), tmp_path / "m.dcz", sparsity=0.0)
    layers, meta = dcz.read(tmp_path / "m.dcz")
    table = layers[0].to_dense()
    assert not table[0].any() and np.count_nonzero(table[1:]) == (VOCAB - 1) * 6
    assert meta["ops"][0] == {"op": "embedding", "layer": "emb", "padding_idx": 0}
    assert decompress(tmp_path / "m.dcz").weights["emb"].padding_idx == 0


def test_a_padding_row_holding_values_is_kept_as_forward_reads_it(tmp_path):
    """A tied output layer or loaded weights can fill the padding row; the lookup returns it as it is."""
    torch.manual_seed(0)
    model = FinalState(nn.LSTM, "h")
    with torch.no_grad():
        model.emb.weight[0] = torch.linspace(-1, 1, 6)
    compress_and_write(model, ids(), tmp_path / "m.dcz", sparsity=0.0)
    table = dcz.read(tmp_path / "m.dcz")[0][0].to_dense()
    assert np.count_nonzero(table) == VOCAB * 6
    x = ids()
    x[:, 0] = 0
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(load(tmp_path / "m.dcz")(x.numpy()), expected, rtol=1e-5, atol=1e-6)


def test_pruning_masks_of_gate_matrices_hold_through_training():
    torch.manual_seed(0)
    model = LanguageModel(nn.GRU, 2)
    assert set(prunable_layers(model)) == {"emb", "out", *(f"rnn.weight_{m}_l{k}" for m in ("ih", "hh") for k in (0, 1))}
    masks = Masks(model)
    masks.prune({"rnn.weight_hh_l1": TargetSparsity(0.7), "emb": TargetSparsity(0.3)})
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for step in range(5):
        x = ids(seed=step)
        loss = nn.functional.cross_entropy(model(x).flatten(0, 1), x.flatten())
        opt.zero_grad()
        loss.backward()
        masks.after_backward(model)
        opt.step()
        masks.after_step(model)
    assert torch.equal(model.rnn.weight_hh_l1 != 0, masks.masks["rnn.weight_hh_l1"])
    assert abs(masks.density()["rnn.weight_hh_l1"] - 0.3) < 0.01 and abs(masks.density()["emb"] - 0.7) < 0.01


def test_int_precision_runs_the_gate_products_in_integers(tmp_path):
    from deepcompress.runtime.quantize import reference_forward

    torch.manual_seed(0)
    model = LanguageModel(nn.GRU, 1)
    x = ids(n=1, steps=4)
    compress_and_write(model, x, tmp_path / "m.dcz")
    layers = {layer.name: layer for layer in dcz.read(tmp_path / "m.dcz")[0]}
    got = load(tmp_path / "m.dcz", precision="int16")(x.numpy())
    # the same GRU with every matrix product done by the integer reference
    emb = layers["emb"].to_dense()[x[0].numpy()]
    w_ih, w_hh = layers["rnn.weight_ih_l0"], layers["rnn.weight_hh_l0"]
    h = np.zeros(5, np.float32)
    outs = []
    for t in range(4):
        gi = reference_forward(w_ih, w_ih.bias, emb[t], "int16")
        gh = reference_forward(w_hh, w_hh.bias, h, "int16")
        r = 1 / (1 + np.exp(-(gi[:5] + gh[:5])))
        z = 1 / (1 + np.exp(-(gi[5:10] + gh[5:10])))
        n = np.tanh(gi[10:] + r * gh[10:])
        h = ((1 - z) * n + z * h).astype(np.float32)
        outs.append(reference_forward(layers["out"], layers["out"].bias, h, "int16"))
    assert rel_error(got[0], np.stack(outs)) < 1e-5
    with torch.no_grad():
        assert rel_error(got, model(x).numpy()) < 1e-3  # int16 stays close to float


def test_token_id_inputs_are_checked(tmp_path):
    torch.manual_seed(0)
    compress_and_write(LanguageModel(), ids(), tmp_path / "m.dcz")
    model = load(tmp_path / "m.dcz")
    with pytest.raises(InputError, match=r"^input must be integer token ids .*got dtype float32$"):
        model(ids().numpy().astype(np.float32))
    bad = ids().numpy()
    bad[1, 2] = VOCAB
    with pytest.raises(InputError, match=rf"^op 0 \(embedding\): token id {VOCAB} is outside the vocabulary "
                                         rf"0..{VOCAB - 1} of embedding 'emb'$"):
        model(bad)
    with pytest.raises(InputError, match=r"token id -1"):
        model(-np.ones((1, 7), np.int64))


def test_the_pass_checks_which_ops_read_token_ids():
    layers = {"emb": dcz.QuantizedLayer.from_dense("emb", "fc", np.ones((4, 2), np.float32), [1.0]),
              "fc": dcz.QuantizedLayer.from_dense("fc", "fc", np.ones((3, 2), np.float32), [1.0])}
    ops = [{"op": "embedding", "layer": "emb"}, {"op": "fc", "layer": "fc"}]
    assert graph.parse_forward({"input_shape": [5], "input_dtype": "int64", "ops": ops}, layers).outputs == \
        ((5, 2), (5, 3))
    with pytest.raises(graph.GraphError, match=r"^op 0 \(embedding\): an embedding reads integer token ids"):
        graph.parse_forward({"input_shape": [5], "ops": ops}, layers)
    with pytest.raises(graph.GraphError, match=r"^op 0 \(fc\): reads the model's int64 token ids"):
        graph.parse_forward({"input_shape": [2], "input_dtype": "int64", "ops": ops[1:]}, layers)
    with pytest.raises(graph.GraphError, match=r"^meta 'input_dtype' must be one of"):
        graph.parse_forward({"input_shape": [5], "input_dtype": "int8", "ops": ops}, layers)


def test_recurrent_records_are_checked_against_the_layers():
    def layer(name, shape):
        return dcz.QuantizedLayer.from_dense(name, "fc", np.ones(shape, np.float32), [1.0])
    layers = {n: layer(n, s) for n, s in (("g.weight_ih_l0", (12, 4)), ("g.weight_hh_l0", (12, 4)))}
    meta = {"input_shape": [3, 4], "ops": [{"op": "gru", "layer": "g"}]}
    assert graph.parse_forward(meta, layers).outputs == ((3, 4),)
    meta["ops"] = [{"op": "lstm", "layer": "g"}]
    with pytest.raises(graph.GraphError, match=r"has shape \(12, 4\), expected \(16, 4\) \(4 gates of hidden size 4\)"):
        graph.parse_forward(meta, layers)
    meta["ops"] = [{"op": "gru", "layer": "g", "num_layers": 2}]
    with pytest.raises(graph.GraphError, match=r"layer 'g.weight_ih_l1' is not in the file"):
        graph.parse_forward(meta, layers)
    meta["ops"] = [{"op": "gru", "layer": "g", "output": "c_n", "index": 0}]
    with pytest.raises(graph.GraphError, match=r"output must be one of sequence, h_n, got 'c_n'"):
        graph.parse_forward(meta, layers)
    meta["ops"] = [{"op": "gru", "layer": "g", "output": "h_n", "index": 1}]
    with pytest.raises(graph.GraphError, match=r"needs an index in 0..0"):
        graph.parse_forward(meta, layers)


class Calls(nn.Module):
    """A one-module model whose forward is `fn(self.m, x)`."""

    def __init__(self, module, fn=lambda m, x: m(x)[0]):
        super().__init__()
        self.m, self.fn = module, fn

    def forward(self, x):
        return self.fn(self.m, x)


SEQ = torch.zeros(2, 5, 4)
REFUSED = [
    (Calls(nn.LSTM(4, 3, batch_first=True, proj_size=2)), SEQ, r"^m: LSTM\(proj_size=2\) is not supported"),
    (Calls(nn.ModuleDict({"g": nn.GRU(4, 3, batch_first=True), "l": nn.GRU(4, 3, batch_first=True)}),
           lambda m, x: m["l"](x, m["g"](x)[1])[0]), SEQ, r"^m.l: GRU called with an initial state \(h0\) is not"),
    (Calls(nn.GRU(4, 3)), SEQ, r"^m: GRU\(batch_first=False\) reading a batch-first \(N, T, \.\.\.\) tensor is not"),
    (Calls(nn.GRU(4, 3, batch_first=True), lambda m, x: m(x.transpose(0, 1))[0]), SEQ,
     r"^m: GRU\(batch_first=True\) reading a sequence-first"),
    (Calls(nn.GRU(4, 3, batch_first=True), lambda m, x: m(x)[1] * 2), SEQ, r"^forward\(\) mul: using m's h_n whole"),
    (Calls(nn.RNN(4, 3, batch_first=True)), SEQ, r"^m: RNN .* is not supported"),
    (Calls(nn.Embedding(9, 3, max_norm=1.0), lambda m, x: m(x)), torch.zeros(2, 5, dtype=torch.long),
     r"^m: Embedding\(max_norm=1.0\) is not supported; construct it without max_norm"),
    (Calls(nn.Embedding(9, 3, sparse=True), lambda m, x: m(x)), torch.zeros(2, 5, dtype=torch.long),
     r"^m: Embedding\(sparse=True\) is not supported"),
    (Calls(nn.Embedding(9, 3, scale_grad_by_freq=True), lambda m, x: m(x)), torch.zeros(2, 5, dtype=torch.long),
     r"^m: Embedding\(scale_grad_by_freq=True\) is not supported"),
]


@pytest.mark.parametrize("model, x, message", REFUSED)
def test_what_the_file_cannot_describe_is_refused_in_one_line(model, x, message):
    with pytest.raises(Unsupported, match=message) as err:
        architecture_ops(model, x)
    assert "\n" not in str(err.value)


def test_a_nested_module_is_named_by_its_place():
    model = nn.Sequential()
    model.add_module("rnn", Calls(nn.LSTM(4, 8, batch_first=True, proj_size=3)))
    with pytest.raises(Unsupported, match=r"^rnn\.m: LSTM\(proj_size=3\) is not supported"):
        architecture_ops(model, SEQ)


class NextToken(nn.Module):
    """A tiny language model that predicts the token after a window from the LSTM's final h."""

    def __init__(self):
        super().__init__()
        self.emb, self.rnn, self.out = nn.Embedding(VOCAB, 8), nn.LSTM(8, 16, batch_first=True), nn.Linear(16, VOCAB)

    def forward(self, x):
        _, (h, _) = self.rnn(self.emb(x))
        return self.out(h[-1])


def counting_data(n: int, steps: int = 6) -> Dataset:
    """Windows of a sequence counting modulo VOCAB from a random start; the label is the next token."""
    start = torch.randint(0, VOCAB, (n, 1), generator=torch.Generator().manual_seed(n))
    seq = (start + torch.arange(steps + 1)) % VOCAB
    return Dataset("counting", seq[: n // 2, :-1], seq[: n // 2, -1], seq[n // 2:, :-1], seq[n // 2:, -1])


def test_a_tiny_lstm_language_model_compresses_end_to_end(tmp_path):
    torch.manual_seed(0)
    model, data = NextToken(), counting_data(400)
    recipe = {"prune": {"iterations": 1, "layers": {"rnn.weight_ih_l0": 0.5, "rnn.weight_hh_l0": 0.5, "out": 0.5},
                        "retrain": {"epochs": 1, "batch_size": 32, "lr": 0.01}},
              "quantize": {"fc_bits": 4, "finetune": {"epochs": 1, "batch_size": 32, "optimizer": "adam", "lr": 1e-3}}}
    outcome = compress_model(model, data, recipe, tmp_path, progress=False)
    layers, meta = dcz.read(tmp_path / "model.dcz")
    density = {layer.name: layer.density for layer in layers}
    assert density["emb"] == 1.0 and all(abs(density[n] - 0.5) < 0.01 for n in recipe["prune"]["layers"])
    assert meta["input_dtype"] == "int64" and [op["op"] for op in meta["ops"]] == ["embedding", "lstm", "fc"]
    assert meta["ops"][1] == {"op": "lstm", "layer": "rnn", "num_layers": 1, "output": "h_n", "index": 0}
    with torch.no_grad():
        expected = model(data.test_x).numpy()  # the compressed model in memory: its weights are the file's
    got = load(tmp_path / "model.dcz")(data.test_x.numpy())
    assert rel_error(got, expected) < REL_TOL
    assert outcome["test_error"] == pytest.approx(float((got.argmax(1) != data.test_y.numpy()).mean()))
