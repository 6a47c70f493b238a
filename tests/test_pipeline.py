"""The compression pipeline end to end on a small problem: the file is the model, bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deepcompress import format as dcz
from deepcompress.cli import main
from deepcompress.compress import architecture_ops, compress_model, load_into
from deepcompress.compress.report import report_markdown, results_record
from deepcompress.models import build_model
from deepcompress.train import TrainConfig, evaluate, train

RECIPE = {
    "prune": {"rule": "sparsity", "iterations": 2, "layers": {"ip1": 0.9, "ip2": 0.8, "ip3": 0.5},
              "retrain": {"epochs": 1, "batch_size": 32, "lr": 0.01}},
    "quantize": {"fc_bits": 4, "finetune": {"epochs": 1, "batch_size": 32, "optimizer": "adam", "lr": 1e-4}},
    "encode": {"fc_gap_bits": 4},
}


@pytest.fixture
def trained(tiny_data):
    torch.manual_seed(0)
    model = build_model("lenet-300-100")
    train(model, tiny_data, TrainConfig(epochs=2, batch_size=32, lr=0.05), progress=False, verbose=False)
    return model


def test_file_reproduces_the_quantized_model_exactly(trained, tiny_data, tmp_path):
    outcome = compress_model(trained, tiny_data, RECIPE, tmp_path, progress=False)
    path = tmp_path / "model.dcz"
    assert outcome["file_bytes"] == path.stat().st_size
    layers, meta = dcz.read(path)
    for layer in layers:
        module = getattr(trained, layer.name)
        assert np.array_equal(layer.to_dense(), module.weight.detach().numpy())
        assert np.array_equal(layer.bias, module.bias.detach().numpy())
        assert layer.gap_bits == 4 and len(np.unique(layer.codebook)) <= 16
    assert {l.name: round(l.nnz / l.size, 2) for l in layers} == {"ip1": 0.1, "ip2": 0.2, "ip3": 0.5}
    assert outcome["test_error"] == evaluate(trained, tiny_data.test_x, tiny_data.test_y)
    assert meta["ops"] == architecture_ops(trained, torch.zeros(1, 1, 28, 28))
    rec = results_record("lenet-300-100", "synthetic", outcome, "test")
    assert rec["file_bytes"] == path.stat().st_size and rec["dense_bytes"] == 266_610 * 4
    assert sum(r["bytes"] for r in rec["layers"]) + rec["file_header_bytes"] == rec["file_bytes"]
    # the file's field names, with the file's meaning
    widths = [(layer.index_bits, layer.gap_bits) for layer in layers]
    assert [(r["index_bits"], r["gap_bits"]) for r in rec["layers"]] == widths
    assert "| index bits | gap bits |" in report_markdown(rec)


def _f16(tensor) -> np.ndarray:
    return tensor.detach().numpy().astype(np.float16).astype(np.float32)


def test_f16_values_file_holds_the_rounded_model(trained, tiny_data, tmp_path):
    import copy

    recipe = {**RECIPE, "encode": {"fc_gap_bits": 4, "values": "f16"}}
    start = copy.deepcopy(trained)  # compress_model works on the model in place; resuming starts from the same one
    outcome = compress_model(trained, tiny_data, recipe, tmp_path, progress=False)
    path = tmp_path / "model.dcz"
    assert path.read_bytes()[4:6] == b"\x02\x00" and outcome["values"] == "f16"
    layers, _ = dcz.read(path)
    rounded = copy.deepcopy(trained)
    for layer in layers:
        module = getattr(trained, layer.name)
        assert layer.value_dtype == "f16"
        assert np.array_equal(layer.to_dense(), _f16(module.weight))  # exactly the model's values, rounded
        assert np.array_equal(layer.bias, _f16(module.bias))
        with torch.no_grad():
            getattr(rounded, layer.name).weight.copy_(torch.from_numpy(_f16(module.weight)))
            getattr(rounded, layer.name).bias.copy_(torch.from_numpy(_f16(module.bias)))
    assert outcome["test_error"] == evaluate(rounded, tiny_data.test_x, tiny_data.test_y)  # measured from the file
    rec = results_record("lenet-300-100", "synthetic", outcome, "test")
    sizes = dcz.file_size_breakdown(path)
    assert rec["values"] == "f16" and all(r["values"] == "f16" for r in rec["layers"])
    for row, layer, size in zip(rec["layers"], layers, sizes.layers):
        assert row["codebook_bytes"] == size.codebook == 2 * layer.codebook.size
        assert row["bias_bytes"] == size.bias == 2 * layer.shape[0]
    assert sum(r["bytes"] for r in rec["layers"]) + rec["file_header_bytes"] == rec["file_bytes"]
    assert "stored as float16" in report_markdown(rec)
    # re-encoded from the run's checkpoints with float32 values (resume, no retraining): the same model,
    # larger by exactly 2 bytes per codebook entry and bias value
    import shutil

    shutil.copytree(tmp_path, tmp_path / "f32", ignore=shutil.ignore_patterns("*.dcz"))
    again = compress_model(start, tiny_data, {**RECIPE, "encode": {"fc_gap_bits": 4, "values": "f32"}},
                           tmp_path / "f32", resume=True, progress=False)
    assert again["file_bytes"] - outcome["file_bytes"] == sum(2 * (l.codebook.size + l.shape[0]) for l in layers)
    assert [s["test_error"] for s in again["stages"][-3:-1]] == [s["test_error"] for s in outcome["stages"][-3:-1]]


def test_encode_values_setting_is_checked(trained, tiny_data, tmp_path):
    from deepcompress.compress.export import quantized_layers
    from deepcompress.compress.prune import Masks
    from deepcompress.compress.quantize import SharedWeights
    from deepcompress.errors import UserError

    with pytest.raises(UserError, match=r"\[encode\] values = 'float16': expected one of 'f32', 'f16'"):
        compress_model(trained, tiny_data, {**RECIPE, "encode": {"values": "float16"}}, tmp_path, progress=False)
    assert not (tmp_path / "prune-1.pt").exists()  # refused before any training
    with pytest.raises(UserError, match=r"values = \['f16'\]"):  # a TOML list, not a string
        compress_model(trained, tiny_data, {**RECIPE, "encode": {"values": ["f16"]}}, tmp_path, progress=False)
    shared = SharedWeights(trained, Masks(trained), {"ip1": 2, "ip2": 2, "ip3": 2})
    with torch.no_grad():
        trained.ip3.bias[3] = 1e5
    with pytest.raises(UserError, match=r"values = 'f16': layer 'ip3': bias value 100000 is outside float16's range"):
        quantized_layers(trained, shared, {n: 4 for n in shared.modules}, shared.bits(), "f16")
    assert len(quantized_layers(trained, shared, {n: 4 for n in shared.modules}, shared.bits(), "f32")) == 3


def test_resume_skips_finished_rounds(trained, tiny_data, tmp_path):
    import copy

    start = copy.deepcopy(trained)  # compress_model works on the model in place; resuming starts from the same one
    first = compress_model(trained, tiny_data, RECIPE, tmp_path, progress=False)
    again = compress_model(start, tiny_data, RECIPE, tmp_path, resume=True, progress=False)
    stages = [s["stage"] for s in again["stages"]]
    assert not any(s.startswith("prune") for s in stages)  # both rounds were loaded from disk
    assert again["file_bytes"] == first["file_bytes"]


def test_an_existing_run_is_refused_without_resume_or_overwrite(trained, tiny_data, tmp_path):
    import copy

    from deepcompress.errors import UserError

    start = copy.deepcopy(trained)
    compress_model(copy.deepcopy(start), tiny_data, RECIPE, tmp_path, progress=False)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert "prune-2.pt" in before and "model.dcz" in before
    with pytest.raises(UserError) as err:
        compress_model(copy.deepcopy(start), tiny_data, RECIPE, tmp_path, progress=False)
    assert str(err.value) == (f"{tmp_path} already holds a compression run (model.dcz); pass resume=True to "
                              f"continue it or overwrite=True to start over")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # refused before any work
    one_round = {**RECIPE, "prune": {**RECIPE["prune"], "iterations": 1}}
    again = compress_model(copy.deepcopy(start), tiny_data, one_round, tmp_path, progress=False, overwrite=True)
    assert not (tmp_path / "prune-2.pt").exists()  # the earlier run's second round went with it
    assert [s["stage"] for s in again["stages"]][:3] == ["baseline", "prune 1/1 before retraining",
                                                          "prune 1/1 retrained"]
    assert json.loads((tmp_path / "stages.json").read_text())["recipe [prune] iterations"] == 1


def test_architecture_ops_of_the_lenets():
    assert architecture_ops(build_model("lenet-300-100"), torch.zeros(1, 1, 28, 28)) == [
        {"op": "flatten"}, {"op": "fc", "layer": "ip1"}, {"op": "relu"}, {"op": "fc", "layer": "ip2"},
        {"op": "relu"}, {"op": "fc", "layer": "ip3"}]
    ops = [o["op"] for o in architecture_ops(build_model("lenet-5"), torch.zeros(1, 1, 28, 28))]
    assert ops == ["conv", "maxpool", "conv", "maxpool", "flatten", "fc", "relu", "fc"]


def test_load_into_refuses_a_mismatched_model(trained, tiny_data, tmp_path):
    compress_model(trained, tiny_data, RECIPE, tmp_path, progress=False)
    with pytest.raises(Exception, match="shape"):
        load_into(build_model("lenet-5"), tmp_path / "model.dcz")


def test_compress_command_writes_report(trained, tmp_path, monkeypatch):
    from conftest import write_idx_folder

    (tmp_path / "idx").mkdir()
    write_idx_folder(tmp_path / "idx", n_train=64, n_test=16)
    torch.save(trained.state_dict(), tmp_path / "model.pt")
    recipe = tmp_path / "r.toml"
    recipe.write_text('[prune]\niterations = 1\n[prune.layers]\nip1 = 0.9\n[prune.retrain]\nepochs = 1\n'
                      '[quantize]\nfc_bits = 3\n')
    out = tmp_path / "out"
    assert main(["compress", "--data-dir", str(tmp_path / "idx"), "--checkpoint", str(tmp_path / "model.pt"),
                 "--recipe", str(recipe), "--out", str(out), "--quiet"]) == 0
    rec = json.loads((out / "results.json").read_text())
    assert {"model", "dataset", "test_error", "dense_bytes", "file_bytes", "ratio", "layers"} <= set(rec)
    assert rec["file_bytes"] == (out / "model.dcz").stat().st_size
    assert "ratio" in (out / "report.md").read_text()


def test_models_with_other_parameters_are_refused(tiny_data, tmp_path):
    from torch import nn

    from deepcompress.errors import UserError

    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.PReLU())
    with pytest.raises(UserError, match=r"^2 \(PReLU\): parameters the .dcz file cannot store"):
        compress_model(model, tiny_data, RECIPE, tmp_path, progress=False)
    assert not (tmp_path / "prune-1.pt").exists()  # refused before any work


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_a_model_not_in_float32_is_refused_before_any_work(tiny_data, tmp_path, dtype):
    from torch import nn

    from deepcompress.errors import UserError

    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).to(dtype)
    name = str(dtype).removeprefix("torch.")
    with pytest.raises(UserError, match=rf"^1.weight: {name} \(2 parameter\(s\) .*call model.float\(\) first"):
        compress_model(model, tiny_data, RECIPE, tmp_path, progress=False)
    assert not (tmp_path / "prune-1.pt").exists()


def test_batchnorm_is_folded_and_torch_prune_masks_are_applied(tiny_data, tmp_path):
    from torch import nn
    from torch.nn.utils import prune

    from deepcompress.runtime import load

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 13 * 13, 10), nn.BatchNorm1d(10))
    prune.l1_unstructured(model[4], "weight", amount=0.5)  # a reparametrised weight_orig * weight_mask
    recipe = {"prune": {"iterations": 1, "layers": {"0": 0.2, "4": 0.6}, "retrain": {"epochs": 1, "batch_size": 32}},
              "quantize": {"fc_bits": 4, "conv_bits": 5}}
    outcome = compress_model(model, tiny_data, recipe, tmp_path, progress=False, example_input=tiny_data.test_x[:2])
    assert [s["stage"] for s in outcome["stages"]].count("batchnorm folded") == 1
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # folded into the layers
    layers, meta = dcz.read(tmp_path / "model.dcz")
    assert [o["op"] for o in meta["ops"]] == ["conv", "relu", "flatten", "fc"]
    assert not hasattr(model[4], "weight_orig")
    x = tiny_data.test_x[:50]
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    got = load(tmp_path / "model.dcz")(x.numpy())
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def test_any_sequential_model_compresses(tiny_data, tmp_path):
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(196, 10))
    train(model, tiny_data, TrainConfig(epochs=2, batch_size=32, lr=0.05), progress=False, verbose=False)
    recipe = {"prune": {"iterations": 1, "layers": {"0": 0.5, "4": 0.8}, "retrain": {"epochs": 1}},
              "quantize": {"finetune": {"epochs": 0}}}
    outcome = compress_model(model, tiny_data, recipe, tmp_path, progress=False)
    layers, meta = dcz.read(tmp_path / "model.dcz")
    assert [(l.name, l.kind) for l in layers] == [("0", "conv"), ("4", "fc")]
    # 18 surviving conv weights cannot fill 256 clusters: the index is as wide as the codebook needs.
    assert layers[0].index_bits == max(1, (len(layers[0].codebook) - 1).bit_length()) < 8
    assert layers[1].index_bits == 5
    assert [o["op"] for o in meta["ops"]] == ["conv", "relu", "maxpool", "flatten", "fc"]
    assert meta["ops"][0]["stride"] == [2, 2] and meta["ops"][0]["padding"] == [1, 1]
    assert outcome["test_error"] == evaluate(model, tiny_data.test_x, tiny_data.test_y)


@pytest.mark.parametrize("prune", [
    {"schedule": "gradual", "every": 5, "layers": {"ip1": 0.9, "ip2": 0.8}, "retrain": {"epochs": 2, "batch_size": 32}},
    {"rule": "global", "sparsity": 0.9, "iterations": 2, "retrain": {"epochs": 1, "batch_size": 32}},
    {"rule": "std", "iterations": 1, "layers": {"ip1": 1.0, "ip2": 1.0}, "retrain": {"epochs": 1, "batch_size": 32}},
])
def test_pruning_schedules_reach_their_targets(trained, tiny_data, tmp_path, prune):
    recipe = {"prune": prune, "quantize": {"fc_bits": 4, "finetune": {"epochs": 0}}}
    compress_model(trained, tiny_data, recipe, tmp_path, progress=False)
    layers, _ = dcz.read(tmp_path / "model.dcz")
    kept = {l.name: l.nnz / l.size for l in layers}
    if prune.get("schedule") == "gradual":
        assert kept["ip1"] == pytest.approx(0.1, abs=0.002) and kept["ip2"] == pytest.approx(0.2, abs=0.002)
    elif prune.get("rule") == "global":
        assert sum(l.nnz for l in layers) == pytest.approx(0.1 * 266_200, rel=0.01)
    else:  # |w| > std keeps about a third of roughly Gaussian weights
        assert 0.2 < kept["ip1"] < 0.45 and kept["ip3"] == 1.0


def test_gradual_pruning_resumes_where_it_stopped(trained, tiny_data, tmp_path):
    """Kill the gradual schedule at the start of epoch 2, resume: the file is byte-identical."""
    import copy

    from deepcompress.compress.pipeline import PipelineHooks
    from deepcompress.train import TrainHook

    recipe = {"prune": {"schedule": "gradual", "every": 5, "layers": {"ip1": 0.9, "ip2": 0.8},
                        "retrain": {"epochs": 2, "batch_size": 32}},
              "quantize": {"fc_bits": 4, "finetune": {"epochs": 0}}}
    whole = compress_model(copy.deepcopy(trained), tiny_data, recipe, tmp_path / "whole", progress=False)

    class Stop(Exception):
        pass

    class StopInEpoch2(TrainHook):
        def on_epoch_end(self, epoch, model, metrics):
            if epoch == 0:
                self.armed = True

        def after_step(self, model):
            if getattr(self, "armed", False):
                raise Stop

    class StopGradualPruning(PipelineHooks):
        def training(self, name):
            return [StopInEpoch2()] if name == "prune-gradual" else []

    with pytest.raises(Stop):
        compress_model(copy.deepcopy(trained), tiny_data, recipe, tmp_path / "cut", progress=False,
                       hooks=StopGradualPruning())
    assert torch.load(tmp_path / "cut" / "prune-gradual-train.pt", weights_only=True)["epoch"] == 1
    resumed = compress_model(copy.deepcopy(trained), tiny_data, recipe, tmp_path / "cut", resume=True,
                             progress=False)
    assert (tmp_path / "cut" / "model.dcz").read_bytes() == (tmp_path / "whole" / "model.dcz").read_bytes()
    assert resumed["test_error"] == whole["test_error"]


USER_MODEL = '''
from torch import nn


def build():
    return nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, bias=False), nn.BatchNorm2d(4), nn.ReLU6(), nn.Flatten(),
                         nn.Linear(4 * 13 * 13, 10))
'''


def test_compress_command_takes_a_users_model_file(tmp_path, capsys):
    from conftest import write_idx_folder

    from deepcompress.models import build_model
    from deepcompress.runtime import load

    (tmp_path / "idx").mkdir()
    write_idx_folder(tmp_path / "idx", n_train=64, n_test=16)
    (tmp_path / "net.py").write_text(USER_MODEL)
    spec = f"{tmp_path / 'net.py'}:build"
    torch.manual_seed(0)
    torch.save(build_model(spec).state_dict(), tmp_path / "net.pt")
    recipe = tmp_path / "r.toml"
    recipe.write_text('[prune]\niterations = 1\n[prune.layers]\n"0" = 0.3\n"4" = 0.8\n[prune.retrain]\nepochs = 1\n'
                      '[quantize]\nfc_bits = 3\nconv_bits = 4\n')
    out = tmp_path / "out"
    assert main(["compress", "--model", spec, "--data-dir", str(tmp_path / "idx"), "--checkpoint",
                 str(tmp_path / "net.pt"), "--recipe", str(recipe), "--out", str(out), "--quiet"]) == 0
    _, meta = dcz.read(out / "model.dcz")
    assert [o["op"] for o in meta["ops"]] == ["conv", "relu6", "flatten", "fc"]  # BatchNorm folded
    assert load(out / "model.dcz")(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)
    capsys.readouterr()
    assert main(["compress", "--model", spec, "--data-dir", str(tmp_path / "idx"), "--out", str(out)]) == 1
    assert "your own model needs --recipe" in capsys.readouterr().err
    assert main(["compress", "--model", f"{tmp_path / 'net.py'}:nope", "--data-dir", str(tmp_path / "idx"),
                 "--checkpoint", str(tmp_path / "net.pt"), "--recipe", str(recipe), "--out", str(out)]) == 1
    assert "defines no function 'nope'" in capsys.readouterr().err
    (tmp_path / "bad.py").write_text("def build():\n    size = 3\n    return {}[size]\n")
    assert main(["compress", "--model", f"{tmp_path / 'bad.py'}:build", "--data-dir", str(tmp_path / "idx"),
                 "--checkpoint", str(tmp_path / "net.pt"), "--recipe", str(recipe), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"build() failed at {tmp_path / 'bad.py'}:3 (KeyError: 3)" in err and "Traceback" not in err
