"""The forward-pass ops of a .dcz file's meta (fc, conv, relu, maxpool, flatten) on numpy arrays.

Each op is parsed and shape-checked once at load time (`build_ops`), then runs on float32 batches of
shape (N, ...) that the model owns, so element-wise ops work in place.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import ModelError
from .nonzeros import Nonzeros, from_positions
from .sparse_conv import SparseConv2d
from .sparse_fc import SparseLinear

SUPPORTED = ("fc", "conv", "relu", "maxpool", "flatten")


def nonzeros_of(layer) -> Nonzeros:
    """The runtime's Nonzeros of a format QuantizedLayer's 2-D view (out, prod(rest))."""
    rows = int(layer.shape[0])
    cols = math.prod(int(d) for d in layer.shape[1:])
    # the file stores CSC positions of the 2-D view; the runtime takes row-major ones
    col, row = np.divmod(np.asarray(layer.positions, np.int64), rows)
    return from_positions((rows, cols), row * cols + col, layer.indices, layer.codebook)


def _square(op: dict, key: str, default: int, where: str) -> int:
    """An int parameter given as v or [v, v] (PyTorch-style pairs; only square ones are supported)."""
    value = op.get(key, default)
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise ModelError(f"{where}: {key} {value!r} is not supported (only equal height and width)")
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ModelError(f"{where}: {key} must be an integer or a pair of equal integers, got {value!r}")
    return value


class Flatten:
    """(N, ...) -> (N, prod(...))."""

    name = "flatten"

    def out_shape(self, shape: tuple) -> tuple:
        """Per-sample output shape for a per-sample input shape."""
        return (math.prod(shape),)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Apply to a batch."""
        return x.reshape(x.shape[0], -1)


class Relu:
    """max(x, 0), in place."""

    name = "relu"

    def out_shape(self, shape: tuple) -> tuple:
        """Per-sample output shape for a per-sample input shape."""
        return shape

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Apply to a batch (overwrites it)."""
        return np.maximum(x, 0.0, out=x)


class MaxPool:
    """2-D max pooling over (N, C, H, W), square window, no padding, floor mode (PyTorch's defaults)."""

    name = "maxpool"

    def __init__(self, kernel: int, stride: int, where: str):
        if kernel < 1 or stride < 1:
            raise ModelError(f"{where}: kernel and stride must be >= 1, got {kernel} and {stride}")
        self.kernel, self.stride, self.where = kernel, stride, where

    def out_shape(self, shape: tuple) -> tuple:
        """Per-sample output shape for a per-sample input shape."""
        if len(shape) != 3 or min(shape[1:]) < self.kernel:
            raise ModelError(f"{self.where}: needs a (C, H, W) input of at least {self.kernel}x{self.kernel}, "
                             f"gets {shape}")
        c, h, w = shape
        return (c, (h - self.kernel) // self.stride + 1, (w - self.kernel) // self.stride + 1)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Apply to a batch."""
        k, s = self.kernel, self.stride
        ho, wo = (x.shape[2] - k) // s + 1, (x.shape[3] - k) // s + 1
        # k*k element-wise maxima of strided views: numpy's reduction over window axes (reshape or
        # sliding_window_view, then max) took 310 us on LeNet-5's first pooling at batch 1, this 10 us
        out = None
        for i in range(k):
            for j in range(k):
                view = x[:, :, i:i + s * (ho - 1) + 1:s, j:j + s * (wo - 1) + 1:s]
                out = view.copy() if out is None else np.maximum(out, view, out=out)
        return out


class Fc:
    """A fully connected layer on its sparse runtime layout; batch 1 goes straight to the matvec kernel."""

    name = "fc"

    def __init__(self, layer: SparseLinear, layer_name: str, where: str):
        self.layer, self.layer_name, self.where = layer, layer_name, where

    def out_shape(self, shape: tuple) -> tuple:
        """Per-sample output shape for a per-sample input shape."""
        if shape != (self.layer.in_features,):
            raise ModelError(f"{self.where}: layer {self.layer_name!r} takes {self.layer.in_features} inputs, "
                             f"gets shape {shape} (a flatten op may be missing)")
        return (self.layer.out_features,)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Apply to a batch."""
        if x.shape[0] == 1:
            y = self.layer.bias.copy()
            self.layer.layout.matvec(np.ascontiguousarray(x[0]), y)
            return y.reshape(1, -1)
        return self.layer(x)


class Conv:
    """A 2-D convolution, dense-decoded or sparse as SparseConv2d's policy chose."""

    name = "conv"

    def __init__(self, conv: SparseConv2d, layer_name: str, where: str):
        self.conv, self.layer_name, self.where = conv, layer_name, where

    def out_shape(self, shape: tuple) -> tuple:
        """Per-sample output shape for a per-sample input shape."""
        out_c, in_c, kh, kw = self.conv.kernel_shape
        p, s = self.conv.padding, self.conv.stride
        if len(shape) != 3 or shape[0] != in_c or shape[1] + 2 * p < kh or shape[2] + 2 * p < kw:
            raise ModelError(f"{self.where}: layer {self.layer_name!r} needs ({in_c}, H, W) inputs of at "
                             f"least {kh}x{kw} after padding {p}, gets {shape}")
        return (out_c, (shape[1] + 2 * p - kh) // s + 1, (shape[2] + 2 * p - kw) // s + 1)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Apply to a batch."""
        return self.conv(x)


def _layer_for(op: dict, kind: str, layers: dict, where: str):
    name = op.get("layer")
    if not isinstance(name, str):
        raise ModelError(f"{where}: a {kind} op must name its layer")
    layer = layers.get(name)
    if layer is None:
        raise ModelError(f"{where}: layer {name!r} is not in the file (it has {', '.join(layers) or 'none'})")
    if layer.kind != kind:
        raise ModelError(f"{where}: layer {name!r} is a {layer.kind} layer, not {kind}")
    return name, layer


def build_op(op, index: int, layers: dict, batch: int, threads: int = 1):
    """The runnable op for one entry of meta['ops'], its layer prepared for `batch`-sized inputs and
    run on `threads` threads."""
    where = f"op {index}"
    if not isinstance(op, dict) or not isinstance(op.get("op"), str):
        raise ModelError(f"{where}: expected an object with an 'op' name, got {op!r}")
    kind = op["op"]
    where = f"op {index} ({kind})"
    if kind == "flatten":
        return Flatten()
    if kind == "relu":
        return Relu()
    if kind == "maxpool":
        kernel = _square(op, "kernel", _square(op, "k", 0, where), where)
        if _square(op, "padding", 0, where) != 0:
            raise ModelError(f"{where}: padded max pooling is not supported")
        return MaxPool(kernel, _square(op, "stride", kernel, where), where)
    if kind == "fc":
        name, layer = _layer_for(op, "fc", layers, where)
        linear = SparseLinear.from_nonzeros(nonzeros_of(layer), layer.bias, batch=batch, threads=threads)
        return Fc(linear, name, where)
    if kind == "conv":
        name, layer = _layer_for(op, "conv", layers, where)
        stride, padding = _square(op, "stride", 1, where), _square(op, "padding", 0, where)
        if stride < 1 or padding < 0:
            raise ModelError(f"{where}: stride must be >= 1 and padding >= 0, got {stride} and {padding}")
        conv = SparseConv2d(nonzeros_of(layer), layer.shape, layer.bias, stride, padding, threads=threads)
        return Conv(conv, name, where)
    raise ModelError(f"{where}: unsupported op {kind!r}; the runtime runs {', '.join(SUPPORTED)}")


def build_ops(ops, layers: dict, input_shape: tuple, batch: int, threads: int = 1) -> tuple[list, tuple]:
    """The runnable ops of meta['ops'] and the per-sample output shape; ModelError if they cannot run."""
    if not isinstance(ops, list) or not ops:
        raise ModelError("the file describes no forward pass (meta 'ops' is missing or empty): "
                         "it stores weights only")
    built, shape = [], tuple(input_shape)
    for index, op in enumerate(ops):
        runnable = build_op(op, index, layers, batch, threads)
        shape = runnable.out_shape(shape)
        built.append(runnable)
    return built, shape
