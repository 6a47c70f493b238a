"""The forward-pass ops of a .dcz file (typed records from deepcompress.format.graph) on numpy arrays.

The format parses and shape-checks the pass once at load time; `build_ops` turns each record into a
runnable op on float32 batches of shape (N, ...) that the model owns, so element-wise ops work in place.
"""

from __future__ import annotations


import numpy as np

from ..format import graph
from .errors import ModelError
from .sparse_conv import SparseConv2d
from .int_fc import IntLinear
from .sparse_fc import SparseLinear


class Flatten:
    """(N, ...) -> (N, prod(...))."""

    name = "flatten"


    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Apply to a batch."""
        return x.reshape(x.shape[0], -1)


class Relu:
    """max(x, 0), in place."""

    name = "relu"


    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Apply to a batch (overwrites it)."""
        return np.maximum(x, 0.0, out=x)


class MaxPool:
    """2-D max pooling over (N, C, H, W): (height, width) window and stride, no padding, floor mode."""

    name = "maxpool"

    def __init__(self, kernel: tuple[int, int], stride: tuple[int, int]):
        self.kernel, self.stride = kernel, stride

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Apply to a batch."""
        (kh, kw), (sh, sw) = self.kernel, self.stride
        ho, wo = (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1
        # kh*kw element-wise maxima of strided views: numpy's reduction over window axes (reshape or
        # sliding_window_view, then max) took 310 us on LeNet-5's first pooling at batch 1, this 10 us
        out = None
        for i in range(kh):
            for j in range(kw):
                view = x[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
                out = view.copy() if out is None else np.maximum(out, view, out=out)
        return out


class Fc:
    """A fully connected layer on its sparse runtime layout; batch 1 goes straight to the matvec kernel."""

    name = "fc"

    def __init__(self, layer: SparseLinear, layer_name: str, where: str):
        self.layer, self.layer_name, self.where = layer, layer_name, where

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Apply to a batch."""
        if x.shape[0] == 1 and isinstance(self.layer, IntLinear):
            y = np.empty(self.layer.out_features, np.float32)
            self.layer.matvec(np.ascontiguousarray(x[0]), y)
            return y.reshape(1, -1)
        if x.shape[0] == 1 and self.layer.threads == 1:
            y = self.layer.bias.copy()
            self.layer.layout.matvec(np.ascontiguousarray(x[0]), y)
            return y.reshape(1, -1)
        if x.shape[0] == 1:  # through __call__, which sets numba's thread count and passes it on
            return self.layer(x[0]).reshape(1, -1)
        return self.layer(x)


class Conv:
    """A 2-D convolution, dense-decoded or sparse as SparseConv2d's policy chose."""

    name = "conv"

    def __init__(self, conv: SparseConv2d, layer_name: str, where: str):
        self.conv, self.layer_name, self.where = conv, layer_name, where

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Apply to a batch."""
        return self.conv(x)


def build_op(op: graph.Op, layers: dict, batch: int, threads: int = 1, where: str = "op",
             precision: str = "fp32"):
    """The runnable op for one typed op record, its layer prepared for `batch`-sized inputs and run on
    `threads` threads; FC layers in `precision` (convolutions stay fp32)."""
    if isinstance(op, graph.Flatten):
        return Flatten()
    if isinstance(op, graph.Relu):
        return Relu()
    if isinstance(op, graph.MaxPool):
        return MaxPool(op.kernel, op.stride)
    if isinstance(op, graph.Fc):
        layer = layers[op.layer]
        fc = SparseLinear.from_layer(layer, layer.bias, batch=batch, threads=threads, precision=precision)
        return Fc(fc, op.layer, where)
    if isinstance(op, graph.Conv):
        layer = layers[op.layer]
        conv = SparseConv2d(layer, layer.shape, layer.bias, op.stride, op.padding, threads=threads)
        return Conv(conv, op.layer, where)
    raise ModelError(f"{where}: op {op.name!r} is defined by the format but the runtime cannot run it")


def build_ops(meta: dict, layers: dict, batch: int, threads: int = 1,
              precision: str = "fp32") -> tuple[list, graph.ForwardPass]:
    """The runnable ops of the file's forward pass and the parsed pass; ModelError if they cannot run."""
    try:
        forward = graph.parse_forward(meta, layers)
    except graph.GraphError as err:
        raise ModelError(str(err)) from None
    built = [build_op(op, layers, batch, threads, f"op {i} ({op.name})", precision)
             for i, op in enumerate(forward.ops)]
    return built, forward
