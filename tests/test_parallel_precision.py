"""Reduced-precision training hooks: mixed precision with loss scaling, fixed point with two roundings."""

from __future__ import annotations

import pytest
import torch

from conftest import separable_dataset
from deepcompress.errors import UserError
from deepcompress.models import build_model
from deepcompress.parallel.precision import FixedPointWeights, fixed16, mixed_precision
from deepcompress.train import TrainConfig, train

CFG = TrainConfig(epochs=2, batch_size=32, lr=0.05, schedule="constant", seed=2)


def _model(seed=2):
    torch.manual_seed(seed)
    return build_model("lenet-300-100")


def test_bf16_mixed_precision_learns_like_fp32_with_fp32_master_weights():
    data = separable_dataset(n_train=512, n_test=128)
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.05, schedule="constant", seed=2)
    reference, model = _model(), _model()
    train(reference, data, cfg, progress=False, verbose=False)
    hook = mixed_precision(model, "bf16")
    assert model(data.test_x[:4]).dtype == torch.float32 and hook.scale == 1.0
    result = train(model, data, cfg, hooks=(hook,), progress=False, verbose=False)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert result.test_error < 0.1 and hook.skipped == 0
    # The arithmetic really was bf16: the weights differ from fp32 training, by little.
    gap = max((p - q).abs().max().item() for p, q in zip(model.parameters(), reference.parameters()))
    assert 0 < gap < 0.05


def test_fp16_overflow_skips_the_step_and_backs_off():
    data = separable_dataset(n_train=64, n_test=16)
    model = _model()
    hook = mixed_precision(model, "fp16")  # dynamic scaling, starting at 2^16
    hook.scale = 2.0**60  # far past fp16's range: the first backward overflows
    before = [p.detach().clone() for p in model.parameters()]
    cfg = TrainConfig(epochs=1, batch_size=64, lr=0.05, schedule="constant", seed=2)
    train(model, data, cfg, hooks=(hook,), progress=False, verbose=False)
    assert hook.skipped == 1 and hook.scale == 2.0**59
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_fp16_scaled_gradients_equal_the_unscaled_ones():
    data = separable_dataset(n_train=32, n_test=1)
    x, y = data.train_x, data.train_y
    grads = []
    for scale in (1.0, 1024.0):
        model = _model()
        hook = mixed_precision(model, "fp16", loss_scale=scale)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        hook.after_backward(model)
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=1e-5)  # fp16 arithmetic, same gradient


def test_fixed_point_weights_stay_on_the_grid_and_are_reproducible():
    data = separable_dataset(n_train=64, n_test=16)
    cfg = TrainConfig(epochs=1, batch_size=32, lr=0.05, schedule="constant", seed=2)
    runs = []
    for _ in range(2):
        model = _model()
        train(model, data, cfg, hooks=(FixedPointWeights(model, fixed16(12), "stochastic", seed=7),),
              progress=False, verbose=False)
        runs.append(model)
    for p, q in zip(runs[0].parameters(), runs[1].parameters()):
        assert torch.equal(p, q) and torch.equal(p * 4096, (p * 4096).round())


def test_round_to_nearest_loses_small_updates_that_stochastic_rounding_keeps():
    # Learning rate so small that every update is far below half a step of Q7.8 (2^-9).
    data = separable_dataset(n_train=128, n_test=16)
    cfg = TrainConfig(epochs=1, batch_size=32, lr=1e-4, momentum=0.0, weight_decay=0.0, schedule="constant", seed=2)
    moved = {}
    for mode in ("nearest", "stochastic"):
        model = _model()
        hook = FixedPointWeights(model, fixed16(8), mode, seed=1)
        start = [p.detach().clone() for p in model.parameters()]
        train(model, data, cfg, hooks=(hook,), progress=False, verbose=False)
        moved[mode] = sum((p - s).abs().sum().item() for p, s in zip(model.parameters(), start))
    assert moved["nearest"] == 0.0 and moved["stochastic"] > 0.0


def test_bad_formats_are_refused():
    with pytest.raises(UserError):
        FixedPointWeights(_model(), "bf16")
    with pytest.raises(UserError):
        mixed_precision(_model(), "fp8")
    with pytest.raises(UserError):
        fixed16(16)
    assert fixed16(14) == "Q1.14"
