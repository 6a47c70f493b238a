"""A run of FC layers (each with its ReLU, if one follows) at batch 1 as one compiled call.

Each layer's batch-1 kernel (fused.py for fp32, the int layouts' fused kernels) is called from one
generated numba function, so the vectors between layers never become Python objects and the run
costs one dispatch instead of one per layer plus the Python around each (LeNet-300-100: README,
end to end). The same kernels in the same order: the outputs equal the layer-by-layer ones bit for bit.
A generated function is compiled once per process for each sequence of kernels.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import layouts
from .fused import fp32_spec
from .int_fc import IntLinear

_COMPILED: dict[str, object] = {}


def layer_spec(layer):
    """(kernel, args, x index, y index) of the layer's batch-1 call, or None (threads, portable path,
    a layout without one)."""
    if isinstance(layer, IntLinear):
        spec = getattr(layer.layout, "vec_spec", None)  # csc and rowquads have none
        return None if spec is None else spec(layer._xq, layer._acc, layer.weight_scale, layer.bias, layer.path)
    if getattr(layer, "threads", None) != 1:
        return None
    return fp32_spec(layer.layout, layer.bias)


def _source(specs: list, relus: list) -> str:
    # the finiteness test lets CompressedModel hand an unchecked, uncopied input straight to `run`; an
    # input with NaN or inf gives no rows, and the model's checked path then names the problem
    lines = [f"def run(x, {', '.join(f'a{j}' for j in range(len(specs)))}):",
             "    for v in x[0]:", "        if not np.isfinite(v):", "            return np.empty((0, 1), np.float32)"]
    x = "x[0]"
    for j, ((_, args, xi, yi), relu) in enumerate(zip(specs, relus)):
        a = [f"a{j}[{k + 1}]" for k in range(len(args))]
        call = a[:xi] + [x] + a[xi:yi] + [f"y{j}[0]"] + a[yi:] + [str(bool(relu))]
        lines += [f"    y{j} = np.empty((1, a{j}[0]), np.float32)", f"    K{j}({', '.join(call)})"]
        x = f"y{j}[0]"
    lines.append(f"    return y{len(specs) - 1}")
    return "\n".join(lines) + "\n"


def _mode(layer) -> tuple:
    return getattr(layer, "path", None), layer.threads


class FcRun:
    """Consecutive FC ops (`relus[j]`: op j's ReLU fused in) as one step of a chain: batch 1 in one
    compiled call while every layer keeps the layout it had when built, otherwise op by op."""

    def __init__(self, fcs: list, relus: list, specs: list):
        self.fcs, self.relus = fcs, relus
        self._bound = [(fc, fc.layer, fc.layer.layout, _mode(fc.layer)) for fc in fcs]
        self._c_kernels = layouts.C_KERNELS
        self._args = [(fc.layer.out_features, *spec[1]) for fc, spec in zip(fcs, specs)]
        key = _source(specs, relus) + repr([spec[0] for spec in specs])
        if key not in _COMPILED:
            scope = {"np": np, **{f"K{j}": spec[0] for j, spec in enumerate(specs)}}
            exec(_source(specs, relus), scope)  # noqa: S102 - our own generated source, no user input
            _COMPILED[key] = njit(cache=False, nogil=True)(scope["run"])
        self._run = _COMPILED[key]

    def _unchanged(self) -> bool:
        """Whether every layer still has the layout, dispatch path and threads it was bound with."""
        if layouts.C_KERNELS != self._c_kernels:
            return False
        for fc, layer, layout, mode in self._bound:
            if fc.layer is not layer or layer.layout is not layout or _mode(layer) != mode:
                return False
        return True

    def single(self, x: np.ndarray) -> np.ndarray | None:
        """The last layer's output (1, out) for one unchecked float32 C-contiguous input row x (1, in),
        without the Python around each layer; None when x holds NaN or inf or a layer changed since it
        was bound (the caller then takes the checked path)."""
        if not self._unchanged():
            return None
        y = self._run(x, *self._args)
        return y if y.shape[0] else None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The last layer's output for x (N, in)."""
        if x.ndim == 2 and x.shape[0] == 1 and x.dtype == np.float32 and x.flags.c_contiguous:
            y = self.single(x)
            if y is not None:
                return y
            # else NaN or inf reached this run from an earlier step (a convolution overflowing), or a layer
            # changed: layer by layer, so they propagate as they would without the compiled call
        for fc, relu in zip(self.fcs, self.relus):
            x = fc(x, relu)
        return x


def fc_run(fcs: list, relus: list) -> FcRun | None:
    """An FcRun of the Fc ops `fcs`, or None if some layer has no compiled batch-1 call."""
    specs = [layer_spec(fc.layer) for fc in fcs]
    return None if any(s is None for s in specs) else FcRun(fcs, relus, specs)
