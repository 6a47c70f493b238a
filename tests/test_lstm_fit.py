"""benchmarks/lstm_fit.py: each stage's perplexity, top-k mass and words outside the top k equal a float64
reference of that checkpoint with dropout off, on the windows asked for; stages without a checkpoint are left
out; an empty folder is refused. benchmarks/lstm_restart.py: a restart at learning rate 0 scores as the
model does, and the model passed in is left as it was."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import any_model_specs  # noqa: E402
import lstm_fit  # noqa: E402

from deepcompress.data import Dataset  # noqa: E402
from deepcompress.errors import UserError  # noqa: E402
from deepcompress.models_text import LSTM_MATRICES, WORD_LSTM  # noqa: E402

VOCAB = 30
TINY = {**WORD_LSTM, "embed": 8, "hidden": 12, "dropout": 0.5}


@pytest.fixture
def tiny_record():
    """A word-LSTM record with a 12-unit model, and random windows in place of the novels."""
    g = torch.Generator().manual_seed(0)
    data = Dataset("tiny", *(torch.randint(0, VOCAB, (n, 7), generator=g) for n in (20, 20, 16, 16)))
    return any_model_specs.words_lstm_spec(("embed", "out", *LSTM_MATRICES), TINY), data


KS = (1, 3, 8)  # of the 30 words


def _reference(model, x, y) -> tuple[float, dict, dict]:
    """Perplexity, top-k mass and how often the word is outside the top k, from one batch in float64."""
    model.eval()
    with torch.no_grad():
        logits = model(x).double()
    p = torch.softmax(logits, -1)
    ranks = (p > p.gather(-1, y.unsqueeze(-1))).sum(-1)  # how many words the model ranks above the one that came
    mass = {k: float(p.sort(-1, descending=True).values[..., :k].sum(-1).mean()) for k in KS}
    outside = {k: float((ranks >= k).double().mean()) for k in KS}
    return math.exp(float(F.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1)))), mass, outside


def test_each_stage_matches_a_float64_reference_with_dropout_off(tiny_record, tmp_path):
    spec, data = tiny_record
    models = {}
    for seed, (stage, file) in zip((1, 2), lstm_fit.STAGES[:2]):
        torch.manual_seed(seed)
        models[stage] = spec.build({"vocab": VOCAB})
        torch.save({"model": models[stage].state_dict()}, tmp_path / file)
    numbers = lstm_fit.record_fit("tiny", spec, data, {"vocab": VOCAB}, tmp_path, windows=12, ks=KS)
    assert set(numbers) == {"dense", "pruned"}  # no quantize-train.pt: that stage is left out
    for stage, model in models.items():
        for part, x, y in (("train", data.train_x, data.train_y), ("test", data.test_x, data.test_y)):
            perplexity, mass, outside = _reference(model, x[:12], y[:12])
            got = numbers[stage][part]
            assert got["perplexity"] == pytest.approx(perplexity, rel=1e-5)
            assert got["top_k_mass"] == pytest.approx(mass, rel=1e-5)
            assert got["outside_top_k"] == pytest.approx(outside, abs=1e-9)
    assert numbers["dense"]["train"]["perplexity"] != pytest.approx(numbers["pruned"]["train"]["perplexity"],
                                                                    rel=1e-3)


def test_a_folder_without_checkpoints_is_refused(tiny_record, tmp_path):
    spec, data = tiny_record
    with pytest.raises(UserError, match="none of baseline-train.pt.*run benchmarks/any_model.py tiny"):
        lstm_fit.record_fit("tiny", spec, data, {"vocab": VOCAB}, tmp_path, windows=4)


def test_a_restart_at_learning_rate_zero_changes_nothing_and_leaves_the_model(tiny_record):
    import lstm_restart

    spec, data = tiny_record
    torch.manual_seed(3)
    model = spec.build({"vocab": VOCAB})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    still = lstm_restart.restart(model, data, lr=0.0, dropout=0.3, steps=5, every=2, windows=8)
    assert [s for s, _ in still] == [0, 2, 4, 5]
    assert all(p == pytest.approx(_reference(model, data.test_x[:8], data.test_y[:8])[0], rel=1e-6)
               for _, p in still)
    moved = lstm_restart.restart(model, data, lr=0.05, dropout=0.3, steps=5, every=5, windows=8)
    assert moved[0] == still[0] and moved[-1][1] != pytest.approx(still[-1][1], rel=1e-4)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
