"""The CharLSTM's per-layer pruning targets against their closed form."""

from __future__ import annotations

import pytest
import torch

from deepcompress.models_text import LSTM_MATRICES, CharLSTM, charlstm_sparsity


@pytest.mark.parametrize("target", [0.5, 0.9, 0.95])
def test_charlstm_sparsity_meets_the_overall_target(target):
    model = CharLSTM(82, embed=64, hidden=128)
    sparsity = charlstm_sparsity(model, target)
    sizes = {"embed": 82 * 64, "out": 82 * 128, "lstm.weight_ih_l0": 512 * 64, "lstm.weight_hh_l0": 512 * 128,
             "lstm.weight_ih_l1": 512 * 128, "lstm.weight_hh_l1": 512 * 128}
    assert set(sparsity) == set(sizes)
    kept = sum((1 - sparsity[n]) * sizes[n] for n in sizes)
    assert kept == pytest.approx((1 - target) * sum(sizes.values()), rel=1e-12)
    assert 1 - sparsity["embed"] == pytest.approx(min(1, 3 * (1 - target)))
    assert 1 - sparsity["out"] == pytest.approx(min(1, 1.5 * (1 - target)))
    assert len({sparsity[n] for n in LSTM_MATRICES}) == 1


def test_charlstm_sparsity_refuses_what_it_cannot_split():
    with pytest.raises(ValueError, match="cannot prune"):
        charlstm_sparsity(CharLSTM(82, embed=4000, hidden=8), 0.7)  # the embedding alone keeps too much


def test_set_dropout_reaches_every_dropout_module_and_the_lstm():
    from deepcompress.models_text import CharLSTM, set_dropout

    model = CharLSTM(20, 8, 8, dropout=0.25)
    set_dropout(model, 0.05)
    assert model.drop.p == 0.05 and model.lstm.dropout == 0.05
    model.eval()
    x = torch.randint(0, 20, (2, 5))
    assert torch.equal(model(x), model(x))  # evaluation never drops


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_set_dropout_refuses_a_rate_outside_zero_to_one(p):
    from deepcompress.models_text import CharLSTM, set_dropout

    with pytest.raises(ValueError, match="expected 0 <= p < 1"):
        set_dropout(CharLSTM(20, 8, 8), p)
