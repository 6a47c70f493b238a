"""A user's own training setup: any loss, torch DataLoaders, a checkpoint of their model, their test data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from deepcompress import decompress
from deepcompress.cli import main
from deepcompress.compress import compress_model
from deepcompress.data import DataError, load_test_set
from deepcompress.errors import UserError
from deepcompress.runtime import load
from deepcompress.train import TrainConfig, load_weights, score, train


def regression_loaders(seed: int = 0) -> tuple[DataLoader, DataLoader]:
    """y = x @ w + noise, 4 features: 256 train / 64 test samples, batches of 32."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.tensor([[1.5], [-2.0], [0.5], [3.0]])
    x = torch.randn(320, 4, generator=gen)
    y = x @ w + 0.05 * torch.randn(320, 1, generator=gen)
    train_set, test_set = TensorDataset(x[:256], y[:256]), TensorDataset(x[256:], y[256:])
    return (DataLoader(train_set, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(seed)),
            DataLoader(test_set, batch_size=32))


def regressor() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))


def mean_mse(model, loader) -> float:
    """The reference: mean squared error over every test sample, computed directly."""
    with torch.no_grad():
        x = torch.cat([xb for xb, _ in loader])
        y = torch.cat([yb for _, yb in loader])
        return float(((model(x) - y) ** 2).mean())


def test_train_with_mse_on_dataloaders():
    loaders = regression_loaders()
    model = regressor()
    before = mean_mse(model, loaders[1])
    result = train(model, loaders, TrainConfig(epochs=5, optimizer="adam", lr=0.1, weight_decay=0),
                   progress=False, verbose=False, loss=nn.MSELoss())
    assert result.test_loss == pytest.approx(mean_mse(model, loaders[1]), rel=1e-5)
    assert result.test_loss < before / 10 and np.isnan(result.test_error)
    assert "test_loss" in result.history[-1] and "train_error" not in result.history[-1]


def test_classification_on_dataloaders_scores_the_error(tiny_data):
    loaders = (DataLoader(TensorDataset(tiny_data.train_x, tiny_data.train_y), batch_size=64, shuffle=True),
               DataLoader(TensorDataset(tiny_data.test_x, tiny_data.test_y), batch_size=50))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    result = train(model, loaders, TrainConfig(epochs=2), progress=False, verbose=False)
    with torch.no_grad():
        wrong = (model(tiny_data.test_x).argmax(1) != tiny_data.test_y).float().mean().item()
    assert result.test_error == pytest.approx(wrong) and result.test_error < 0.2


def test_compress_model_with_mse_and_dataloaders(tmp_path):
    loaders = regression_loaders()
    model = regressor()
    train(model, loaders, TrainConfig(epochs=5, optimizer="adam", lr=0.1, weight_decay=0),
          progress=False, verbose=False, loss=F.mse_loss)
    recipe = {"prune": {"iterations": 1, "layers": {"0": 0.5, "2": 0.25},
                        "retrain": {"epochs": 1, "optimizer": "adam", "lr": 1e-3, "weight_decay": 0}},
              "quantize": {"fc_bits": 5, "finetune": {"epochs": 1, "optimizer": "adam", "lr": 1e-4,
                                                      "weight_decay": 0}}}
    out = compress_model(model, loaders, recipe, tmp_path, loss=F.mse_loss, progress=False)
    file_model = decompress(out["file"])
    assert out["test_loss"] == pytest.approx(mean_mse(file_model, loaders[1]), rel=1e-5)
    x = torch.cat([xb for xb, _ in loaders[1]])
    with torch.no_grad():
        np.testing.assert_allclose(load(out["file"])(x.numpy()), file_model(x).numpy(), rtol=1e-5, atol=1e-6)
    rec = json.loads((tmp_path / "results.json").read_text())
    assert rec["metric"] == "loss" and rec["test_loss"] == out["test_loss"] and "test_error" not in rec
    assert rec["baseline_loss"] == out["stages"][0]["test_loss"]
    assert "Test loss measured from the decoded file" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize("data,message", [
    (DataLoader(TensorDataset(torch.zeros(4, 2), torch.zeros(4))), "one DataLoader is not enough"),
    ((DataLoader(TensorDataset(torch.zeros(4, 2))), DataLoader(TensorDataset(torch.zeros(4, 2)))),
     "each batch must be \\(inputs, targets\\)"),
    ("mnist", "expected a deepcompress Dataset or \\(train_loader, test_loader\\)"),
])
def test_unusable_data_is_one_clear_error(data, message):
    with pytest.raises(UserError, match=message):
        train(nn.Linear(2, 1), data, TrainConfig(epochs=1), progress=False, verbose=False)


def test_unknown_metric_and_uncallable_loss_are_refused():
    with pytest.raises(UserError, match="metric = 'accuracy'"):
        train(nn.Linear(4, 1), regression_loaders(), TrainConfig(epochs=0), metric="accuracy")
    with pytest.raises(UserError, match="loss: expected a callable"):
        train(nn.Linear(4, 1), regression_loaders(), TrainConfig(epochs=0), loss="mse")


def test_score_of_a_dataset_equals_the_top1_error(tiny_data):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with torch.no_grad():
        wrong = (model(tiny_data.test_x).argmax(1) != tiny_data.test_y).float().mean().item()
    assert score(model, tiny_data) == pytest.approx(wrong)


def test_checkpoint_keys_that_do_not_fit_are_named(tmp_path):
    path = tmp_path / "ckpt.pt"
    state = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2)).state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["0.bias"]
    torch.save(state, path)
    with pytest.raises(UserError) as err:
        load_weights(regressor(), path, "model.py:build")
    msg = str(err.value)
    assert "\n" not in msg and "missing 0.bias" in msg and "unexpected extra.weight" in msg
    assert "wrong shape 2.weight [2, 16] (model [1, 16])" in msg
    good = tmp_path / "good.pt"
    torch.save({"model": regressor().state_dict()}, good)  # a training checkpoint's layout
    assert isinstance(load_weights(regressor(), good, "m"), nn.Module)


def test_compress_command_loads_a_users_checkpoint_or_names_bad_keys(tmp_path, capsys):
    model_py = tmp_path / "model.py"
    model_py.write_text("from torch import nn\n\ndef build():\n"
                        "    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))\n")
    bad = tmp_path / "bad.pt"
    torch.save({"1.weight": torch.zeros(10, 784)}, bad)
    recipe = tmp_path / "r.toml"
    recipe.write_text('[prune]\niterations = 1\nlayers = {"1" = 0.5}\n[prune.retrain]\nepochs = 0\n'
                      '[quantize]\nfc_bits = 4\n[quantize.finetune]\nepochs = 0\n')
    code = main(["compress", "--model", f"{model_py}:build", "--checkpoint", str(bad), "--recipe", str(recipe),
                 "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.count("\n") == 0 and "missing 1.bias" in err


def write_npz(path, x, y):
    np.savez(path, x=x, y=y)


def test_run_data_takes_a_npz_file_and_an_idx_folder(tmp_path, capsys):
    from conftest import idx_bytes

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 20, dtype=np.uint8)
    write_npz(tmp_path / "test.npz", images[:, None] / np.float32(255), labels)
    folder = tmp_path / "idx"
    folder.mkdir()
    (folder / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(images))
    (folder / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    name_a, xa, ya = load_test_set(str(tmp_path / "test.npz"))
    name_b, xb, yb = load_test_set(str(folder))
    np.testing.assert_allclose(xa, xb, rtol=1e-6)
    assert xb.shape == (20, 1, 28, 28) and (ya == yb).all() and ya.dtype == np.int64
    dcz_path = str(Path(__file__).parent / "data" / "lenet-300-100-mnist.dcz")
    model = load(dcz_path)
    expected = float((model.predict(xb) != yb).mean())
    code = main(["run", dcz_path, "--data", str(folder), "--latency-images", "2", "--json"])
    res = json.loads(capsys.readouterr().out)
    assert code == 0 and res["test"]["error"] == pytest.approx(expected) and res["dataset"] == str(folder)


def test_run_data_evaluates_a_language_model_per_position_as_perplexity_and_simulate_reads_its_ids(tmp_path,
                                                                                                     capsys):
    from deepcompress.data import Dataset
    from deepcompress.models_text import CharLSTM, sequence_loss

    torch.manual_seed(0)
    model = CharLSTM(12, embed=8, hidden=8)
    x, y = torch.randint(0, 12, (60, 5)), torch.randint(0, 12, (60, 5))
    recipe = {"prune": {"iterations": 1, "layers": {"lstm.weight_ih_l0": 0.5},
                        "retrain": {"epochs": 1, "batch_size": 20}}, "quantize": {"fc_bits": 4}}
    compress_model(model, Dataset("toy", x[:40], y[:40], x[40:], y[40:]), recipe, tmp_path / "run",
                   example_input=x[:1], progress=False, loss=sequence_loss)
    path = str(tmp_path / "run" / "model.dcz")
    logits = decompress(path).eval()(x[40:]).detach()
    expected = float(F.cross_entropy(logits.reshape(-1, 12), y[40:].reshape(-1)))  # the reference: PyTorch
    write_npz(tmp_path / "lm.npz", x[40:].numpy().astype(np.int32), y[40:].numpy())
    capsys.readouterr()  # what compress_model printed
    code = main(["run", path, "--data", str(tmp_path / "lm.npz"), "--latency-images", "2", "--json"])
    ev = json.loads(capsys.readouterr().out)["test"]
    assert code == 0 and ev["labels"] == 100 and ev["images"] == 20
    assert ev["cross_entropy"] == pytest.approx(expected, rel=1e-5)
    assert ev["perplexity"] == pytest.approx(np.exp(expected), rel=1e-5)
    assert ev["error"] == pytest.approx(float((logits.argmax(-1) != y[40:]).float().mean()))
    assert main(["simulate", path, "--arch", "eie", "--data", str(tmp_path / "lm.npz"), "--samples", "2"]) == 0
    assert "real inputs" in capsys.readouterr().out
    assert main(["simulate", path, "--arch", "eie", "--text", "a cat"]) == 1
    assert "--text tokenizes for the MiniLM sentence encoder and this file is not one" in capsys.readouterr().err
    write_npz(tmp_path / "float.npz", x[40:].numpy() + 0.5, y[40:].numpy())
    assert main(["run", path, "--data", str(tmp_path / "float.npz")]) != 0
    assert "float.npz: the model takes integer token ids; x is float32" in capsys.readouterr().err
    write_npz(tmp_path / "per-sample.npz", x[40:].numpy(), y[40:, 0].numpy())  # a label per sequence
    assert main(["run", path, "--data", str(tmp_path / "per-sample.npz")]) != 0
    assert "scores each of (5,) positions, so y must be (20, 5)" in capsys.readouterr().err


def test_run_data_refuses_a_label_per_position_for_a_model_that_scores_each_sample_once(tmp_path, capsys):
    dcz_path = str(Path(__file__).parent / "data" / "lenet-300-100-mnist.dcz")
    rng = np.random.default_rng(0)  # 28 images and 28 labels each: numpy would broadcast the answers silently
    write_npz(tmp_path / "t.npz", rng.random((28, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, (28, 1)))
    assert main(["run", dcz_path, "--data", str(tmp_path / "t.npz"), "--batch", "28"]) != 0
    assert "one class per sample, so y must be (28,)" in capsys.readouterr().err


@pytest.mark.parametrize("make,message", [
    (lambda p: write_npz(p / "a.npz", np.zeros((3, 4)), np.zeros(3)), "y integer labels"),
    (lambda p: write_npz(p / "a.npz", np.zeros((3, 4)), np.zeros((3, 5), int)), "a label per position"),
    (lambda p: write_npz(p / "a.npz", np.zeros((3, 4)), np.zeros(2, int)), "must be \\(N, ...\\) and \\(N,\\)"),
    (lambda p: np.savez(p / "a.npz", images=np.zeros((3, 4))), "needs arrays named x and y"),
    (lambda p: np.savez(p / "a.npz", x=np.array([{}] * 3, dtype=object), y=np.zeros(3, int)), "not a readable"),
    (lambda p: (p / "a.npz").write_bytes(b"not a zip"), "not a readable"),
])
def test_bad_test_files_are_one_line(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(DataError, match=message):
        load_test_set(str(tmp_path / "a.npz"))


def test_run_data_names_what_it_could_not_find(tmp_path):
    with pytest.raises(DataError, match="neither a data set"):
        load_test_set(str(tmp_path / "nothing"))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        load_test_set(str(tmp_path))


def test_the_documented_dataloader_example_runs(tmp_path, monkeypatch, capsys):
    import re
    import runpy

    api = (Path(__file__).resolve().parents[1] / "docs" / "API.md").read_text()
    section = api.split("## Your own data loaders and loss", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    (tmp_path / "example.py").write_text(code)
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(tmp_path / "example.py"), run_name="__main__")
    dense, filed, ratio = map(float, re.search(r"test MSE: dense ([\d.]+), from the file ([\d.]+), ([\d.]+)x",
                                               capsys.readouterr().out).groups())
    rec = json.loads((tmp_path / "out" / "regression" / "results.json").read_text())
    assert rec["test_loss"] == pytest.approx(filed, abs=5e-5) and rec["baseline_loss"] == pytest.approx(dense, abs=5e-5)
    assert ratio > 1


def test_run_with_a_npz_file_needs_no_torch(tmp_path):
    from conftest import LIST_HEAVY, without_torch

    rng = np.random.default_rng(1)
    write_npz(tmp_path / "t.npz", rng.random((6, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 6))
    dcz_path = str(Path(__file__).parent / "data" / "lenet-5-mnist.dcz")
    code = ("import sys, json\nfrom pathlib import Path\nfrom deepcompress.cli_runtime import run_file\n"
            "res = run_file(Path(sys.argv[1]), sys.argv[2], None, 4, 2)\n" + LIST_HEAVY +
            "print(json.dumps([res['test']['images'], heavy]))")
    images, heavy = json.loads(without_torch(code, dcz_path, str(tmp_path / "t.npz")).stdout.splitlines()[-1])
    assert images == 6 and heavy == []
