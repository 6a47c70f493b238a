"""benchmarks/lstm_fit.py: each stage's perplexity equals PyTorch's cross-entropy of that checkpoint with
dropout off, on the windows asked for; stages without a checkpoint are left out; an empty folder is refused."""

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


def _reference(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        logits = model(x)
    return math.exp(float(F.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))))


def test_each_stage_matches_pytorch_with_dropout_off(tiny_record, tmp_path):
    spec, data = tiny_record
    models = {}
    for seed, (stage, file) in zip((1, 2), lstm_fit.STAGES[:2]):
        torch.manual_seed(seed)
        models[stage] = spec.build({"vocab": VOCAB})
        torch.save({"model": models[stage].state_dict()}, tmp_path / file)
    fit = lstm_fit.record_fit("tiny", spec, data, {"vocab": VOCAB}, tmp_path, windows=12)
    assert set(fit) == {"dense", "pruned"}  # no quantize-train.pt: that stage is left out
    for stage, model in models.items():
        assert fit[stage]["train"] == pytest.approx(_reference(model, data.train_x[:12], data.train_y[:12]),
                                                    rel=1e-5)
        assert fit[stage]["test"] == pytest.approx(_reference(model, data.test_x[:12], data.test_y[:12]),
                                                   rel=1e-5)
    assert fit["dense"]["train"] != pytest.approx(fit["pruned"]["train"], rel=1e-3)


def test_a_folder_without_checkpoints_is_refused(tiny_record, tmp_path):
    spec, data = tiny_record
    with pytest.raises(UserError, match="none of baseline-train.pt.*run benchmarks/any_model.py tiny"):
        lstm_fit.record_fit("tiny", spec, data, {"vocab": VOCAB}, tmp_path, windows=4)
