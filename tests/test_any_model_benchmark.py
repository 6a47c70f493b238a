"""benchmarks/any_model.py: the quick path of one model end to end, and the language model's pieces that
run before the file format has LSTM support (training, the numpy perplexity, the skip message)."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import any_model  # noqa: E402
import any_model_specs  # noqa: E402

from deepcompress import models_text  # noqa: E402
from deepcompress.data import Dataset  # noqa: E402
from deepcompress.data_text import WORD_VOCAB  # noqa: E402
from deepcompress.train import TrainConfig, train  # noqa: E402


def test_quick_path_of_one_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(any_model.SPECS["mnist-separable"], "quick_sizes", (600, 200))
    out = tmp_path / "q.json"
    assert any_model.main(["mnist-separable", "--quick", "--out", str(out), "--work", str(tmp_path)]) == 0
    (rec,) = json.loads(out.read_text())
    assert rec["model"] == "mnist-separable" and rec["quick"] and rec["test_samples"] == 200
    assert rec["runtime"] == pytest.approx(rec["file"], abs=1 / 200)  # the runtime and decompress agree
    assert rec["file"] == rec["stages"][-1]["test_error"] and rec["ratio"] > 1
    assert set(rec["simulated"]) == set(any_model.ARCHES)
    assert not any(sim["partial"] for sim in rec["simulated"].values())
    assert "mnist-separable" in capsys.readouterr().out


def test_quick_needs_an_output_other_than_the_results():
    with pytest.raises(SystemExit):
        any_model.main(["mnist-separable", "--quick"])


def test_numpy_sequence_cross_entropy_equals_torch():
    gen = torch.Generator().manual_seed(0)
    logits, y = 3 * torch.randn(4, 7, 11, generator=gen), torch.randint(0, 11, (4, 7), generator=gen)
    got = models_text.sequence_ce(logits.numpy(), y.numpy())
    assert got.mean() == pytest.approx(models_text.sequence_loss(logits, y).item(), rel=1e-6)


def test_char_lstm_trains_on_its_loss(tmp_path):
    gen = torch.Generator().manual_seed(0)
    text = torch.arange(8).repeat(40)  # a periodic "text": easy to predict
    x = torch.stack([text[i:i + 16] for i in range(0, 288, 16)])
    y = torch.stack([text[i + 1:i + 17] for i in range(0, 288, 16)])
    data = Dataset("toy", x, y, x[:4], y[:4])
    torch.manual_seed(0)
    model = models_text.CharLSTM(8, embed=8, hidden=16)
    result = train(model, data, TrainConfig(epochs=8, batch_size=6, optimizer="adam", lr=0.03, weight_decay=0),
                   progress=False, verbose=False, loss=models_text.sequence_loss, metric="loss")
    assert np.exp(result.history[0]["test_loss"]) > 2 * np.exp(result.test_loss) and np.exp(result.test_loss) < 3


def test_the_lstm_model_runs_end_to_end_from_the_file(tmp_path):
    from deepcompress.data_text import austen_folder

    if not (austen_folder() / "Rdata.rdb").is_file():
        pytest.skip("Jane Austen's novels not installed: run `deepcompress data fetch austen`")
    rec = any_model.run_model("austen-lstm", quick=True, out_dir=tmp_path)
    assert "skipped" not in rec, rec.get("skipped")
    assert rec["metric"] == "loss" and rec["runtime"] == pytest.approx(rec["file"], rel=1e-4)


def test_the_word_lstm_prunes_every_matrix_to_a_tenth_and_resumes_from_its_run_folder(tmp_path):
    from deepcompress.data_text import austen_folder

    if not (austen_folder() / "Rdata.rdb").is_file():
        pytest.skip("Jane Austen's novels not installed: run `deepcompress data fetch austen`")
    rec = any_model.run_model("austen-words-lstm", quick=True, out_dir=tmp_path)
    assert "skipped" not in rec, rec.get("skipped")
    assert rec["runtime"] == pytest.approx(rec["file"], rel=1e-4) and rec["kept"] == pytest.approx(0.1, abs=1e-3)
    layers = {r["name"]: r for r in json.loads((tmp_path / "austen-words-lstm" / "results.json").read_text())["layers"]}
    assert layers["embed"]["weights"] == WORD_VOCAB * models_text.WORD_LSTM["embed"]
    assert all(r["nonzeros"] <= 0.1 * r["weights"] + 1 for r in layers.values())
    dense = tmp_path / "austen-words-lstm" / "baseline-train.pt"
    written = dense.stat().st_mtime_ns
    again = any_model.run_model("austen-words-lstm", quick=True, out_dir=tmp_path, resume=True)
    assert dense.stat().st_mtime_ns == written  # the finished dense training was not redone
    assert (again["dense"], again["file"], again["file_bytes"]) == (rec["dense"], rec["file"], rec["file_bytes"])


def test_the_cells_variant_prunes_only_the_four_lstm_matrices(tmp_path):
    from deepcompress.data_text import austen_folder

    if not (austen_folder() / "Rdata.rdb").is_file():
        pytest.skip("Jane Austen's novels not installed: run `deepcompress data fetch austen`")
    rec = any_model.run_model("austen-words-lstm-cells", quick=True, out_dir=tmp_path)
    layers = {r["name"]: r for r in json.loads((tmp_path / "austen-words-lstm-cells" / "results.json").read_text())["layers"]}
    assert rec["kept_lstm"] == pytest.approx(0.1, abs=1e-3) and rec["kept"] > 0.7
    assert layers["embed"]["nonzeros"] == layers["embed"]["weights"] and layers["out"]["nonzeros"] == layers["out"]["weights"]
    assert "four LSTM matrices" in rec["target"] and rec["retrain_dropout"] == models_text.WORD_LSTM["retrain_dropout"]


def test_the_distill_variant_retrains_towards_the_dense_models_top_words(tmp_path, monkeypatch):
    from deepcompress.data_text import austen_folder

    if not (austen_folder() / "Rdata.rdb").is_file():
        pytest.skip("Jane Austen's novels not installed: run `deepcompress data fetch austen`")
    small = replace(any_model.SPECS["austen-words-lstm"], distill={"k": 4, "weight": 0.5})  # 200 units: fast
    monkeypatch.setitem(any_model.SPECS, "austen-words-lstm", small)
    rec = any_model.run_model("austen-words-lstm", quick=True, out_dir=tmp_path)
    assert rec["distill"] == {"k": 4, "weight": 0.5} and rec["kept"] == pytest.approx(0.1, abs=1e-3)
    assert rec["runtime"] == pytest.approx(rec["file"], rel=1e-4)  # scored on the test labels, not the packing
    big = any_model.SPECS["austen-words-lstm-650-layers-distill"]
    assert big.distill["k"] == 32 and big.recipe == any_model.SPECS["austen-words-lstm-650-layers-long"].recipe


def test_lstm_hidden_option_builds_and_records_that_size(monkeypatch):
    monkeypatch.setitem(any_model.SPECS, "austen-lstm", any_model.SPECS["austen-lstm"])  # restored afterwards
    any_model.use_lstm_hidden(48)
    spec = any_model.SPECS["austen-lstm"]
    assert spec.build({"vocab": 30}).lstm.hidden_size == 48 and spec.notes["hidden"] == 48
    assert spec.recipe["prune"]["layers"]["lstm.weight_hh_l1"] == 0.91  # the same per-layer fractions


@pytest.mark.parametrize("argv", [["austen-lstm", "--lstm-hidden", "0"], ["mnist-separable", "--lstm-hidden", "64"]])
def test_lstm_hidden_refuses_a_size_below_one_or_a_run_without_the_lstm(argv, tmp_path, capsys):
    with pytest.raises(SystemExit):
        any_model.main([*argv, "--quick", "--out", str(tmp_path / "q.json")])
    assert "--lstm-hidden" in capsys.readouterr().err


def test_the_650_unit_word_lstm_prunes_every_matrix_of_a_larger_model():
    spec = any_model.SPECS["austen-words-lstm-650"]
    model = spec.build({"vocab": 5001})
    assert model.lstm.hidden_size == 650 and model.embed.weight.shape == (5001, 650)
    assert spec.recipe["prune"]["layers"] == any_model.SPECS["austen-words-lstm"].recipe["prune"]["layers"]
    assert spec.retrain_dropout == pytest.approx(0.5 * 0.1 ** 0.5, abs=1e-3)  # Han et al.'s D_r at 10% kept
    assert "austen-words-lstm-650" in any_model.LSTM_MODELS and spec.notes["hidden"] == 650


def test_the_sensitivity_records_keep_a_tenth_of_the_word_models_weights():
    sizes = {"embed": 5001 * 650, "out": 5001 * 650, **dict.fromkeys(models_text.LSTM_MATRICES, 4 * 650 * 650)}
    for name in [n for n in any_model.SPECS if n.startswith("austen-words-lstm-650-layers")]:
        layers = any_model.SPECS[name].recipe["prune"]["layers"]
        assert set(layers) == set(sizes) and name in any_model.LSTM_MODELS
        assert sum((1 - layers[n]) * sizes[n] for n in sizes) <= 0.1 * sum(sizes.values())


def test_the_transformer_prunes_layers_its_encoder_has():
    from deepcompress.compress.prune import prunable_layers

    spec = any_model.SPECS["mnist-transformer"]
    model = spec.build({})
    assert set(spec.recipe["prune"]["layers"]) == set(prunable_layers(model))
    ops = [op["op"] for op in any_model.architecture_ops(model, torch.zeros(1, 1, 28, 28))]
    assert ops.count("fc") == 9 and ops[:3] == ["reshape", "permute", "conv1d"]


@pytest.mark.parametrize("name, hidden", [("austen-words-lstm-1000-tied", 1000), ("austen-words-lstm-650-tied", 650)])
def test_the_tied_word_lstms_prune_their_one_table_and_every_lstm_matrix_to_a_tenth_in_all(name, hidden):
    from deepcompress.compress.prune import matrix_layers

    spec = any_model.SPECS[name]
    model = spec.build({"vocab": 5001})
    assert model.out.weight is model.embed.weight and model.lstm.hidden_size == hidden
    layers = spec.recipe["prune"]["layers"]
    sizes = {n: w.numel() for n, w in ((n, any_model_specs.layer_weight(model, n)) for n in matrix_layers(model))}
    assert set(layers) == set(sizes) == {"embed", *models_text.LSTM_MATRICES}  # the bias is no matrix
    assert sum((1 - layers[n]) * sizes[n] for n in sizes) <= 0.1 * sum(sizes.values())
    assert spec.recipe["quantize"]["layers"] == {"out_bias": 8} and name in any_model.LSTM_MODELS


def test_dense_only_trains_the_dense_model_and_records_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(any_model.SPECS["mnist-separable"], "quick_sizes", (200, 100))
    out = tmp_path / "q.json"
    assert any_model.main(["mnist-separable", "--quick", "--dense-only", "--out", str(out),
                           "--work", str(tmp_path / "w")]) == 0
    run = tmp_path / "w" / "quick" / "mnist-separable"
    assert (run / "baseline-train.pt").is_file() and not (run / "model.dcz").exists() and not out.exists()
