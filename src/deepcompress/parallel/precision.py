"""Reduced-precision training as hooks of the one training loop.

- Mixed precision (Micikevicius et al. 2018): the forward and backward arithmetic run in bf16 or fp16
  under torch.autocast while the weights, their updates and the loss stay fp32 (the master copy). fp16's
  narrow range needs loss scaling: gradients are computed for loss x S and divided by S before the
  step; a step whose gradients overflowed is skipped and S halved, and S doubles after a run of good steps.
- 16-bit fixed point (Gupta et al. 2015): after every update the weights are rounded to a Qm.n format,
  by round-to-nearest or by stochastic rounding (unbiased: small updates survive in expectation, where
  round-to-nearest throws away every update smaller than half a step).

Rounding uses deepcompress.numerics. Random streams depend only on (seed, step), so data-parallel ranks
round identically and stay in step.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from ..numerics import get_format, round_tensor
from ..train import TrainHook

HALF_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class MixedPrecision(TrainHook):
    """Runs a model's forward pass in `dtype` ('bf16' or 'fp16') with fp32 master weights.

    Build it with `mixed_precision(model, ...)`, which also patches the model's forward; pass it as a
    training hook so it can unscale gradients and skip overflowed steps. `loss_scale` None means dynamic
    scaling for fp16 and none for bf16; a number fixes the scale.
    """

    def __init__(self, dtype: str = "bf16", loss_scale: float | None = None, growth_interval: int = 1000):
        if dtype not in HALF_DTYPES:
            raise UserError(f"mixed precision dtype {dtype!r}: expected one of {', '.join(HALF_DTYPES)}")
        self.dtype = dtype
        self.dynamic = loss_scale is None and dtype == "fp16"
        self.scale = 2.0**16 if self.dynamic else float(loss_scale or 1.0)
        self.growth_interval, self.good_steps, self.skipped = growth_interval, 0, 0

    def wrap_forward(self, model: nn.Module) -> None:
        """Make model(x) run under autocast and return fp32 outputs whose gradient carries the loss scale."""
        inner, dtype, hook = model.forward, HALF_DTYPES[self.dtype], self

        def forward(*args, **kwargs):
            device = next((a.device.type for a in args if isinstance(a, torch.Tensor)), "cpu")
            with torch.autocast(device_type=device, dtype=dtype):
                out = inner(*args, **kwargs)
            out = out.float()
            if out.requires_grad and hook.scale != 1.0:
                out.register_hook(lambda g: g * hook.scale)
            return out

        model.forward = forward

    def after_backward(self, model: nn.Module) -> None:
        """Unscale the gradients; on overflow drop them (the optimizer then skips every weight) and back off."""
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if self.scale != 1.0:
            for g in grads:
                g.div_(self.scale)
        if all(torch.isfinite(g).all() for g in grads):
            self.good_steps += 1
            if self.dynamic and self.good_steps % self.growth_interval == 0:
                self.scale *= 2.0
            return
        for p in model.parameters():
            p.grad = None  # torch optimizers leave parameters without a gradient untouched
        self.skipped += 1
        if self.dynamic:
            self.scale /= 2.0
            self.good_steps = 0


def mixed_precision(model: nn.Module, dtype: str = "bf16", loss_scale: float | None = None,
                    growth_interval: int = 1000) -> MixedPrecision:
    """Switch `model` to mixed-precision forward passes; returns the hook to pass to train()."""
    hook = MixedPrecision(dtype, loss_scale, growth_interval)
    hook.wrap_forward(model)
    return hook


class FixedPointWeights(TrainHook):
    """Keeps every parameter of `model` in fixed point `fmt` (e.g. 'Q1.14': 16 bits, 14 fraction bits),
    rounding with `mode` ('stochastic' or 'nearest') after every optimizer step."""

    def __init__(self, model: nn.Module, fmt: str = "Q1.14", mode: str = "stochastic", seed: int = 0):
        self.fmt = get_format(fmt)
        if self.fmt.kind != "fixed":
            raise UserError(f"{self.fmt.name} is not a fixed-point format; use Qm.n")
        if mode not in ("stochastic", "nearest"):
            raise UserError(f"rounding mode {mode!r}: expected 'stochastic' or 'nearest'")
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.mode, self.seed, self.step = mode, seed, 0
        self._round()

    @torch.no_grad()
    def _round(self) -> None:
        for i, p in enumerate(self.params):
            # One stream per (seed, step, parameter): reproducible, and the same on every rank.
            stream = (self.seed * 1_000_003 + self.step) * 65_537 + i
            p.copy_(round_tensor(p, self.fmt, self.mode, seed=stream))

    def after_step(self, model: nn.Module) -> None:
        """Round the freshly updated weights back into the fixed-point format."""
        self.step += 1
        self._round()


def fixed16(frac_bits: int) -> str:
    """The 16-bit signed fixed-point format with `frac_bits` fraction bits, as a Qm.n name."""
    if not 0 <= frac_bits <= 15:
        raise UserError(f"a 16-bit format has 0 to 15 fraction bits, got {frac_bits}")
    return f"Q{15 - frac_bits}.{frac_bits}"
