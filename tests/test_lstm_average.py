"""benchmarks/lstm_average.py: the running average of a pruned model's weights along a training path at its
mask is the plain mean of the weights after each step, keeps the mask's zeros, and is scored as a model; the
model passed in is left as it was."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lstm_average  # noqa: E402

from deepcompress.data import Dataset  # noqa: E402
from deepcompress.models_text import LSTM_MATRICES, CharLSTM, sequence_loss  # noqa: E402
from deepcompress.train import objective_of  # noqa: E402

VOCAB = 30
LAYERS = ("embed", "out", *LSTM_MATRICES)


def test_the_average_is_the_mean_of_the_masked_iterates_and_keeps_the_mask(monkeypatch):
    g = torch.Generator().manual_seed(0)
    data = Dataset("tiny", *(torch.randint(0, VOCAB, (n, 7), generator=g) for n in (40, 40, 16, 16)))
    torch.manual_seed(0)
    model = CharLSTM(VOCAB, embed=8, hidden=12)
    with torch.no_grad():
        for name in LAYERS:
            w = lstm_average.layer_weight(model, name)
            w.mul_(torch.rand(w.shape, generator=g) < 0.3)
    masks = lstm_average.masks_of(model, LAYERS)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    iterates = []
    real = lstm_average.apply_masks

    def recording(m, mk):
        real(m, mk)
        iterates.append({k: v.clone() for k, v in m.state_dict().items()})
    monkeypatch.setattr(lstm_average, "apply_masks", recording)
    val = (data.test_x, data.test_y)
    points, last, avg = lstm_average.averaged_path(model, data, objective_of(sequence_loss, "loss"), masks,
                                                   lr=1e-2, dropout=0.1, steps=5, every=2, val=val, batch=8)
    assert [p["step"] for p in points] == [0, 2, 4, 5] and len(iterates) == 5
    for key, value in avg.state_dict().items():
        torch.testing.assert_close(value, torch.stack([it[key] for it in iterates]).mean(0), rtol=1e-5, atol=1e-6)
    for name in LAYERS:
        assert not lstm_average.layer_weight(avg, name)[~masks[name]].any()  # pruned weights stay pruned
        assert lstm_average.layer_weight(last, name)[masks[name]].ne(before[name if name.startswith("lstm")
                                                                           else f"{name}.weight"][masks[name]]).any()
    assert points[-1]["average"] == math.exp(lstm_average.mean_loss(avg, *val))
    assert points[0]["current"] == points[0]["average"] == math.exp(lstm_average.mean_loss(model, *val))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the model passed in
