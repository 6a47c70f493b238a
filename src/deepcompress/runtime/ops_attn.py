"""The runtime ops of format/op_records_attn.py that hold no weights: matrix products between activations,
arithmetic with a number, subtraction and division, the mean over axes and the causal mask, on float32 batches (N, ...).
The 1-D convolution runs as a height-1 2-D one (ops.Conv). What each op computes: docs/FORMAT.md 4.1.1.
"""

from __future__ import annotations

import numpy as np

from ..format import graph

SCALAR_UFUNCS = {"add": (np.add, False), "sub": (np.subtract, False), "rsub": (np.subtract, True),
                 "mul": (np.multiply, False), "div": (np.divide, False), "rdiv": (np.divide, True)}


def _aligned(x: np.ndarray, ndim: int) -> np.ndarray:
    """x (N, ...) with unit axes after N so that it has `ndim` axes (broadcasting of per-sample shapes)."""
    return x.reshape(x.shape[0], *([1] * (ndim - x.ndim)), *x.shape[1:])


class ScalarOp:
    """x (fn) value element-wise in float32; in place when allowed."""

    def __init__(self, op: graph.Scalar, inplace: bool):
        self.ufunc, self.swapped = SCALAR_UFUNCS[op.fn]
        self.value, self.inplace = np.float32(op.value), inplace

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Apply to a batch."""
        a, b = (self.value, x) if self.swapped else (x, self.value)
        return self.ufunc(a, b, out=x if self.inplace else None, dtype=np.float32)


def _two(fn):
    def run(a, b):
        ndim = max(a.ndim, b.ndim)
        return fn(_aligned(a, ndim), _aligned(b, ndim)).astype(np.float32, copy=False)
    return run


def _causal_mask(x: np.ndarray) -> np.ndarray:
    """x (N, ..., L, S) with positions j > i of each L x S matrix set to -inf (a new array)."""
    above = np.triu(np.ones(x.shape[-2:], dtype=bool), 1)
    return np.where(above, np.float32(-np.inf), x)


def _reduce(axes: tuple, keepdim: bool, largest: bool):
    def run(x):
        axis = tuple(a + 1 for a in axes)
        return x.max(axis=axis, keepdims=keepdim) if largest else x.mean(axis=axis, keepdims=keepdim, dtype=np.float32)
    return run


def build_attn_op(op: graph.Op, forward: graph.ForwardPass, i: int, inplace: bool):
    """The runnable op for record i when it is one of this module's ops, else None."""
    if isinstance(op, graph.MatMul):
        return _two(np.matmul)
    if isinstance(op, graph.Scalar):
        return ScalarOp(op, inplace)
    if isinstance(op, graph.Sub):
        return _two(np.subtract)
    if isinstance(op, graph.Div):
        return _two(np.divide)
    if isinstance(op, graph.CausalMask):
        return _causal_mask
    if isinstance(op, (graph.Mean, graph.Amax)):
        return _reduce(op.axes(len(forward.input_shapes(i)[0]), f"op {i} ({op.name})"), op.keepdim,
                       isinstance(op, graph.Amax))
    return None
