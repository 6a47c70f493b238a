"""The hardware models on real inputs: the CPU runtime hands over the vectors each FC layer reads
(CompressedModel.fc_inputs), EIE simulates those instead of random ones, and a file with a variable
sequence axis is costed at the length asked for."""

import numpy as np
import pytest
import torch

from deepcompress import decompress
from deepcompress.cli import main
from deepcompress.hardware.model_file import load_model
from deepcompress.hardware.model_sim import simulate_model
from deepcompress.runtime import load

from test_variable_length import TinyEncoder, ids, written

pytestmark = pytest.mark.usefixtures("one_thread")
LENET = "tests/data/lenet-300-100-mnist.dcz"


def images(n: int = 5) -> np.ndarray:
    return np.random.default_rng(0).random((n, 1, 28, 28), dtype=np.float32) * (
        np.random.default_rng(1).random((n, 1, 28, 28)) < 0.2)


def test_fc_inputs_are_what_each_layer_of_the_pytorch_model_reads():
    x = images()
    seen, module = {}, decompress(LENET)
    hooks = [m.register_forward_pre_hook(lambda _m, a, name=name: seen.__setitem__(name, a[0].numpy()))
             for name, m in module.weights.items()]
    with torch.no_grad():
        module(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    got = load(LENET).fc_inputs(x)
    assert sorted(got) == ["ip1", "ip2", "ip3"]
    for name, vectors in got.items():
        assert vectors.shape == (5, 1, seen[name].shape[-1])
        np.testing.assert_allclose(vectors[:, 0], seen[name], rtol=1e-6, atol=1e-6)


def test_eie_on_real_vectors_of_ones_matches_the_all_ones_activations():
    model = load_model(LENET)
    ones = {fl.name: np.ones((3, fl.layer.matrix_shape[1]), np.float32) for fl in model.layers}
    real = simulate_model(model, "eie", fc_inputs=ones)
    synthetic = simulate_model(model, "eie", acts="ones")
    for r, s in zip(real, synthetic):
        assert r["time_us"] == pytest.approx(s["time_us"]) and r["energy_j"] == pytest.approx(s["energy_j"])
    assert real[0]["vectors_simulated"] == 3 and "real inputs: 3 of 3 vectors" in real[0]["note"]


def test_eie_reports_the_density_of_the_real_vectors_it_ran():
    x = images(4)
    inputs = load(LENET).fc_inputs(x)
    records = {r["layer"]: r for r in simulate_model(LENET, "eie", fc_inputs=inputs, max_vectors=2)}
    ip1 = inputs["ip1"].reshape(4, -1)
    simulated = ip1[[0, 3]]  # two of four, spread evenly: the first and the last
    assert records["ip1"]["act_density"] == pytest.approx(np.count_nonzero(simulated) / simulated.size)
    assert records["ip1"]["vectors_simulated"] == 2


def test_a_variable_length_file_is_costed_at_the_length_asked_for(tmp_path):
    path = tmp_path / "enc.dcz"
    written(TinyEncoder(), path)  # captured at 6 tokens
    at = {t: {r["layer"]: r for r in simulate_model(load_model(path, (t,)), "eie")} for t in (6, 12)}
    assert at[12]["q"]["calls"] == 12 and at[6]["q"]["calls"] == 6  # EIE: one product per token
    assert at[12]["q"]["time_us"] == pytest.approx(2 * at[6]["q"]["time_us"])
    assert at[6]["q"]["time_us"] == pytest.approx({r["layer"]: r for r in simulate_model(path, "eie")}["q"]["time_us"])


def test_simulate_cli_takes_real_inputs_and_a_length(tmp_path, capsys):
    np.savez(tmp_path / "test.npz", x=images(3), y=np.zeros(3, np.int64))
    assert main(["simulate", LENET, "--data", str(tmp_path / "test.npz"), "--samples", "2"]) == 0
    out = capsys.readouterr().out
    assert "EIE inputs: 2" in out and "real inputs: 2 of 2 vectors" in out
    path = tmp_path / "enc.dcz"
    written(TinyEncoder(), path)
    assert main(["simulate", str(path), "--arch", "diannao", "--length", "9"]) == 0
    assert main(["simulate", LENET, "--length", "9"]) == 1
    assert "--length needs a file with one variable axis" in capsys.readouterr().err
    assert main(["simulate", LENET, "--data", "mnist", "--text", "a cat"]) == 1
    assert "give --data or --text, not both" in capsys.readouterr().err
    assert main(["simulate", str(path), "--data", str(tmp_path / "test.npz")]) == 1
    assert "test.npz: the model takes integer token ids; x is float32" in capsys.readouterr().err
