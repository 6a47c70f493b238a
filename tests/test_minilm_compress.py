"""`deepcompress compress --model minilm`: the sentence encoder compressed with distillation into a file
whose token axis is variable, run at other lengths like the module that holds the file's weights. The
pretrained model is swapped for a tiny one with the real vocabulary (k-means over the real 11.7M-weight
word-piece table would take minutes), so the chain runs in seconds."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deepcompress import decompress
from deepcompress import format as dcz
from deepcompress.cli import main
from deepcompress.minilm import MiniLM, MiniLMConfig, with_positions
from deepcompress.runtime import load

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = MiniLMConfig(vocab_size=30522, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=16, max_position_embeddings=64)
RECIPE = """
[distill]
window = 12
max_windows = 24
[prune]
iterations = 1
[prune.layers]
"embed.table" = 0.5
"layers.0.attn.query" = 0.5
"layers.0.attn.key" = 0.5
"layers.0.attn.value" = 0.5
"layers.0.attn.out" = 0.5
"layers.0.ffn.up" = 0.5
"layers.0.ffn.down" = 0.5
[prune.retrain]
epochs = 1
batch_size = 8
optimizer = "adam"
lr = 1e-3
weight_decay = 0.0
[quantize]
fc_bits = 4
"""


@pytest.fixture
def tiny_minilm(monkeypatch):
    """load_minilm gives a tiny randomly initialised MiniLM with the real vocabulary."""
    def tiny(folder=None, layers=None):
        torch.manual_seed(0)
        return MiniLM(TINY).eval()
    monkeypatch.setattr("deepcompress.minilm.load_minilm", tiny)


def test_compress_minilm_writes_a_file_that_runs_at_any_length(tmp_path, tiny_minilm, capsys):
    recipe, out = tmp_path / "r.toml", tmp_path / "run"
    recipe.write_text(RECIPE)
    assert main(["compress", "--model", "minilm", "--recipe", str(recipe), "--out", str(out), "--quiet"]) == 0
    said = capsys.readouterr().out
    assert "all-MiniLM-L6-v2:" in said and "mean cosine to the uncompressed model" in said
    path = out / "model.dcz"
    meta = dcz.read(path)[1]
    assert meta["variable_axes"] == [1] and meta["input_shape"] == [2, 12] and meta["text_model"]
    runtime, module = load(path), decompress(path)
    for length in (3, 12, 40):
        ids = torch.randint(1000, 2000, (2, length), generator=torch.Generator().manual_seed(length))
        x = with_positions(ids, TINY.vocab_size)
        with torch.no_grad():
            expected = module(x).numpy()
        np.testing.assert_allclose(runtime(x.numpy()), expected, rtol=1e-5, atol=1e-6)
    assert main(["run", str(path), "--text", "A cat.", "--text", "The dog lay on the old rug.", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert len(res["texts"]) == 2 and -1 <= res["cosine"] <= 1


@pytest.mark.parametrize("args, message", [
    (["--checkpoint", "x.pt"], "--model minilm starts from the pretrained weights"),
    (["--recipe", "src/deepcompress/recipes/lenet-300-100.toml"], "needs [distill]"),
])
def test_compress_minilm_refuses_what_does_not_apply(tmp_path, capsys, args, message):
    assert main(["compress", "--model", "minilm", "--out", str(tmp_path / "o"), *args]) == 1
    assert message in capsys.readouterr().err


def test_the_hardware_models_cost_a_minilm_file_on_its_real_activations(tmp_path, tiny_minilm):
    import sys
    sys.path.insert(0, "benchmarks")
    from minilm_hardware import costs

    recipe, out = tmp_path / "r.toml", tmp_path / "run"
    recipe.write_text(RECIPE)
    assert main(["compress", "--model", "minilm", "--recipe", str(recipe), "--out", str(out), "--quiet"]) == 0
    ids = torch.randint(1000, 2000, (1, 20), generator=torch.Generator().manual_seed(0))
    got = costs(out / "model.dcz", with_positions(ids, TINY.vocab_size).numpy(), max_vectors=4)
    assert got["tokens"] == 20
    assert got["eie"]["partial"] and any(name.startswith("matmul") for name in got["eie"]["skipped_layers"])
    assert got["eie"]["frames_per_j"] > 0 and got["diannao"]["frames_per_j"] > 0
    assert "embed.table" in got["diannao"]["skipped_layers"]  # a lookup, not costed


def test_minilm_file_benchmark_compares_the_integer_modes_with_fp32(tmp_path, tiny_minilm):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from minilm_file import INT16_TARGET, cosine, integer_modes

    recipe, out = tmp_path / "r.toml", tmp_path / "run"
    recipe.write_text(RECIPE)
    assert main(["compress", "--model", "minilm", "--recipe", str(recipe), "--out", str(out), "--quiet"]) == 0
    x = with_positions(torch.randint(1000, 2000, (3, 12), generator=torch.Generator().manual_seed(0)),
                       TINY.vocab_size).numpy()
    fp32 = load(out / "model.dcz")(x)
    got = integer_modes(str(out / "model.dcz"), x, fp32)
    for precision in ("int16", "int8"):
        want = cosine(load(out / "model.dcz", precision=precision)(x), fp32)
        assert got[precision]["cosine_to_fp32_min"] == pytest.approx(float(want.min()), abs=1e-7)
    assert got["int16"]["met"] and got["int16"]["cosine_to_fp32_min"] >= INT16_TARGET  # 16-bit activations
    assert got["int8"]["cosine_to_fp32_min"] > 0.9  # 8-bit: coarser, still the same direction
