"""Magnitude pruning: thresholds against closed forms, masks that survive retraining, schedules."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deepcompress.compress import (L1Penalty, Masks, StdThreshold, TargetSparsity, adjust_dropout,
                                   adjusted_dropout, polynomial_sparsity, prune_global, prune_layers)
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
    with pytest.raises(UserError, match="no prunable layer named fc9"):
        Masks(_model(), ["fc9"])
    with pytest.raises(UserError, match=r"\[0, 1\)"):
        prune_layers(_model(), {"ip1": TargetSparsity(1.0)})


def test_polynomial_schedule_closed_form():
    assert polynomial_sparsity(0, 100, 0.9) == 0.0
    assert polynomial_sparsity(100, 100, 0.9) == pytest.approx(0.9)
    assert polynomial_sparsity(50, 100, 0.9) == pytest.approx(0.9 * (1 - 0.5 ** 3))
    assert polynomial_sparsity(500, 100, 0.9) == pytest.approx(0.9)


def test_gradual_pruning_starts_from_the_initial_sparsity():
    from deepcompress.compress.prune import GradualPruning

    model = _model()
    masks = prune_layers(model, {"ip1": TargetSparsity(0.5)})
    hook = GradualPruning(masks, {"ip1": 0.8}, total_steps=4, every=1, initial={"ip1": 0.5})
    seen = []
    for _ in range(4):
        hook.after_step(model)
        seen.append(1 - masks.density()["ip1"])
    n = model.ip1.weight.numel()  # closed form: 0.8 + (0.5 - 0.8) (1 - t)^3 at t = 1/4 ... 1
    assert seen == pytest.approx([0.8 - 0.3 * (1 - t / 4) ** 3 for t in range(1, 5)], abs=1 / n)
    with pytest.raises(UserError, match="ip1: starts above its final sparsity"):
        GradualPruning(masks, {"ip1": 0.4}, total_steps=4, initial={"ip1": 0.5})


def test_dropout_rule():
    # D_r = D_o * sqrt(C_r / C_o): keeping 1/4 of the connections halves the dropout rate.
    assert adjusted_dropout(0.5, 0.25) == pytest.approx(0.25)


@pytest.mark.parametrize("rate,before,after", [(0.5, 4096 * 4096, 1_509_949), (0.5, 300, 75), (0.3, 1000, 1000),
                                               (0.5, 1000, 0), (0.0, 1000, 90), (1.0, 400, 100)])
def test_dropout_rule_closed_form(rate, before, after):
    """Han et al. 2015, eq. 2: D_r = D_o * sqrt(C_ir / C_io); all kept leaves the rate, none kept zeroes it."""
    assert adjusted_dropout(rate, after / before) == pytest.approx(rate * math.sqrt(after / before), abs=1e-15)
    assert adjusted_dropout(rate, after / before) <= rate


@pytest.mark.parametrize("rate,kept", [(-0.1, 0.5), (1.5, 0.5), (0.5, -0.01), (0.5, 1.01)])
def test_dropout_rule_refuses_values_outside_0_1(rate, kept):
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        adjusted_dropout(rate, kept)


def _dropout_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Dropout(0.5), nn.Linear(30, 10), nn.Dropout(0.2))


def test_adjust_dropout_follows_the_layer_it_feeds():
    model = _dropout_net()
    masks = prune_layers(model, {"0": TargetSparsity(0.5), "3": TargetSparsity(0.75)})
    kept, total = masks.masks["3"].sum().item(), masks.masks["3"].numel()
    new = adjust_dropout(model, masks, {"2": 0.5})
    # dropout "2" feeds layer "3" (a quarter kept), not layer "0" before it (half kept)
    assert new == {"2": pytest.approx(0.5 * math.sqrt(kept / total))} and kept / total == pytest.approx(0.25)
    assert model[2].p == new["2"] and model[4].p == 0.2  # only the named dropout changes


def test_adjust_dropout_refuses_what_it_cannot_place():
    model = _dropout_net()
    masks = prune_layers(model, {"0": TargetSparsity(0.5), "3": TargetSparsity(0.5)})
    with pytest.raises(UserError, match="feeds no pruned layer"):
        adjust_dropout(model, masks, {"4": 0.2})
    for name in ("9", "0"):  # no such module; not a dropout module
        with pytest.raises(UserError, match="not a dropout module"):
            adjust_dropout(model, masks, {name: 0.5})
    assert model[2].p == 0.5 and model[4].p == 0.2
