"""Compressing all-MiniLM-L6-v2: the built-in recipe and its [distill] table, the distillation data and
loss, the sensitivity tool with the distillation error, and the benchmark's --quick path end to end."""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from deepcompress import decompress
from deepcompress import format as dcz
from deepcompress.compress import Recipe, compress_model, read_recipe
from deepcompress.compress.export import load_into
from deepcompress.compress.prune import prunable_layers
from deepcompress.compress.recipe import DistillStage
from deepcompress.compress.sensitivity import bits_sensitivity, sensitivity, suggest_bits
from deepcompress.errors import UserError
from deepcompress.minilm import MiniLM, MiniLMConfig
from deepcompress.data import Dataset
from deepcompress.minilm_distill import (CosineDistill, cosine_error, cosine_loss, distill_data, token_windows,
                                         untruncated)
from deepcompress.minilm_text import load_tokenizer, positions_of
from deepcompress.recipes import load_recipe

ROOT = Path(__file__).resolve().parent.parent
SIX_LAYERS = MiniLMConfig(vocab_size=30522, hidden_size=8, num_hidden_layers=6, num_attention_heads=2,
                          intermediate_size=16, max_position_embeddings=130)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def test_built_in_recipe_names_every_linear_layer_and_distills():
    recipe = read_recipe("minilm")
    every = prunable_layers(MiniLM(SIX_LAYERS))
    recipe.check_layers(every, "all-MiniLM-L6-v2")
    layers = every
    tables = load_recipe("minilm")
    assert set(recipe.prune.layers) == set(layers) and len(layers) == 37  # 36 Linear + the joint table
    assert recipe.prune.layers == tables["prune"]["layers"]
    assert recipe.distill == DistillStage(**tables["distill"]) and recipe.train is None
    assert recipe.quantize.bits({name: "fc" for name in layers}) == tables["quantize"]["layers"]


@pytest.mark.parametrize("path", sorted((ROOT / "benchmarks" / "recipes").glob("minilm-*.toml")), ids=lambda p: p.name)
def test_benchmark_recipe_variants_parse_and_name_the_models_layers(path):
    recipe = read_recipe("minilm", path)
    every = prunable_layers(MiniLM(SIX_LAYERS))
    recipe.check_layers(every, "all-MiniLM-L6-v2")
    assert recipe.distill is not None and set(recipe.prune.layers) == set(every)


@pytest.mark.parametrize("table, message", [
    ({"windw": 64}, "[distill] unknown key 'windw' (did you mean 'window'?)"),
    ({"window": 2}, "[distill] window = 2: expected an integer in 3..512"),
    ({"corpus": "austen"}, "[distill] corpus = 'austen': expected 'lee-background'"),
    ({"loss": "mse"}, "[distill] loss = 'mse': expected 'cosine'"),
])
def test_a_distill_mistake_is_one_line(table, message):
    with pytest.raises(UserError) as err:
        Recipe.from_dict({"distill": table})
    assert str(err.value) == f"recipe: {message}"
    assert Recipe.from_dict({"prune": {"layers": {"x": 0.5}}}).distill is None


def test_windows_are_consecutive_pieces_between_cls_and_sep(tokenizer):
    docs = ["One two three four five six seven eight nine ten eleven.", "Short."]
    whole = untruncated(tokenizer).encode(docs[0], add_special_tokens=False).ids
    w = token_windows(untruncated(tokenizer), docs, 6)
    assert w.dtype == np.int64 and w.shape == (len(whole) // 4, 6)
    assert list(w[1]) == [101, *whole[4:8], 102]
    with pytest.raises(UserError, match="no document has 40 word pieces"):
        token_windows(untruncated(tokenizer), docs, 42)


def test_distill_data_holds_out_whole_documents_and_teacher_targets(tokenizer):
    torch.manual_seed(0)
    teacher = MiniLM(SIX_LAYERS).eval()
    data = distill_data(teacher, tokenizer, DistillStage(window=16, max_windows=16))
    assert data.train_x.shape == (16, 2, 16) and data.test_x.shape == (2, 2, 16)
    with torch.no_grad():
        assert torch.allclose(data.train_y, teacher(data.train_x))
    assert not {tuple(r) for r in data.train_x[:, 0].tolist()} & {tuple(r) for r in data.test_x[:, 0].tolist()}
    assert cosine_error(teacher, data.test_x, data.test_y) == pytest.approx(0, abs=1e-6)


def test_cosine_loss_is_one_minus_cosine_and_ignores_scale():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[0.0, 3.0], [2.0, 2.0]])
    assert cosine_loss(a, b).item() == pytest.approx((1 + 0) / 2)


def test_sensitivity_tool_takes_the_distillation_error(tokenizer):
    torch.manual_seed(0)
    model = MiniLM(MiniLMConfig(vocab_size=30522, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=16, max_position_embeddings=20)).eval()
    x = torch.from_numpy(positions_of(token_windows(untruncated(tokenizer), ["A sentence of plain words, long enough to cut."], 8)))
    with torch.no_grad():
        y = model(x)
    curves = sensitivity(model, x, y, grid=(0.0, 0.9), error=cosine_error)
    assert set(curves) == set(prunable_layers(model))
    assert all(points[0] == (0.0, pytest.approx(0, abs=1e-6)) and points[1][1] > 1e-4 for points in curves.values())
    bits = bits_sensitivity(model, x, y, widths=(1, 6), error=cosine_error, iters=10)
    assert set(bits) == set(curves)
    for name, points in bits.items():  # one layer at 2 levels loses more than at 64
        (full, base), (one, coarse), (six, fine) = points
        assert (full, one, six) == (32, 1, 6) and base == pytest.approx(0, abs=1e-6) and coarse > fine, name


def test_suggested_bits_are_the_fewest_within_the_tolerance():
    curves = {"a": [(32, 0.1), (2, 0.5), (3, 0.12), (4, 0.101)], "b": [(32, 0.0), (2, 0.3), (3, 0.2)]}
    assert suggest_bits(curves, 0.02) == {"a": 3, "b": 3}  # b fits nowhere: the most bits tried
    assert suggest_bits(curves, 0.001) == {"a": 4, "b": 3}


def _bench():
    """benchmarks/minilm.py as a module (its thread settings kept out of this process)."""
    saved = dict(os.environ)  # the benchmark pins thread counts to 1 on import; later tests must not see that
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import minilm as bench
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
        os.environ.clear()
        os.environ.update(saved)
    return bench


def test_benchmark_quick_path_compresses_settings_into_their_files(tmp_path):
    bench = _bench()
    out = tmp_path / "minilm.json"
    records = bench.main(["--quick", "--out", str(out), "--runs", str(tmp_path / "runs")])
    dense = records[0]
    assert dense["setting"] == "dense" and dense["ratio"] == 1.0 and dense["layers"] == 2
    assert dense["file_bytes"] == 4 * sum(p.numel() for p in bench.quick_model().parameters())
    assert dense["cosine_to_dense"] == pytest.approx(1, abs=1e-6)
    assert all(-1 <= dense[k] <= 1 for k in ("wordsim353", "simlex999", "lee50"))
    assert set(dense["latency_us"]) == {"16", "128"} and dense["latency_us"] == dense["dense_latency_us"]
    assert [r["setting"] for r in records[1:]] == list(bench.QUICK_SETTINGS)
    for record in records[1:]:
        path = Path(record["file"])
        assert path == tmp_path / "runs" / record["setting"] / "model.dcz"
        assert record["file_bytes"] == path.stat().st_size
        assert record["ratio"] == pytest.approx(dense["file_bytes"] / record["file_bytes"])
        assert all(-1 <= record[k] <= 1 for k in ("wordsim353", "simlex999", "lee50", "cosine_to_dense"))
        for key in ("latency_us", "dense_latency_us"):  # the file's runtime and PyTorch, back to back
            assert set(record[key]) == {"16", "128"} and all(us > 0 for us in record[key].values())
        hardware = record["hardware"]  # EIE on the file's real FC inputs, DianNao on the whole model
        assert hardware["tokens"] == bench.HARDWARE_TOKENS
        for arch in ("eie", "diannao", "cpu", "gpu"):
            assert hardware[arch]["frames_per_j"] == pytest.approx(1 / hardware[arch]["energy_j"])
        assert hardware["eie"]["partial"] or hardware["eie"]["not_costed"]  # attention products are not on EIE
    share = next(r for r in records if r["setting"] == bench.DENSE_HARDWARE)
    assert all(q.density == 1.0 for q in dcz.read(share["file"])[0])  # every weight kept: the dense model's work
    assert dense["hardware"]["from_setting"] == bench.DENSE_HARDWARE
    assert all(dense["hardware"][arch] == share["hardware"][arch] for arch in ("eie", "diannao", "cpu", "gpu"))
    assert json.loads(out.read_text()) == json.loads(json.dumps(records))
    one = bench.main(["--quick", "--out", str(out), "--runs", str(tmp_path / "runs"), "--only",
                      bench.QUICK_SETTINGS[0]])  # rerun one setting: its record replaced, the other kept
    again = json.loads(out.read_text())
    assert [r["setting"] for r in again] == ["dense", *bench.QUICK_SETTINGS]
    assert again[1]["wall_s"] == one[1]["wall_s"] and again[2] == json.loads(json.dumps(records[2]))


def test_a_default_run_compresses_the_claims_settings_and_all_runs_every_one():
    bench = _bench()
    assert set(bench.CLAIMS) <= set(bench.SETTINGS)
    assert {"share-8bit", "prune20-fc5-table4", "prune20-sens-table4", "prune30-fc4-table2-ft"} == set(bench.CLAIMS)
    assert bench.chosen_settings(None, False, False) == list(bench.CLAIMS)
    assert bench.chosen_settings(None, True, False) is None and bench.chosen_settings(None, False, True) is None
    assert bench.chosen_settings(["share-4bit"], True, False) == ["share-4bit"]


def test_a_settings_file_runs_at_every_length_like_its_decoded_weights_in_torch(tmp_path, tokenizer):
    bench = _bench()
    model = bench.quick_model()
    recipe = bench.setting_recipe(model, {"fc_bits": 3, "table_bits": 3, "sparsity": 0.2, "finetune": 1})
    student, outcome = bench.compress_setting(model, tokenizer, recipe, tmp_path, 8)
    path = Path(outcome["file"])
    assert outcome["bits"]["embed.table"] == 3  # the setting's widths and sparsity reached the file
    assert student.embed.table.weight.ne(0).float().mean().item() == pytest.approx(0.8, abs=0.01)
    load_into(student, path)  # the reference: PyTorch on the weights decoded from the file
    run = bench.file_encoder(path)
    for t in (5, 16, 100):  # the file was captured on windows of 64 tokens
        x = bench.real_windows(tokenizer, t)[:2]
        with torch.no_grad():
            want = student(torch.from_numpy(x)).numpy()
        assert np.abs(run(x) - want).max() <= 1e-5 * np.abs(want).max(), t


def test_compress_model_distils_when_given_the_objective(tmp_path):
    # a model the file can already hold, compressed against a teacher's outputs instead of labels
    torch.manual_seed(0)
    teacher = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 6))
    x = torch.randn(512, 8)
    with torch.no_grad():
        y = teacher(x)
    data = Dataset("distill", x[:448], y[:448], x[448:], y[448:])
    student = copy.deepcopy(teacher)
    recipe = {"prune": {"layers": {"0": 0.7, "2": 0.5}, "retrain": {"epochs": 3, "optimizer": "adam", "lr": 1e-2,
                                                                      "batch_size": 32, "weight_decay": 0.0}},
              "quantize": {"fc_bits": 4}}
    outcome = compress_model(student, data, recipe, tmp_path, objective=CosineDistill(), progress=False,
                             example_input=x[:1])
    errors = {s["stage"]: s["test_error"] for s in outcome["stages"]}
    assert errors["baseline"] == pytest.approx(0, abs=1e-6)
    assert errors["prune 1/1 retrained"] < errors["prune 1/1 before retraining"]
    file_model = decompress(outcome["file"])
    assert outcome["test_error"] == pytest.approx(cosine_error(file_model, data.test_x, data.test_y), abs=1e-6)
    assert outcome["test_error"] == pytest.approx(errors["quantized"], abs=1e-5)  # the file is the quantized model


def _cosine_run(tmp_path, teacher_seed: int, resume: bool, nudge: float = 0.0, name_teacher: bool = True):
    torch.manual_seed(teacher_seed)
    teacher = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 6))
    x = torch.randn(128, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = teacher(x) + nudge  # the teacher's outputs a few ulps off, as another thread count gives
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 6))
    recipe = {"prune": {"layers": {"0": 0.5}, "retrain": {"epochs": 1, "batch_size": 32}}, "quantize": {"fc_bits": 4}}
    return compress_model(student, Dataset("distill", x[:96], y[:96], x[96:], y[96:]), recipe, tmp_path / "run",
                          objective=CosineDistill(teacher if name_teacher else None), progress=False,
                          example_input=x[:1], resume=resume)


def test_a_resumed_distillation_checks_the_teacher_not_the_last_bit_of_its_outputs(tmp_path):
    _cosine_run(tmp_path, 0, resume=False)
    assert _cosine_run(tmp_path, 0, resume=True, nudge=1e-7)["metric"] == "error"
    with pytest.raises(UserError, match=r"objective teacher \(sha256\) = "):
        _cosine_run(tmp_path, 1, resume=True)
    _cosine_run(tmp_path / "b", 0, resume=False, name_teacher=False)  # without the teacher: the targets whole
    with pytest.raises(UserError, match="data fingerprint"):
        _cosine_run(tmp_path / "b", 0, resume=True, nudge=1e-7, name_teacher=False)


def test_the_sensitivity_setting_takes_each_linear_width_from_the_recipe():
    bench = _bench()
    model = bench.quick_model()
    chosen = load_recipe("minilm")["quantize"]["layers"]
    recipe = bench.setting_recipe(model, bench.SETTINGS["prune20-sens-table4"])
    bits = recipe.quantize.layers
    assert bits[bench.TABLE] == 4 and set(bits) == set(prunable_layers(model))
    assert all(bits[name] == chosen[name] for name in bits if name != bench.TABLE)
    assert len({bits[name] for name in bits if name != bench.TABLE}) > 1  # widths differ per layer
