"""`simulate FILE`: a .dcz model's layers as workloads (weights, traced conv sizes) on every architecture,
per-layer and total records, and the hardware commands' JSON."""

import json

import numpy as np
import pytest
import torch

from deepcompress import format as dcz
from deepcompress.format import graph
from deepcompress.cli import main
from deepcompress.hardware.eie import EIEConfig, simulate
from deepcompress.hardware.model_file import conv_inputs, load_model, read_pass
from deepcompress.hardware.model_sim import ARCHES, input_vector, simulate_model
from deepcompress.hardware.netspecs import LayerShape

OPS = [{"op": "conv", "layer": "conv1", "stride": [1, 1], "padding": [1, 1]}, {"op": "relu"},
       {"op": "maxpool", "kernel": 2, "stride": 2}, {"op": "flatten"}, {"op": "fc", "layer": "ip1"}]


def quantized(name, kind, shape, density, rng):
    codebook = np.linspace(-1, 1, 8, dtype=np.float32)
    w = codebook[rng.integers(0, 8, size=shape)] * (rng.random(shape) < density)
    return dcz.QuantizedLayer.from_dense(name, kind, w.astype(np.float32), codebook)


@pytest.fixture
def model_file(tmp_path):
    rng = np.random.default_rng(0)
    layers = [quantized("conv1", "conv", (4, 2, 3, 3), 0.5, rng), quantized("ip1", "fc", (10, 4 * 4 * 4), 0.3, rng)]
    path = tmp_path / "m.dcz"
    dcz.write(path, layers, {"model": "toy", "input_shape": [2, 8, 8], "ops": OPS})
    return path, layers


def test_layers_are_the_files_own_and_traced_shapes(model_file):
    path, originals = model_file
    layers, meta, note, forward = load_model(path)
    assert note == "" and [layer.name for layer in layers] == ["conv1", "ip1"]
    assert [op.name for op in forward.ops] == [o["op"] for o in OPS] and forward.outputs[-1] == (10,)
    for layer, q in zip(layers, originals):
        assert layer.layer.equals(q)  # the file's layer itself: positions and codebook indices, no re-encode
    conv, ip1 = layers[0].shape, layers[1].shape
    assert (conv.in_hw, conv.kernel, conv.paddings, conv.out_hw) == ((8, 8), (3, 3), (1, 1, 1, 1), (8, 8))
    assert (ip1.in_channels, ip1.out_channels) == (64, 10)
    assert ip1.weight_density == originals[1].nnz / 640


def test_f16_files_load_as_float32_values(tmp_path):
    rng = np.random.default_rng(1)
    originals = [quantized("conv1", "conv", (4, 2, 3, 3), 0.5, rng), quantized("ip1", "fc", (10, 4 * 4 * 4), 0.3, rng)]
    codebook = np.float32([0.1, -1 / 3, 2 / 3, 1e-3]) * np.float32(1.7)  # not float16 values before rounding
    originals[1] = dcz.QuantizedLayer(**{**vars(originals[1]), "codebook": np.resize(codebook, 8),
                                         "value_dtype": "f16"})
    path = tmp_path / "f16.dcz"
    dcz.write(path, originals, {"model": "toy", "input_shape": [2, 8, 8], "ops": OPS})
    assert path.read_bytes()[4:6] == b"\x02\x00"
    layers, _, note, _ = load_model(path)
    assert note == ""
    for layer, q in zip(layers, originals):
        assert layer.layer.values().dtype == np.float32
        assert np.array_equal(layer.layer.to_dense(), q.to_dense())
    assert set(np.unique(layers[1].layer.values())) <= set(np.resize(codebook, 8).astype(np.float16).astype(np.float32))


def test_tracing_stops_with_a_reason(model_file):
    _, originals = model_file
    layers = {q.name: q for q in originals}
    forward, note = read_pass({"ops": OPS}, layers)
    assert forward is None and note.startswith("cannot read the forward pass (") and "input_shape" in note
    assert conv_inputs(forward) == {}
    forward, note = read_pass({"input_shape": [2, 8, 8], "ops": [{"op": "lstm"}] + OPS}, layers)
    assert forward is None and "lstm" in note


def test_a_conv_of_any_geometry_is_costed_at_torch_s_output_size(model_file):
    _, originals = model_file
    layers = {q.name: q for q in originals}
    conv = dict(OPS[0], stride=[1, 2], padding=[1, 0, 2, 1], dilation=[2, 1])
    forward, _ = read_pass({"input_shape": [2, 8, 8], "ops": [conv]}, layers)
    found = conv_inputs(forward)
    q = layers[conv["layer"]]
    t = found[conv["layer"]]
    shape = LayerShape("c", "conv", q.shape[1] * t["groups"], q.shape[0], t["in_hw"], tuple(q.shape[2:]),
                       t["stride"], t["padding"], t["groups"], 1.0, t["dilation"])
    x = torch.nn.functional.pad(torch.zeros(1, 2, 8, 8), (2, 1, 1, 0))  # (left, right, top, bottom)
    out = torch.nn.functional.conv2d(x, torch.zeros(q.shape), stride=(1, 2), dilation=(2, 1))
    assert shape.out_hw == tuple(out.shape[2:]) and shape.input_values == 2 * 8 * 8
    assert shape.macs == out[0].numel() * q.shape[1] * q.shape[2] * q.shape[3]


def test_simulate_parses_the_forward_pass_once(model_file, monkeypatch):
    path, _ = model_file
    calls = []
    parse = graph.parse_forward
    monkeypatch.setattr(graph, "parse_forward", lambda *a: calls.append(1) or parse(*a))
    records = simulate_model(path, "cpu")
    assert len(calls) == 1 and [r["layer"] for r in records] == ["conv1", "ip1", "total"]
    assert records[-1]["not_costed"] == {"relu": 1, "maxpool": 1, "flatten": 1}
    model = load_model(path)  # read once, costed on every architecture: still one parse each
    assert [simulate_model(model, arch) for arch in ARCHES] == [simulate_model(path, arch) for arch in ARCHES]
    assert len(calls) == 2 + len(ARCHES)


def test_eie_runs_fc_and_sends_conv_to_diannao(model_file):
    path, originals = model_file
    records = simulate_model(path, "eie", act_density=0.5)
    conv, ip1, total = records
    assert conv["arch"] == "diannao" and "EIE runs FC layers only" in conv["note"]
    assert ip1["arch"] == "eie" and ip1["act_density"] == 0.5
    # the same weights and input vector through the simulator directly
    acts = input_vector(64, 0.5, "random", np.random.default_rng(0))
    direct = simulate(originals[1].to_dense(), acts, EIEConfig())
    assert ip1["cycles"] == direct.cycles
    assert total["time_us"] == pytest.approx(conv["time_us"] + ip1["time_us"])
    assert total["energy_j"] == pytest.approx(conv["energy_j"] + ip1["energy_j"])
    assert total["arch"] == "diannao+eie" and total["frames_per_s"] == pytest.approx(1e6 / total["time_us"])


def test_activation_modes(model_file):
    path, _ = model_file
    none = simulate_model(path, "eie", act_density=0.0)[1]
    ones = simulate_model(path, "eie", acts="ones")[1]
    assert none["act_density"] == 0.0 and ones["act_density"] == 1.0
    assert none["cycles"] < ones["cycles"] and none["accesses"]["macs"] == 0


@pytest.mark.parametrize("arch", ["diannao", "cpu", "gpu"])
def test_every_layer_on_the_other_architectures(model_file, arch):
    path, _ = model_file
    records = simulate_model(path, arch, batch=2)
    assert [r["layer"] for r in records] == ["conv1", "ip1", "total"]
    assert all(r["arch"] == arch and r["batch"] == 2 for r in records)
    assert records[-1]["time_us"] == pytest.approx(sum(r["time_us"] for r in records[:2]))


def test_conv_without_forward_pass_is_skipped(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "w.dcz"
    dcz.write(path, [quantized("c", "conv", (2, 1, 3, 3), 0.5, rng), quantized("f", "fc", (3, 5), 0.5, rng)], {})
    records = simulate_model(path, "diannao")
    assert records[0]["skipped"] and "input size unknown" in records[0]["note"]
    assert records[-1]["layers_skipped"] == 1 and records[-1]["layers_run"] == 1
    assert records[-1]["partial"] and records[-1]["skipped_layers"] == ["c"]
    from deepcompress.hardware.report import format_layer_records
    assert "PARTIAL total: 1 weight layer(s) not costed (c)" in format_layer_records(records)


@pytest.mark.parametrize("arch", ARCHES)
def test_a_weights_only_file_s_total_is_partial(tmp_path, arch):
    path = tmp_path / "w.dcz"
    dcz.write(path, [quantized("f", "fc", (3, 5), 0.5, np.random.default_rng(1))], {})  # no forward pass
    records = simulate_model(path, arch)
    assert records[-1]["layers_skipped"] == 0 and records[-1]["partial"] and records[-1]["no_forward_pass"]
    from deepcompress.hardware.report import format_layer_records
    assert "PARTIAL total: the file has no readable forward pass" in format_layer_records(records)
    assert not records[0].get("skipped")  # the layer itself is still costed, once


@pytest.mark.parametrize("arch", ["eie", "cpu"])
def test_layer_table_fits_long_names(tmp_path, arch):
    from deepcompress.hardware.report import format_layer_records

    rng = np.random.default_rng(2)
    names = ["layers.0.attn.query", "P.weight_ih_l0", "c"]
    layers = [quantized(names[0], "fc", (8, 8), 0.5, rng), quantized(names[1], "fc", (4, 8), 0.5, rng),
              quantized(names[2], "conv", (2, 1, 3, 3), 0.5, rng)]
    ops = [{"op": "fc", "layer": names[0]}, {"op": "relu"}, {"op": "fc", "layer": names[1]}]
    path = tmp_path / "long.dcz"
    dcz.write(path, layers, {"input_shape": [8], "ops": ops})
    records = simulate_model(path, arch)
    lines = format_layer_records(records).splitlines()
    head, rows = lines[0], lines[2:2 + len(records)]
    starts = [head.index(title) for title in ("kind", "arch")]
    assert starts[0] == len(names[0]) + 2  # the longest name and two spaces
    for row, r in zip(rows, records):
        assert row[:starts[0]].rstrip() == r["layer"]  # whole, not cut
        assert row[starts[0]:starts[1]].rstrip() == r["kind"] and row[starts[1]:].split()[0] == r["arch"]
        assert row[:starts[1]].split() == [r["layer"], r["kind"]]  # and separated from the next column


def test_ops_without_weights_are_listed_as_not_costed(model_file):
    path, _ = model_file
    total = simulate_model(path, "cpu")[-1]
    assert not total["partial"] and total["not_costed"] == {"relu": 1, "maxpool": 1, "flatten": 1}


def run_json(capsys, *argv):
    """Run a command with --json and parse what it printed."""
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_commands_print_json(model_file, capsys):
    path, _ = model_file
    assert [r["layer"] for r in run_json(capsys, "simulate", str(path), "--arch", "diannao")] == ["conv1", "ip1", "total"]
    gpu = run_json(capsys, "simulate", "--paper", "--arch", "gpu")
    assert len(gpu) == 9 and all(r["dense_measured_over_roofline"] >= 1 for r in gpu)
    d = run_json(capsys, "simulate", "--layer", "4096,4096,9%,35%", "--arch", "diannao", "--dram-gbps", "1000")
    assert not d["memory_bound"] and d["compute_cycles"] == 65_536
    table = run_json(capsys, "subproblems", "--net", "alexnet", "--batch", "32")
    assert table["alexnet"][0]["train"]["batch"] == 32


def test_table_v_within_10_percent_for_eie(capsys):
    rows = {r["platform"] + " " + r["model"]: r for r in run_json(capsys, "simulate", "--table-v")}
    eie = rows["EIE 64 PE cycle-level simulator, 45 nm"]
    assert abs(eie["frames_per_s"] / 81_967 - 1) < 0.10 and abs(eie["frames_per_j"] / 138_927 - 1) < 0.10
    assert eie["area_mm2"] == pytest.approx(40.8, abs=0.05)


def test_table_v_adds_a_measured_machine(tmp_path, capsys):
    probe = {"gemm_flops": 1e11, "copy_bandwidth": 2e10, "llc_bytes": 2**20, "how": "test"}
    bare, wrapped, other = tmp_path / "probe.json", tmp_path / "hardware_machine.json", tmp_path / "other.json"
    bare.write_text(json.dumps(probe))
    wrapped.write_text(json.dumps({"probe": probe, "gemv": []}))  # as benchmarks/hardware_sweeps.py writes it
    other.write_text(json.dumps({"gemv": []}))
    for path in (bare, wrapped):
        rows = run_json(capsys, "simulate", "--table-v", "--machine", str(path))
        (mine,) = [r for r in rows if r["platform"] == "this machine"]
        assert mine["time_us"] == pytest.approx((4096 * 4096 + 2 * 4096) * 4 / 2e10 * 1e6)
    assert main(["simulate", "--table-v", "--machine", str(other)]) == 1
    assert "not a machine probe" in capsys.readouterr().err


def test_argument_errors_are_one_line(model_file, capsys):
    path, _ = model_file
    assert main(["simulate", str(path), "--paper"]) == 1
    assert "exactly one" in capsys.readouterr().err
    assert main(["simulate", str(path), "--batch", "2"]) == 1  # EIE is batch 1
    assert main(["simulate", str(path.with_name("missing.dcz"))]) == 1
    assert "cannot read" in capsys.readouterr().err
