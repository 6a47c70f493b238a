"""Magnitude pruning: thresholds against closed forms, masks that survive retraining, schedules."""

from __future__ import annotations

import pytest
import torch

from deepcompress.compress import (L1Penalty, Masks, StdThreshold, TargetSparsity, adjusted_dropout,
                                   polynomial_sparsity, prune_global, prune_layers)
from deepcompress.errors import UserError
from deepcompress.models import build_model
from deepcompress.train import TrainConfig, train


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model("lenet-300-100")


def test_target_sparsity_is_exact_and_removes_the_smallest():
    model = _model()
    w = model.ip1.weight.detach().clone()
    masks = prune_layers(model, {"ip1": TargetSparsity(0.9)})
    assert masks.density()["ip1"] == pytest.approx(0.1, abs=1 / w.numel())
    kept = w.abs()[masks.masks["ip1"]]
    dropped = w.abs()[~masks.masks["ip1"]]
    assert kept.min() > dropped.max()
    assert torch.equal(model.ip1.weight, w * masks.masks["ip1"])


def test_std_threshold_matches_the_closed_form():
    model = _model()
    w = model.ip2.weight.detach().clone()
    masks = prune_layers(model, {"ip2": StdThreshold(0.7)})
    assert torch.equal(masks.masks["ip2"], w.abs() > 0.7 * w.std())


def test_global_pruning_uses_one_threshold():
    model = _model()
    weights = {n: getattr(model, n).weight.detach().clone() for n in ("ip1", "ip2", "ip3")}
    masks = prune_global(model, 0.8)
    assert sum(m.sum().item() for m in masks.masks.values()) == pytest.approx(0.2 * 266_200, abs=2)
    smallest_kept = min(weights[n].abs()[masks.masks[n]].min() for n in weights)
    largest_dropped = max(weights[n].abs()[~masks.masks[n]].max() for n in weights)
    assert smallest_kept > largest_dropped


@pytest.mark.parametrize("optimizer,wd", [("sgd", 1e-3), ("adam", 1e-3)])
def test_pruned_weights_stay_zero_through_retraining(tiny_data, optimizer, wd):
    model = _model()
    masks = prune_layers(model, {"ip1": TargetSparsity(0.95), "ip2": TargetSparsity(0.5)})
    cfg = TrainConfig(epochs=2, batch_size=32, optimizer=optimizer, lr=0.01 if optimizer == "sgd" else 1e-3,
                      weight_decay=wd)
    before = {n: getattr(model, n).weight.detach().clone() for n in ("ip1", "ip2")}
    train(model, tiny_data, cfg, hooks=(masks, L1Penalty(masks, 1e-4)), progress=False, verbose=False)
    for n in ("ip1", "ip2"):
        w = getattr(model, n).weight.detach()
        assert torch.count_nonzero(w[~masks.masks[n]]) == 0
        assert not torch.equal(w[masks.masks[n]], before[n][masks.masks[n]])  # survivors did train


def test_unknown_layer_and_bad_sparsity_are_refused():
    with pytest.raises(UserError, match="no Linear/Conv2d layer named fc9"):
        Masks(_model(), ["fc9"])
    with pytest.raises(UserError, match=r"\[0, 1\)"):
        prune_layers(_model(), {"ip1": TargetSparsity(1.0)})


def test_polynomial_schedule_closed_form():
    assert polynomial_sparsity(0, 100, 0.9) == 0.0
    assert polynomial_sparsity(100, 100, 0.9) == pytest.approx(0.9)
    assert polynomial_sparsity(50, 100, 0.9) == pytest.approx(0.9 * (1 - 0.5 ** 3))
    assert polynomial_sparsity(500, 100, 0.9) == pytest.approx(0.9)


def test_dropout_rule():
    # D_r = D_o * sqrt(C_r / C_o): keeping 1/4 of the connections halves the dropout rate.
    assert adjusted_dropout(0.5, 0.25) == pytest.approx(0.25)
