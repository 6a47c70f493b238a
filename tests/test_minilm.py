"""all-MiniLM-L6-v2 in our own BERT module: tokenization and outputs match an independent implementation
(transformers, recorded in tests/data/minilm_reference.json by tests/fixtures/make_minilm_reference.py),
loading refuses a wrong checkpoint in one line, and the evaluation files are read as gensim's tests read them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from scipy import stats

from conftest import without_torch

from deepcompress import text_eval
from deepcompress.errors import UserError
from deepcompress.minilm import (MiniLM, MiniLMConfig, checkpoint_state, fp32_weight_bytes, load_minilm,
                                 load_state, read_safetensors, with_positions)
from deepcompress.minilm_text import Encoder, length_batches, load_tokenizer, model_dir, normalise, torch_model

REFERENCE = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())["sentences"]
TINY = MiniLMConfig(vocab_size=50, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=16, max_position_embeddings=12)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dense():
    return load_minilm()


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def test_tokenizer_matches_the_reference_word_pieces(tokenizer):
    for row in REFERENCE:
        assert tokenizer.encode(row["text"]).ids == row["ids"], row["text"]


def test_module_matches_the_reference_model(dense):
    for row in REFERENCE:
        with torch.no_grad():
            got = dense(with_positions(torch.tensor([row["ids"]])))[0].numpy()
        want = np.array(row["pooled"])
        assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-5, row["text"]


def test_sentence_embeddings_are_unit_length_and_order_similarities_sensibly(dense, tokenizer):
    enc = Encoder(torch_model(dense), tokenizer)
    x = enc.embed(["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell sharply."])
    assert np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-6)
    assert x[0] @ x[1] > x[0] @ x[2] + 0.2  # paraphrase far closer than an unrelated sentence


def test_equal_length_batches_give_the_batch_one_result(dense, tokenizer):
    texts = ["one two", "three four", "five", "a longer sentence here", "six seven", "eight"]
    batched = Encoder(torch_model(dense), tokenizer, batch_size=4).embed(texts)
    single = np.concatenate([Encoder(torch_model(dense), tokenizer).embed([t]) for t in texts])
    assert np.abs(batched - single).max() < 1e-5


def test_length_batches_group_equal_lengths_within_the_batch_size():
    lengths = [3, 5, 3, 3, 5, 4]
    batches = length_batches(lengths, 2)
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert all(len({lengths[i] for i in b}) == 1 and len(b) <= 2 for b in batches)


def test_query_scale_and_segment_embedding_are_folded_exactly():
    torch.manual_seed(0)
    theirs = _tiny_checkpoint()
    state = checkpoint_state(theirs, TINY)
    scale = 1 / math.sqrt(TINY.head_size)
    assert torch.equal(state["layers.1.attn.query.weight"], theirs["encoder.layer.1.attention.self.query.weight"] * scale)
    table = state["embed.table.weight"]
    assert torch.equal(table[: TINY.vocab_size], theirs["embeddings.word_embeddings.weight"])
    assert torch.equal(table[TINY.vocab_size :], theirs["embeddings.position_embeddings.weight"]
                       + theirs["embeddings.token_type_embeddings.weight"][0])
    model = MiniLM(TINY)
    load_state(model, state, "tiny")
    ids = torch.tensor([[1, 7, 3, 2]])
    assert torch.allclose(model(with_positions(ids, TINY.vocab_size)), _bert_reference(theirs, ids), atol=1e-5)


def test_a_wrong_checkpoint_is_one_line(tmp_path):
    theirs = _tiny_checkpoint()
    missing = dict(theirs)
    del missing["encoder.layer.0.output.dense.bias"]
    with pytest.raises(UserError, match=r"^model.safetensors: missing key 'encoder.layer.0.output.dense.bias'$"):
        checkpoint_state(missing, TINY)
    extra = {**theirs, "encoder.layer.2.output.dense.bias": torch.zeros(8), "cls.bias": torch.zeros(3)}
    with pytest.raises(UserError, match=r"unexpected key 'cls.bias' \(and 1 more\)"):
        checkpoint_state(extra, TINY)
    wrong = checkpoint_state(theirs, TINY)
    wrong["layers.0.ffn.up.weight"] = torch.zeros(3, 3)
    with pytest.raises(UserError, match=r"^tiny: layers.0.ffn.up.weight has shape \(3, 3\), the model expects \(16, 8\)$"):
        load_state(MiniLM(TINY), wrong, "tiny")
    (tmp_path / "bad.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(UserError, match="not a readable safetensors file"):
        read_safetensors(tmp_path / "bad.safetensors")


def test_a_saved_checkpoint_loads_by_name(tmp_path):
    theirs = _tiny_checkpoint()
    save_file({k: v.contiguous() for k, v in theirs.items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_act": "gelu", **vars(TINY)}))
    model = load_minilm(tmp_path)
    assert model.cfg == TINY and not model.training
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "hidden_act": "gelu"}))
    with pytest.raises(UserError, match="expected a BERT model"):
        load_minilm(tmp_path)


def test_dense_size_counts_what_the_sentence_embedding_uses(dense):
    tensors = read_safetensors(model_dir() / "model.safetensors")
    unused = 384 * 384 + 384 + 2 * 384  # the [CLS] pooler; the segment table (row 0 is folded into positions)
    stored = sum(t.numel() for k, t in tensors.items() if k != "embeddings.position_ids")
    assert fp32_weight_bytes(dense) == 4 * (stored - unused)


@pytest.mark.slow
def test_dense_model_reproduces_the_quoted_baselines(dense, tokenizer):
    # issue 13's dense baselines (sentence-transformers' all-MiniLM-L6-v2 pipeline): 0.729, 0.446, 0.656
    got = text_eval.scores(Encoder(torch_model(dense), tokenizer).embed)
    assert (round(got["wordsim353"], 3), round(got["simlex999"], 3), round(got["lee50"], 3)) == (0.729, 0.446, 0.656)


def test_evaluation_files_are_read_whole():
    ws, sl = text_eval.wordsim353(), text_eval.simlex999()
    assert (len(ws.first), len(sl.first)) == (353, 999)
    assert (ws.first[0], ws.second[0], ws.human[0]) == ("love", "sex", 6.77)
    docs, human = text_eval.lee50()
    assert len(docs) == 50 and len(human[np.triu_indices(50, 1)]) == 1225 and np.all(np.diag(human) == 1)
    train, held = text_eval.split_background(0.1)
    assert (len(train), len(held)) == (270, 30) and not set(train) & set(held) & set(docs)


def test_spearman_is_scipys_with_ties():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 200), rng.normal(size=200) + rng.integers(0, 5, 200)
    assert text_eval.spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)
    assert list(text_eval.ranks([3, 1, 3, 2])) == [3.5, 1, 3.5, 2]


def test_correlations_are_the_scipy_statistics():
    pairs = text_eval.WordPairs("t", ("a", "b", "c"), ("b", "c", "a"), np.array([1.0, 3.0, 2.0]))
    table = {"a": [1.0, 0.0], "b": [0.8, 0.6], "c": [0.0, 1.0]}  # cosines: a-b .8, b-c .6, c-a 0
    embed = lambda words: np.array([table[w] for w in words])  # noqa: E731
    assert text_eval.word_similarity(embed, pairs) == pytest.approx(-0.5)  # ranks (3,2,1) vs (1,3,2)
    docs = ["a", "b", "c"]
    human = np.array([[1, 0.9, 0.1], [0, 1, 0.5], [0, 0, 1]])
    assert text_eval.lee_correlation(embed, docs, human) == pytest.approx(np.corrcoef([0.8, 0.0, 0.6], [0.9, 0.1, 0.5])[0, 1])


def test_a_malformed_pair_file_is_one_line(tmp_path):
    (tmp_path / "pairs.tsv").write_text("# header\ncat\tdog\t7.5\ncat dog 7\n")
    with pytest.raises(UserError, match=r"^pairs.tsv line 3: expected WORD<TAB>WORD<TAB>SCORE"):
        text_eval.word_pairs("pairs.tsv", tmp_path)
    with pytest.raises(UserError, match="cannot read"):
        text_eval.word_pairs("absent.tsv", tmp_path)


def test_normalise_and_sentences():
    assert np.allclose(normalise(np.array([[3.0, 4.0], [0.0, 0.0]])), [[0.6, 0.8], [0, 0]])
    assert text_eval.sentences('He left. "Yes," she said! Mr. smith stayed? No.') == [
        "He left.", '"Yes," she said!', "Mr. smith stayed?", "No."]


def _tiny_checkpoint() -> dict[str, torch.Tensor]:
    """Random tensors with the Hugging Face BertModel names of a TINY model (pooler included)."""
    d, f = TINY.hidden_size, TINY.intermediate_size
    shapes = {"embeddings.word_embeddings.weight": (TINY.vocab_size, d),
              "embeddings.position_embeddings.weight": (TINY.max_position_embeddings, d),
              "embeddings.token_type_embeddings.weight": (2, d), "embeddings.LayerNorm.weight": (d,),
              "embeddings.LayerNorm.bias": (d,), "pooler.dense.weight": (d, d), "pooler.dense.bias": (d,)}
    for i in range(TINY.num_hidden_layers):
        for name, (rows, cols) in {"attention.self.query": (d, d), "attention.self.key": (d, d),
                                   "attention.self.value": (d, d), "attention.output.dense": (d, d),
                                   "intermediate.dense": (f, d), "output.dense": (d, f)}.items():
            shapes[f"encoder.layer.{i}.{name}.weight"] = (rows, cols)
            shapes[f"encoder.layer.{i}.{name}.bias"] = (rows,)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[f"encoder.layer.{i}.{name}.weight"] = (d,)
            shapes[f"encoder.layer.{i}.{name}.bias"] = (d,)
    gen = torch.Generator().manual_seed(1)
    return {k: torch.randn(s, generator=gen) * 0.5 for k, s in shapes.items()}


def _bert_reference(w: dict, ids: torch.Tensor) -> torch.Tensor:
    """BERT's forward pass written from the paper's equations on the checkpoint's own tensors (no folding)."""
    d, h = TINY.hidden_size, TINY.num_attention_heads
    ln = lambda x, p: torch.nn.functional.layer_norm(x, (d,), w[f"{p}.weight"], w[f"{p}.bias"], 1e-12)  # noqa: E731
    lin = lambda x, p: x @ w[f"{p}.weight"].T + w[f"{p}.bias"]  # noqa: E731
    t = ids.shape[1]
    x = ln(w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:t]
           + w["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
    for i in range(TINY.num_hidden_layers):
        p = f"encoder.layer.{i}"
        heads = [lin(x, f"{p}.attention.self.{n}").view(1, t, h, d // h).transpose(1, 2)
                 for n in ("query", "key", "value")]
        att = torch.softmax(heads[0] @ heads[1].transpose(-1, -2) / math.sqrt(d // h), -1) @ heads[2]
        x = ln(x + lin(att.transpose(1, 2).reshape(1, t, d), f"{p}.attention.output.dense"),
               f"{p}.attention.output.LayerNorm")
        x = ln(x + lin(torch.nn.functional.gelu(lin(x, f"{p}.intermediate.dense")), f"{p}.output.dense"),
               f"{p}.output.LayerNorm")
    return x.mean(1)


def test_text_side_runs_without_torch():
    # running a file (`deepcompress run FILE --text`) must not need torch: tokenizer, Encoder, test sets
    code = ("import numpy as np\n"
            "from deepcompress.minilm_text import Encoder\n"
            "from deepcompress import text_eval\n"
            "enc = Encoder(lambda ids: np.ones((len(ids), 3)) * ids.shape[2])\n"
            "x = enc.embed(['a b', 'hello'])\n"
            "assert np.allclose(x, 3 ** -0.5) and len(text_eval.wordsim353().first) == 353\n")
    without_torch(code)
