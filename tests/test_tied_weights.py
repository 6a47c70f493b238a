"""A weight tied to another layer's (an output layer sharing the embedding's table, as GPT-2 and many
language models do) is one layer: pruned and shared once, stored once, read by both ops from the file;
a recipe naming the tied name, or a tied layer with a bias of its own, is refused with what to do."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import assert_runs_like_torch
from deepcompress import format as dcz
from deepcompress.compress import compress_model
from deepcompress.compress.capture import Unsupported, capture
from deepcompress.compress.prune import prunable_layers
from deepcompress.data import Dataset
from deepcompress.errors import UserError
from deepcompress.hardware.model_sim import simulate_model

VOCAB, WIDTH = 50, 16


class TiedLM(nn.Module):
    def __init__(self, head_bias: bool = False):
        super().__init__()
        self.wte, self.fc = nn.Embedding(VOCAB, WIDTH), nn.Linear(WIDTH, WIDTH)
        self.lm_head = nn.Linear(WIDTH, VOCAB, bias=head_bias)
        self.lm_head.weight = self.wte.weight

    def forward(self, idx):
        return self.lm_head(torch.relu(self.fc(self.wte(idx))))


def _loss(out, y):
    return F.cross_entropy(out.reshape(-1, VOCAB), y.reshape(-1))


def _run(tmp_path, layers):
    torch.manual_seed(0)
    model, x = TiedLM(), torch.randint(0, VOCAB, (300, 6))
    y = torch.randint(0, VOCAB, (300, 6))
    recipe = {"prune": {"iterations": 1, "layers": layers, "retrain": {"epochs": 1, "batch_size": 50}},
              "quantize": {"fc_bits": 4}}
    out = compress_model(model, Dataset("toy", x[:200], y[:200], x[200:], y[200:]), recipe, tmp_path / "run",
                         example_input=x[:1], progress=False, loss=_loss)
    return model, x, out


def test_a_tied_output_layer_is_the_embedding_s_layer_in_the_file(tmp_path):
    model, x, out = _run(tmp_path, {"wte": 0.5})
    assert list(prunable_layers(model)) == ["wte", "fc"]
    layers, meta = dcz.read(tmp_path / "run" / "model.dcz")
    assert [layer.name for layer in layers] == ["wte", "fc"]  # stored once
    assert [op["layer"] for op in meta["ops"] if "layer" in op] == ["wte", "fc", "wte"]
    assert model.lm_head.weight is model.wte.weight and float((model.wte.weight != 0).float().mean()) == 0.5
    stored = layers[0].to_dense()
    np.testing.assert_array_equal(stored, model.wte.weight.detach().numpy())
    assert_runs_like_torch(model, tmp_path / "run" / "model.dcz", [x[:1], x[:5]])
    total = simulate_model(tmp_path / "run" / "model.dcz", "eie")[-1]
    assert not total["partial"]  # the table costed as the output layer's product, the lookups being reads


def test_a_recipe_naming_the_tied_layer_is_told_which_to_name(tmp_path):
    with pytest.raises(UserError, match=r"the model has no layer 'lm_head' of its own: its weight is tied to 'wte'; "
                                        r"name 'wte'"):
        _run(tmp_path, {"lm_head": 0.5})


def test_a_tied_layer_with_its_own_bias_is_refused():
    with pytest.raises(UserError, match="lm_head: its weight is tied to wte but not its bias"):
        capture(TiedLM(head_bias=True), torch.zeros(2, 6, dtype=torch.long))


class TinyGPT(nn.Module):
    """GPT-2's layout at toy size: token and position embeddings (positions looked up at torch.arange(t),
    as nanoGPT does), a block, a final LayerNorm, the output layer tied to the token embedding."""

    def __init__(self, length: int = 6):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(VOCAB, WIDTH), nn.Embedding(length + 4, WIDTH)
        self.block = nn.TransformerEncoderLayer(WIDTH, 2, 32, dropout=0.0, batch_first=True, norm_first=True)
        self.ln_f, self.lm_head = nn.LayerNorm(WIDTH), nn.Linear(WIDTH, VOCAB, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, idx):
        t = idx.size(1)
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        return self.lm_head(self.ln_f(self.block(x)))


def test_a_gpt_with_positions_from_arange_and_a_tied_head_runs_like_torch_from_the_file(tmp_path):
    from conftest import write_pruned

    torch.manual_seed(7)
    model = write_pruned(TinyGPT(), tmp_path / "gpt.dcz", torch.zeros(1, 6, dtype=torch.long))
    layers, meta = dcz.read(tmp_path / "gpt.dcz")
    assert "lm_head" not in {layer.name for layer in layers}
    assert {"op": "parameter", "layer": "wpe", "shape": [6, WIDTH], "rows": 6, "inputs": []} in meta["ops"]
    gen = torch.Generator().manual_seed(8)
    assert_runs_like_torch(model, tmp_path / "gpt.dcz", [torch.randint(0, VOCAB, (n, 6), generator=gen)
                                                          for n in (1, 3)])


class BatchPositions(nn.Module):
    def __init__(self):
        super().__init__()
        self.wpe, self.fc = nn.Embedding(8, 4), nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x + self.wpe(torch.arange(x.shape[0])).unsqueeze(1))  # one row per sample: the batch


@pytest.mark.parametrize("batch", [1, 2, 3])  # 3: the batch the check itself once ran at
def test_positions_counted_over_the_batch_are_refused(batch):
    with pytest.raises(Unsupported, match="a number that depends on the batch size"):
        capture(BatchPositions(), torch.zeros(batch, 3, 4))


def test_positions_from_arange_fix_the_length():
    with pytest.raises(Unsupported, match=r"variable_axes \[1\]: op 1 \(parameter\) depends on the input's length"):
        capture(TinyGPT(), torch.zeros(1, 6, dtype=torch.long), variable_axes=(1,))


class DecoderTied(nn.Module):
    """PyTorch's word_language_model: the decoder Linear (with a bias) tied to the encoder Embedding."""

    def __init__(self, decoder_first: bool = False):
        super().__init__()
        if decoder_first:  # the Linear holds the weight, the Embedding reads it
            self.decoder, self.encoder = nn.Linear(WIDTH, VOCAB), nn.Embedding(VOCAB, WIDTH)
            self.encoder.weight = self.decoder.weight
        else:
            self.encoder, self.decoder = nn.Embedding(VOCAB, WIDTH), nn.Linear(WIDTH, VOCAB)
            self.decoder.weight = self.encoder.weight

    def forward(self, idx):
        return self.decoder(torch.tanh(self.encoder(idx)))


def test_a_tied_decoder_with_its_own_bias_is_refused_before_any_work_even_weights_only(tmp_path):
    x = torch.randint(0, VOCAB, (20, 6))
    for weights_only in (False, True):
        with pytest.raises(UserError, match="decoder: its weight is tied to encoder but not its bias"):
            compress_model(DecoderTied(), Dataset("toy", x, x, x, x), {"prune": {"layers": {"encoder": 0.5}},
                                                                     "quantize": {"fc_bits": 4}},
                           tmp_path / f"run{weights_only}", weights_only=weights_only, example_input=x[:1],
                           progress=False, loss=_loss)


def test_an_embedding_reading_a_linear_s_weight_keeps_the_linear_s_bias_in_decompress(tmp_path):
    from conftest import write_pruned

    torch.manual_seed(9)
    model = DecoderTied(decoder_first=True)
    with torch.no_grad():
        model.decoder.bias.fill_(0.5)
    model = write_pruned(model, tmp_path / "m.dcz", torch.zeros(1, 6, dtype=torch.long))
    assert_runs_like_torch(model, tmp_path / "m.dcz", [torch.randint(0, VOCAB, (3, 6))])


class TiedRecurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.rnn = nn.Linear(WIDTH, 4 * WIDTH, bias=False), nn.LSTM(WIDTH, WIDTH, batch_first=True)
        self.rnn.weight_ih_l0 = self.fc.weight

    def forward(self, x):
        return self.rnn(x)[0] + self.fc(x)[..., :WIDTH]


class MaxNormPositions(nn.Module):
    def __init__(self):
        super().__init__()
        self.wpe, self.fc = nn.Embedding(8, 4, max_norm=0.5), nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x + self.wpe(torch.arange(x.shape[1])))


class ShiftedPositions(MaxNormPositions):
    def forward(self, x):
        return self.fc(x + self.wpe(torch.arange(2, 2 + x.shape[1])))


@pytest.mark.parametrize("model, shape, why", [
    (TiedRecurrent(), (2, 3, WIDTH), "rnn.weight_ih_l0: its weight is tied to fc; the file cannot tie a recurrent"),
    (MaxNormPositions(), (2, 3, 4), r"wpe: Embedding\(max_norm=0.5\) is not supported"),
    (ShiftedPositions(), (2, 3, 4), r"torch.arange\(\) other than position ids read by an nn.Embedding is not "
                                    r"supported; look positions up as self.wpe\(torch.arange\(t\)\)"),
])
def test_ties_and_positions_the_file_cannot_hold_are_refused(model, shape, why):
    with pytest.raises(UserError, match=why):
        capture(model, torch.zeros(*shape))


def test_batchnorm_does_not_fold_into_a_weight_two_convolutions_share():
    from deepcompress.compress.fold import foldable_pairs

    class Trident(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=2, dilation=2)
            self.c2.weight = self.c1.weight
            self.b1, self.b2, self.c3 = nn.BatchNorm2d(2), nn.BatchNorm2d(2), nn.Conv2d(2, 2, 1)
            self.b3 = nn.BatchNorm2d(2)

        def forward(self, x):
            return self.b1(self.c1(x)) + self.b2(self.c2(x)) + self.b3(self.c3(x))

    assert foldable_pairs(Trident().eval()) == [("c3", "b3")]


def test_the_tied_word_lstm_keeps_its_output_bias_as_a_parameter_and_runs_like_torch(tmp_path):
    """models_text.CharLSTM(tie=True), as PyTorch's word_language_model ties it but with the output bias a
    parameter of its own: the tied table is stored once, the bias as a layer read by a `parameter` op."""
    from deepcompress.models_text import CharLSTM, sequence_loss
    torch.manual_seed(0)
    model, x = CharLSTM(VOCAB, embed=WIDTH, hidden=WIDTH, tie=True), torch.randint(0, VOCAB, (300, 6))
    with torch.no_grad():
        model.out_bias.uniform_(-1, 1)  # trained biases are not zero; check the file adds them
    recipe = {"prune": {"iterations": 1, "layers": {"embed": 0.5, "lstm.weight_hh_l0": 0.5},
                        "retrain": {"epochs": 1, "batch_size": 50}},
              "quantize": {"fc_bits": 4, "layers": {"out_bias": 8}}}
    y = torch.randint(0, VOCAB, (300, 6))
    compress_model(model, Dataset("toy", x[:200], y[:200], x[200:], y[200:]), recipe, tmp_path / "run",
                   example_input=x[:1], progress=False, loss=sequence_loss)
    layers, meta = dcz.read(tmp_path / "run" / "model.dcz")
    names = [layer.name for layer in layers]
    assert "out" not in names and names.count("embed") == 1 and "out_bias" in names
    assert [op["op"] for op in meta["ops"]] == ["embedding", "lstm", "fc", "parameter", "add"]
    assert model.out.weight is model.embed.weight and model.out.bias is None
    assert_runs_like_torch(model, tmp_path / "run" / "model.dcz", [x[:1], x[:4]])


def test_tying_needs_the_embedding_as_wide_as_the_hidden_state():
    from deepcompress.models_text import CharLSTM
    with pytest.raises(ValueError, match="as wide as the hidden state; got 8 and 16"):
        CharLSTM(VOCAB, embed=8, hidden=16, tie=True)
