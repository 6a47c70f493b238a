"""Run a PyTorch model with its weights and the activations entering each layer rounded to a number format.

Fixed-point formats (int16, int8, ...) get one scale per tensor, as integer inference does: a weight
tensor's largest magnitude maps to the largest code, an activation's scale comes from calibration images
(the largest input magnitude each layer saw). Floats need no scale. Binary (the talk's "0-1") is one bit:
weights become sign(w) x mean|w| (BinaryConnect's 1-bit weights), activations 0 or 1 times the mean positive
activation (1 where the input is positive). Products are accumulated in float32, as hardware accumulates in
a wider format.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from ..numerics import get_format, round_to

LAYERS = (nn.Linear, nn.Conv2d)


def layers(model: nn.Module) -> dict[str, nn.Module]:
    """The model's Linear and Conv2d modules by name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LAYERS)}


def cast(x: torch.Tensor, fmt: str, scale: float | None = None) -> torch.Tensor:
    """`x` rounded to `fmt`; a fixed-point format is applied to x / scale (default: max|x| at the largest code)."""
    f = get_format(fmt)
    values = x.detach().to(torch.float64).numpy()
    if f.kind == "float":
        out = round_to(values, f)
    else:
        if scale is None:
            scale = float(np.abs(values).max()) / f.max_value if values.size else 1.0
        scale = scale or 1.0
        out = round_to(values / scale, f) * scale
    return torch.from_numpy(out).to(x.dtype)


def binary_weight(w: torch.Tensor) -> torch.Tensor:
    """1-bit weights: sign(w) x mean|w|."""
    return torch.where(w >= 0, 1.0, -1.0).to(w.dtype) * w.abs().mean()


@torch.no_grad()
def cast_weights(model: nn.Module, fmt: str) -> None:
    """Round every Linear/Conv2d weight and bias of `model` in place to `fmt`."""
    for m in layers(model).values():
        m.weight.copy_(binary_weight(m.weight) if fmt == "binary" else cast(m.weight, fmt))
        if m.bias is not None and fmt != "binary":  # a binary network keeps its biases wide
            m.bias.copy_(cast(m.bias, fmt))


@torch.no_grad()
def input_stats(model: nn.Module, x: torch.Tensor) -> dict[str, dict]:
    """Per Linear/Conv2d layer, over inputs `x`: the largest |input| and the mean of the positive inputs."""
    stats, handles = {}, []
    for name, m in layers(model).items():
        def hook(_m, inp, name=name):
            a = inp[0]
            pos = a[a > 0]
            s = stats.setdefault(name, {"max_abs": 0.0, "pos_sum": 0.0, "pos_count": 0})
            s["max_abs"] = max(s["max_abs"], a.abs().max().item())
            s["pos_sum"] += pos.sum().item()
            s["pos_count"] += pos.numel()
        handles.append(m.register_forward_pre_hook(hook))
    try:
        model.eval()
        model(x)
    finally:
        for h in handles:
            h.remove()
    for s in stats.values():
        s["pos_mean"] = s["pos_sum"] / max(s["pos_count"], 1)
    return stats


def activation_caster(fmt: str, stat: dict):
    """A function rounding one layer's input activations to `fmt` with the layer's calibration `stat`."""
    if fmt == "binary":
        level = stat["pos_mean"] or 1.0
        return lambda a: (a > 0).to(a.dtype) * level
    f = get_format(fmt)
    scale = stat["max_abs"] / f.max_value if f.kind == "fixed" and stat["max_abs"] > 0 else None
    return lambda a: cast(a, fmt, scale)


@contextmanager
def cast_activations(model: nn.Module, casters: dict):
    """While inside, each named layer's input goes through casters[name] (a tensor -> tensor function)."""
    handles = [m.register_forward_pre_hook(lambda _m, inp, f=casters[n]: (f(inp[0]),))
               for n, m in layers(model).items() if n in casters]
    try:
        yield model
    finally:
        for h in handles:
            h.remove()
