"""all-MiniLM-L6-v2 (deepcompress.minilm) in the .dcz file: captured, weight-shared, written, and run by the
numpy runtime, which must give the PyTorch module's sentence embedding."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deepcompress import format as dcz
from deepcompress.compress.export import architecture_ops, write_model
from deepcompress.compress.prune import Masks
from deepcompress.compress.quantize import SharedWeights
from deepcompress.minilm import MiniLM, MiniLMConfig, load_minilm, with_positions
from deepcompress.runtime import load

TINY = MiniLMConfig(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=32, max_position_embeddings=24)
SEQ = 16


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity."""
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def token_ids(cfg: MiniLMConfig, n: int = 3) -> torch.Tensor:
    """n random sequences of SEQ token ids with their positions ([n, 2, SEQ])."""
    ids = torch.randint(0, cfg.vocab_size, (n, SEQ), generator=torch.Generator().manual_seed(0))
    return with_positions(ids, cfg.vocab_size)


def written(model: MiniLM, x: torch.Tensor, path, bits: int = 8) -> None:
    """Every layer weight-shared to `bits` (no pruning), written with the forward pass captured on x[:1]."""
    masks = Masks(model)
    shared = SharedWeights(model, masks, dict.fromkeys(masks.modules, bits))
    write_model(path, model, shared, dict.fromkeys(masks.modules, "auto"), shared.bits(), {"model": "minilm"},
                example_input=x[:1])


def test_the_module_captures_with_its_positions_as_input():
    model = load_minilm(layers=1)
    ops = architecture_ops(model, token_ids(model.cfg, 1))
    assert [op["op"] for op in ops[:4]] == ["embedding", "mean", "scalar", "layernorm"]
    assert ops[0]["layer"] == "embed.table" and ops[-1]["op"] == "mean"


def test_the_file_gives_the_modules_sentence_embedding(tmp_path):
    torch.manual_seed(0)
    model = MiniLM(TINY).eval()
    x = token_ids(TINY)
    with torch.no_grad():
        dense = model(x).numpy()
    path = tmp_path / "minilm.dcz"
    written(model, x, path)
    with torch.no_grad():
        shared = model(x).numpy()  # the module now holds the shared weights the file stores
    got = load(path)(x.numpy())
    assert np.abs(got - shared).max() <= 1e-5 * np.abs(shared).max()
    assert cosine(got, dense).min() > 0.999  # 256 shared values per layer barely move the embedding
    assert dcz.read(path)[1]["input_dtype"] == "int64"


@pytest.mark.slow
def test_one_real_layer_from_the_file_matches_torch(tmp_path):
    # the real word-piece table: k-means over its 11.9M weights takes minutes on one core
    model = load_minilm(layers=1)
    x = token_ids(model.cfg)
    path = tmp_path / "minilm1.dcz"
    written(model, x, path)
    with torch.no_grad():
        shared = model(x).numpy()
    assert cosine(load(path)(x.numpy()), shared).min() > 0.99999


def test_run_text_embeds_two_texts_from_the_file(tmp_path, capsys):
    # real word pieces, so the table has the real vocabulary; everything else tiny
    from deepcompress.cli import main
    from deepcompress.minilm_text import TEXT_MODEL, load_tokenizer

    torch.manual_seed(0)
    cfg = MiniLMConfig(vocab_size=30522, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=16, max_position_embeddings=16)
    model = MiniLM(cfg).eval()
    texts = ["a cat sat on the mat", "a dog lay on the rug"]
    tok = load_tokenizer()
    ids = torch.tensor([tok.encode(t).ids for t in texts])
    x = with_positions(ids, cfg.vocab_size)
    masks = Masks(model)
    shared = SharedWeights(model, masks, dict.fromkeys(masks.modules, 4))
    path = tmp_path / "tiny.dcz"
    write_model(path, model, shared, dict.fromkeys(masks.modules, "auto"), shared.bits(), {"text_model": TEXT_MODEL},
                example_input=x[:1])
    with torch.no_grad():
        a, b = model(x).numpy()
    assert main(["run", str(path), "--text", texts[0], "--text", texts[1], "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["tokens"] == ids.shape[1] and len(res["texts"]) == 2
    assert res["cosine"] == pytest.approx(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)), abs=1e-5)
    assert res["texts"][0]["norm"] == pytest.approx(float(np.linalg.norm(a)), rel=1e-5)
    assert res["texts"][1]["first_dims"] == pytest.approx(b[:6].tolist(), abs=1e-5)
    assert main(["run", str(path), "--text", "a much longer sentence than the file was captured at"]) == 1
    assert "was captured at 8 (a file holds one sequence length)" in capsys.readouterr().err
