"""The runtime on real compressed files (the committed LeNet files in tests/data) against the torch-decoded
model and the error their making measured, and `deepcompress run`."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest
import torch
from conftest import FIXTURE_MODELS, fixture_file, write_idx_folder

from deepcompress import cli_runtime
from deepcompress import format as dcz
from deepcompress.cli import main
from deepcompress.compress.export import load_into
from deepcompress.data import load_arrays
from deepcompress.errors import UserError
from deepcompress.models import build_model
from deepcompress.runtime import load

REL_TOL = 1e-5


def torch_model(path):
    """The PyTorch model named in the file's meta, its weights decoded from the file."""
    model = build_model(dcz.read(path)[1]["model"])
    load_into(model, path)
    return model.eval()


@pytest.mark.parametrize("model_name", FIXTURE_MODELS)
def test_real_file_matches_torch_decoded_model(model_name, mnist_test):
    path, _ = fixture_file(model_name)
    reference = torch_model(path)
    x, _ = mnist_test
    x = x[:2000] if model_name == "lenet-5" else x  # LeNet-5's convolutions are the slow part
    with torch.no_grad():
        ref = torch.cat([reference(torch.from_numpy(x[i:i + 1000])) for i in range(0, len(x), 1000)]).numpy()
    for batch in (1, 64):
        model = load(path, batch=batch)
        got = np.concatenate([model(x[i:i + 256]) for i in range(0, len(x), 256)])
        err = np.linalg.norm(got - ref) / np.linalg.norm(ref)
        assert err < REL_TOL, (batch, err)
        np.testing.assert_array_equal(got.argmax(1), ref.argmax(1))
        for i in range(5):  # batch-1 calls take the single-vector kernels
            assert np.linalg.norm(model(x[i]) - ref[i]) / np.linalg.norm(ref[i]) < REL_TOL


@pytest.mark.parametrize("model_name", FIXTURE_MODELS)
def test_runtime_gets_the_error_measured_when_the_file_was_made(model_name, mnist_test):
    path, made = fixture_file(model_name)
    x, y = mnist_test
    for batch, threads in ((1, 1), (500, 2)):  # layouts tuned for batch 1 and for batch 500
        model = load(path, batch=batch, threads=threads)
        wrong = sum(int((model.predict(x[i:i + 1000]) != y[i:i + 1000]).sum()) for i in range(0, len(y), 1000))
        assert (wrong, wrong / len(y)) == (made["test_wrong"], made["test_error"]), (batch, threads)


def _run(argv) -> int:
    parser = argparse.ArgumentParser()
    cli_runtime.register(parser.add_subparsers())
    args = parser.parse_args(["run", *argv])
    return args.func(args)


@pytest.mark.parametrize("model_name", FIXTURE_MODELS)
def test_run_reproduces_the_compression_report(model_name, tmp_path, capsys, keep_torch_threads):
    """`deepcompress run` on the file beside a results.json with the error its making measured: a match."""
    path, made = fixture_file(model_name)
    shutil.copy(path, tmp_path / "model.dcz")
    (tmp_path / "results.json").write_text(json.dumps(made))
    code = main(["run", str(tmp_path / "model.dcz"), "--data", "mnist", "--latency-images", "20", "--batch", "500",
                 "--json"])
    res = json.loads(capsys.readouterr().out)
    assert code == 0 and res["report"]["comparable"] and res["report"]["matches"]
    assert (res["test"]["wrong"], res["test"]["error"]) == (made["test_wrong"], made["test_error"])
    assert res["batch1_agrees_with_batchN"] and res["model"] == model_name
    assert res["latency_batch1"]["median_us"] > 0 and res["test"]["images_per_s"] > 0
    assert [r["nonzeros"] for r in res["layers"]] == [layer["nonzeros"] for layer in made["layers"].values()]


@pytest.fixture
def synthetic_run(tmp_path):
    """A random LeNet-300-100-shaped file and a folder of 40 random MNIST-format test images."""
    rng = np.random.default_rng(0)
    write_idx_folder(tmp_path, n_test=40, gz=False)
    layers = []
    for name, shape in (("ip1", (30, 784)), ("ip2", (10, 30))):
        codebook = rng.standard_normal(8).astype(np.float32)
        w = np.where(rng.random(shape) < 0.2, codebook[rng.integers(0, 8, shape)], 0).astype(np.float32)
        layers.append(dcz.QuantizedLayer.from_dense(name, "fc", w, codebook, bias=rng.random(shape[0])))
    ops = [{"op": "flatten"}, {"op": "fc", "layer": "ip1"}, {"op": "relu"}, {"op": "fc", "layer": "ip2"}]
    meta = {"model": "lenet-300-100", "dataset": "mnist", "input_shape": [1, 28, 28], "ops": ops}
    out = tmp_path / "run"
    nbytes = dcz.write(out / "model.dcz", layers, meta)
    return out / "model.dcz", tmp_path, nbytes, meta, layers


def test_run_on_synthetic_data_checks_the_report(synthetic_run, capsys, keep_torch_threads):
    path, data_dir, nbytes, _, _ = synthetic_run
    common = [str(path), "--data", "mnist", "--data-dir", str(data_dir), "--latency-images", "7", "--batch", "16"]
    assert _run(common) == 0
    assert "no compression report" in capsys.readouterr().out
    assert _run(common + ["--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    truth = load_arrays("mnist", folder=data_dir).test_y
    assert res["test"]["images"] == 40 and res["latency_batch1"]["images"] == 7
    assert res["test"]["wrong"] == int((load(path).predict(load_arrays("mnist", folder=data_dir).test_x)
                                        != truth).sum())
    assert [r["name"] for r in res["layers"]] == ["ip1", "ip2"]
    report = path.parent / "results.json"
    report.write_text(json.dumps({"dataset": "mnist", "test_error": res["test"]["error"], "file_bytes": nbytes}))
    assert _run(common) == 0
    assert ": match" in capsys.readouterr().out
    report.write_text(json.dumps({"dataset": "mnist", "test_error": res["test"]["error"] + 0.1,
                                  "file_bytes": nbytes}))
    assert _run(common) == 1
    assert "MISMATCH" in capsys.readouterr().out
    report.write_text(json.dumps({"dataset": "mnist", "test_error": 0.5, "file_bytes": nbytes + 1}))
    assert _run(common) == 0
    assert "describes another file" in capsys.readouterr().out


def test_run_refuses_a_model_whose_input_does_not_fit_the_data(synthetic_run, keep_torch_threads):
    path, data_dir, _, meta, layers = synthetic_run
    other = path.parent / "other.dcz"
    layers[0] = dcz.QuantizedLayer("ip1", "fc", (30, 3 * 16 * 16), np.ones(1, np.float32), [0], [0])
    dcz.write(other, layers, dict(meta, input_shape=[3, 16, 16]))
    with pytest.raises(UserError, match=r"takes inputs of shape \(3, 16, 16\), mnist inputs are \(1, 28, 28\)"):
        _run([str(other), "--data-dir", str(data_dir)])
    with pytest.raises(UserError, match="--batch"):
        _run([str(path), "--data-dir", str(data_dir), "--batch", "0"])


@pytest.mark.parametrize("precision", ["int16", "int8"])
def test_run_in_integer_precision_reports_it_and_never_claims_the_fp32_report(synthetic_run, capsys, precision):
    path, data_dir, nbytes, _, _ = synthetic_run
    common = [str(path), "--data", "mnist", "--data-dir", str(data_dir), "--latency-images", "3", "--batch", "16",
              "--precision", precision]
    report = path.parent / "results.json"
    report.write_text(json.dumps({"dataset": "mnist", "test_error": 0.5, "file_bytes": nbytes}))
    assert _run(common + ["--json"]) == 0  # an int error differing from the fp32 report is no mismatch
    res = json.loads(capsys.readouterr().out)
    images = load_arrays("mnist", folder=data_dir)
    wrong = int((load(path, precision=precision).predict(images.test_x) != images.test_y).sum())
    assert res["precision"] == precision and res["test"]["wrong"] == wrong
    assert all(r["layout"].startswith(precision) for r in res["layers"])
    assert not res["report"]["comparable"]
    assert _run(common) == 0
    assert f"in {precision}; compression report (fp32) 50.00%" in capsys.readouterr().out
    report.unlink()
