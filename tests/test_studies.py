"""`deepcompress study NAME --quick`: each study writes a valid study.json with its figures, and its numbers
agree with an independent reference where one exists (published table, closed form, the data itself, the
fixture files' sidecars, a direct evaluation of the fixture model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deepcompress import decompress
from deepcompress.cli import main
from deepcompress.cli_study import run_study
from deepcompress.hardware import tech
from deepcompress.studies import STUDIES
from deepcompress.studies.bench import QUICK_TEST
from deepcompress.studies.common import STUDY_FILE, Study, problems
from fixtures.make_lenet_dcz import fixture_paths

SLOW = {"weight-distributions", "pruning", "bits-per-weight", "pruning-plus-quantization"}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Runs a quick study once per module; returns (document, folder) by name."""
    out = tmp_path_factory.mktemp("studies")
    done = {}
    threads = torch.get_num_threads()

    def get(name):
        if name == "pruning-lstm":
            skip_without_austen()
        if name not in done:
            path = run_study(name, out, quick=True)
            done[name] = (json.loads(path.read_text()), path.parent)
            torch.set_num_threads(threads)
        return done[name]
    return get


def skip_without_austen():
    """Skip where Jane Austen's novels are not installed (the pruning-lstm study reads them)."""
    from deepcompress.data_text import austen_folder

    if not (austen_folder() / "Rdata.rdb").is_file():
        pytest.skip("Jane Austen's novels not installed: run `deepcompress data fetch austen`")


def quick_test_set():
    """The MNIST test images and labels quick mode uses."""
    from deepcompress.data import load_arrays

    ds = load_arrays("mnist")
    return torch.from_numpy(ds.test_x[:QUICK_TEST]), torch.from_numpy(ds.test_y[:QUICK_TEST])


def fixture_error(model: str) -> float:
    """The fixture file's error on quick mode's test images, evaluated here directly from the file."""
    x, y = quick_test_set()
    with torch.no_grad():
        wrong = int((decompress(fixture_paths(model)[0])(x).argmax(1) != y).sum())
    return wrong / len(y)


def check_valid(doc, folder, name):
    assert problems(doc, folder) == []
    assert doc["name"] == name
    assert doc["command"].startswith(f"deepcompress study {name} --quick")
    assert doc["claims"] and doc["tables"] and doc["figures"]
    for fig in doc["figures"]:
        assert (folder / fig["file"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in STUDIES])
def test_study_writes_valid_json(results, name):
    check_valid(*results(name), name)


def test_problems_finds_broken_documents(tmp_path):
    doc = Study("x", "t", "c", tmp_path).to_dict()
    doc["claims"] = [{"claim": "c", "talk": "t", "measured": "m", "agrees": "yes", "why": "w"}]
    doc["figures"] = [{"file": "missing.png", "caption": "c"}]
    del doc["tables"]
    found = problems(doc, tmp_path)
    assert "missing key 'tables'" in found
    assert "claim 0: 'agrees' is not true/false" in found
    assert any("missing.png" in p for p in found)


def test_table_row_width_checked(tmp_path):
    with pytest.raises(ValueError):
        Study("x", "t", "c", tmp_path).table("t", ["a", "b"], [[1]])


def test_number_formats_against_closed_form_and_fp32_model(results):
    doc, _ = results("number-formats")
    fp16 = next(c for c in doc["claims"] if c["claim"].startswith("fp16"))
    # fp16: smallest subnormal 2^-24, largest (2 - 2^-10) x 2^15, unit roundoff 2^-11
    assert f"{2.0 ** -24:.3g}" in fp16["measured"] and f"{(2 - 2 ** -10) * 2 ** 15:.5g}" in fp16["measured"]
    assert f"{2.0 ** -11:.3g}" in fp16["measured"] and fp16["agrees"] is True
    int16 = next(c for c in doc["claims"] if c["claim"].startswith("int16"))
    assert int16["agrees"] is False and str(2 ** 15 - 1) in int16["measured"]
    for model, errors in doc["data"]["errors"].items():  # casting to fp32 changes nothing
        assert errors["fp32"] == pytest.approx(fixture_error(model), abs=1e-12)


def test_cost_table_is_the_published_table(results):
    doc, _ = results("cost-of-operations")
    rows = {r[0]: r for r in doc["tables"][0]["rows"]}
    assert len(rows) == len(tech.OPERATIONS_45NM)
    for op in tech.OPERATIONS_45NM:
        assert rows[op.name][1] == op.energy_pj
        assert rows[op.name][3] == (op.area_um2 if op.area_um2 is not None else "-")
    mac = doc["data"]["mac_pj"]["fp32"]
    assert mac["registers"] == pytest.approx(3.7 + 0.9)
    assert mac["DRAM (LPDDR)"] == pytest.approx(3.7 + 0.9 + 2 * 640)
    assert mac["SRAM 8 KB"] == pytest.approx(3.7 + 0.9 + 2 * 5.0)  # the table's 32b / 8 KB SRAM read


def test_cli_study_command(tmp_path, capsys, keep_torch_threads):
    assert main(["study", "cost-of-operations", "--quick", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "cost-of-operations" / STUDY_FILE).read_text())
    assert doc["command"] == f"deepcompress study cost-of-operations --quick --out {tmp_path}"
    assert "cost-of-operations" in capsys.readouterr().out


def test_activation_density_of_the_image_is_the_data(results):
    doc, _ = results("activation-density")
    x, _ = quick_test_set()
    pixels = torch.count_nonzero(x).item() / x.numel()
    res = doc["data"]["results"]
    assert res["lenet-300-100 / mnist"]["densities"]["ip1"] == pytest.approx(pixels, abs=1e-12)
    assert res["lenet-5 / mnist"]["densities"]["conv1"] == pytest.approx(pixels, abs=1e-12)
    for r in res.values():
        assert r["error"] == pytest.approx(fixture_error(r["file"].split("/")[-1][: -len("-mnist.dcz")]), abs=1e-12)
        for e in r["eie"].values():
            assert e["cycles"] <= e["cycles_dense_input"]


def test_inference_summary_matches_fixture_sidecars(results):
    doc, _ = results("inference-summary")
    for model, f in doc["data"]["results"].items():
        side = json.loads(fixture_paths(model)[1].read_text())
        nnz = sum(layer["nonzeros"] for layer in side["layers"].values())
        assert f["memory"]["file_bytes"] == side["file_bytes"]
        assert f["size_total"] == pytest.approx(side["ratio"], abs=0.005)
        assert f["size_pruning"] == pytest.approx(f["memory"]["dense_bytes"] / 4 / nnz, rel=0.01)  # biases aside
        assert f["energy_memory"] == pytest.approx(tech.DRAM_PJ_PER_BIT * 64 /
                                                   tech.sram_access_energy_pj(side["file_bytes"], 64))


def test_frames_per_joule_rows_are_the_models(results):
    from deepcompress.hardware.model_sim import simulate_model

    doc, _ = results("frames-per-joule")
    for model, res in doc["data"]["results"].items():
        gpu = next(r for r in res["inference"] if r["platform"] == "GPU (Titan X)")
        total = simulate_model(fixture_paths(model)[0], "gpu")[-1]
        assert gpu["frames_per_j"] == pytest.approx(total["frames_per_j"])
        assert gpu["frames_per_s"] == pytest.approx(total["frames_per_s"])


@pytest.mark.slow
def test_pruning_zero_is_dense(results):
    doc, _ = results("pruning")
    d = doc["data"]
    assert d["grid"][0] == 0.0
    assert d["curves"]["L2, no retraining"][0] == d["dense_error"]
    assert d["curves"]["L1, no retraining"][0] == d["dense_error_l1"]
    for model, curves in d["sensitivity"].items():
        base = fixture_error(model) if model == "lenet-5" else d["dense_error"]
        for points in curves.values():
            assert points[0] == [0.0, pytest.approx(base, abs=1e-12)]


@pytest.mark.slow
def test_weight_distributions_counts(results):
    doc, _ = results("weight-distributions")
    rows = doc["tables"][0]["rows"]
    n = 784 * 300
    kept = n - round(doc["data"]["sparsity"] * n)
    assert rows[0][1] == n and [r[1] for r in rows[1:]] == [kept] * 4
    assert rows[3][2] == len(doc["data"]["centroids"]) <= 32


@pytest.mark.slow
def test_pruning_plus_quantization_ratios(results):
    doc, _ = results("pruning-plus-quantization")
    dense_bytes = 4 * 266_610  # LeNet-300-100's weights and biases as float32
    for pts in doc["data"]["points"].values():
        for p in pts:
            assert p["ratio"] == pytest.approx(dense_bytes / p["bytes"])


@pytest.mark.slow
def test_bits_per_weight_baseline_is_the_fixture(results):
    doc, _ = results("bits-per-weight")
    assert doc["data"]["baseline_error"] == pytest.approx(fixture_error("lenet-5"), abs=1e-12)
    assert set(doc["data"]["weights"]) == {"conv", "fc"}
    assert np.all(np.isfinite([e for c in doc["data"]["weights"].values() for v in c.values() for e in v]))


def test_study_command_line_builds_without_torch():
    from conftest import without_torch

    proc = without_torch("import sys\nfrom deepcompress.cli import main\ntry:\n    main(['study', '--help'])\n"
                         "except SystemExit as e:\n    sys.exit(e.code)\n")
    assert "number-formats" in proc.stdout and "--quick" in proc.stdout


@pytest.mark.parametrize("level", ["characters", "words", "words-cells"])
def test_pruning_lstm_zero_is_dense_and_kept_fractions(results, level):
    from deepcompress.models_text import LSTM_MATRICES

    doc, _ = results("pruning-lstm")
    d = doc["data"] if level == "characters" else doc["data"][level]
    assert d["points"]["0.0"]["retrained"] == d["dense_perplexity"] == d["points"]["0.0"]["no_retraining"]
    for step in d["steps"]:  # per-layer targets: each layer rounds to a whole weight, so allow one per layer
        layers = len(step["layers"])
        point = d["points"][str(step["sparsity"])]
        if level == "words-cells":  # the four LSTM matrices pruned, the embedding and output layer not
            assert step["layers"] == {n: step["sparsity"] if n in LSTM_MATRICES else 0.0 for n in step["layers"]}
            cells = sum(4 * d["settings"]["hidden"] * (d["settings"][k] + d["settings"]["hidden"])
                        for k in ("embed", "hidden"))  # the four LSTM matrices' weights
            assert point["kept"] == pytest.approx(1 - step["sparsity"], abs=4 / cells)
            assert point["kept"] < point["kept_all"] < 1
            continue
        assert point["kept"] == point["kept_all"] == pytest.approx(1 - step["sparsity"],
                                                                   abs=layers / d["dense_weights"])
        if level == "words":  # every matrix pruned to the same fraction
            assert set(step["layers"].values()) == {step["sparsity"]}
    assert [s["sparsity"] for s in d["steps"]] == [0.9, 0.95]
    who = {"characters": "CharLSTM", "words": "word LSTM", "words-cells": "word LSTM, LSTM matrices only"}[level]
    if level == "words-cells":  # the same dense parent and control as the words level
        words = doc["data"]["words"]
        assert d["dense_perplexity"] == words["dense_perplexity"]
        assert [d["points"][k]["dense_trained_as_long"] for k in ("0.9", "0.95")] == \
            [words["points"][k]["dense_trained_as_long"] for k in ("0.9", "0.95")]
    for key in ("0.9", "0.95"):  # the CPU runtime's file agrees with the pruned model it came from
        p = d["points"][key]
        assert p["file"] == pytest.approx(p["retrained"], rel=0.01)
        # judged against the dense parent and against it trained as many more epochs, the better of the two
        claim = next(c for c in doc["claims"] if c["claim"].startswith(f"{round(100 * float(key))}% pruned")
                     and f"({who})" in c["claim"])
        assert claim["agrees"] == (p["retrained"] <= 1.05 * min(d["dense_perplexity"], p["dense_trained_as_long"]))
    assert list(d["texts"]) and all(len(t) == len(d["prompts"]) for t in d["texts"].values())
    assert sum(f"({who})" in c["claim"] for c in doc["claims"]) == 3
