"""The forward-pass ops of a .dcz file (typed records from deepcompress.format.graph) on numpy arrays.

The format parses and shape-checks the pass once at load time; `build_ops` turns each record into a
runnable op on float32 batches of shape (N, ...). An element-wise op may overwrite its input, and does so
only when no later op reads that value (`inplace`). What each op computes: docs/FORMAT.md section 4.1.
"""

from __future__ import annotations

import numpy as np

from ..format import graph
from .errors import ModelError
from .sparse_conv import SparseConv2d
from .fused import fp32_vec, relu_inplace
from .fastexp import exp_nonpositive
from .gelu import gelu_erf
from .rowwise import layernorm_last, softmax_last
from .int_fc import IntLinear
from .ops_attn import build_attn_op
from .sparse_fc import SparseLinear


class Elementwise:
    """A function applied to every value; in place when allowed."""

    def __init__(self, fn, inplace: bool):
        self.fn, self.inplace = fn, inplace

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Apply to a batch."""
        return self.fn(x, x if self.inplace else None)


def _sigmoid(x, out=None):
    # exp of -|x| never overflows; the two halves give 1 / (1 + e^-x) and e^x / (1 + e^x)
    e = np.exp(-np.abs(x))
    return np.divide(np.where(x >= 0, 1.0, e), 1.0 + e, out=out, dtype=np.float32)


def _gelu(x, out=None, approximate="none"):
    if approximate == "tanh":
        inner = np.float32(np.sqrt(2 / np.pi)) * (x + np.float32(0.044715) * x * x * x)
        return np.multiply(0.5 * x, 1.0 + np.tanh(inner), out=out, dtype=np.float32)
    return gelu_erf(x)  # a new array even when `out` is allowed: writing into x would cost a copy


def _activation(op: graph.Op):
    """The numpy function (x, out) -> y of an activation record."""
    if isinstance(op, graph.Relu):
        return lambda x, out: np.maximum(x, 0.0, out=out)
    if isinstance(op, graph.Relu6):
        return lambda x, out: np.clip(x, 0.0, 6.0, out=out)
    if isinstance(op, graph.LeakyRelu):
        slope = np.float32(op.negative_slope)
        return lambda x, out: np.where(x >= 0, x, x * slope).astype(np.float32, copy=False)
    if isinstance(op, graph.Sigmoid):
        return _sigmoid
    if isinstance(op, graph.Tanh):
        return lambda x, out: np.tanh(x, out=out)
    if isinstance(op, graph.Gelu):
        return lambda x, out: _gelu(x, out, op.approximate)
    if isinstance(op, graph.Silu):
        return lambda x, out: np.multiply(x, _sigmoid(x), out=out)
    if isinstance(op, graph.Hardsigmoid):
        return lambda x, out: np.divide(np.clip(x + np.float32(3), 0.0, 6.0), np.float32(6), out=out)
    if isinstance(op, graph.Hardswish):
        return lambda x, out: np.divide(x * np.clip(x + np.float32(3), 0.0, 6.0), np.float32(6), out=out)
    if isinstance(op, graph.Elu):
        alpha = np.float32(op.alpha)
        return lambda x, out: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))).astype(np.float32, copy=False)
    if isinstance(op, graph.Softplus):
        return lambda x, out: _softplus(x, np.float32(op.beta), np.float32(op.threshold))
    if isinstance(op, graph.Mish):
        return lambda x, out: np.multiply(x, np.tanh(_softplus(x, np.float32(1), np.float32(20))), out=out)
    raise ModelError(f"activation {op.name!r} has no runtime function")


def _softplus(x, beta, threshold):
    """PyTorch's softplus: log(1 + exp(beta x)) / beta, x itself where beta x > threshold."""
    bx = x * beta
    soft = np.log1p(np.exp(np.minimum(bx, threshold))) / beta  # the minimum: no overflow where x is kept
    return np.where(bx > threshold, x, soft).astype(np.float32, copy=False)


def _prelu(op: graph.Prelu, ndim: int):
    slope = _per_channel(op.slope, ndim) if len(op.slope) > 1 else np.float32(op.slope[0])
    return lambda x: np.where(x >= 0, x, x * slope).astype(np.float32, copy=False)


def _group_norm(op: graph.GroupNorm, ndim: int):
    weight, bias = _per_channel(op.weight, ndim), _per_channel(op.bias, ndim)

    def run(x):
        g = x.reshape(x.shape[0], op.groups, -1)
        mean = g.mean(axis=2, keepdims=True, dtype=np.float64)
        var = np.square(g - mean).mean(axis=2, keepdims=True)
        normed = ((g - mean) / np.sqrt(var + op.eps)).astype(np.float32).reshape(x.shape)
        return normed * weight + bias
    return run


def _slice(op: graph.Slice, ndim: int):
    """The positions op.start .. op.stop - 1 of its axis of a batch of `ndim` axes, copied."""
    index = (slice(None),) * (op.dim % (ndim - 1) + 1) + (slice(op.start, op.stop),)
    return lambda x: np.ascontiguousarray(x[index])  # a copy: an in-place op after it must not write x


def _pad_to_windows(x, kernel, stride, padding, out_hw, fill):
    """x (N, C, H, W) padded with `fill` so that out_hw windows fit: `padding` before, as much as needed
    (ceil mode) after; cropped where floor mode leaves rows unused."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    need_h, need_w = (out_hw[0] - 1) * sh + kh, (out_hw[1] - 1) * sw + kw
    after_h, after_w = max(need_h - x.shape[2] - ph, 0), max(need_w - x.shape[3] - pw, 0)
    padded = np.pad(x, ((0, 0), (0, 0), (ph, after_h), (pw, after_w)), constant_values=fill)
    return padded[:, :, :need_h, :need_w]


def _window_reduce(xp, kernel, stride, out_hw, reduce):
    """Reduce kh*kw strided views of xp element-wise (max or add): numpy's reduction over window axes
    (reshape or sliding_window_view, then max) took 310 us on LeNet-5's first pooling at batch 1, this 10 us."""
    (kh, kw), (sh, sw), (ho, wo) = kernel, stride, out_hw
    out = None
    for i in range(kh):
        for j in range(kw):
            view = xp[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
            out = view.copy() if out is None else reduce(out, view, out=out)
    return out


def _counted(op: graph.AvgPool, hw: tuple, out_hw: tuple) -> np.ndarray:
    """1 where a padded grid position counts towards an average's divisor: inside the input or, with
    count_include_pad, inside its padding; never beyond the padding (a ceil-mode window's overhang)."""
    (kh, kw), (sh, sw), (ph, pw), (h, w) = op.kernel, op.stride, op.padding, hw
    rows, cols = np.arange((out_hw[0] - 1) * sh + kh), np.arange((out_hw[1] - 1) * sw + kw)
    if op.count_include_pad:
        rows_ok, cols_ok = rows < h + 2 * ph, cols < w + 2 * pw
    else:
        rows_ok, cols_ok = (rows >= ph) & (rows < ph + h), (cols >= pw) & (cols < pw + w)
    return (rows_ok[:, None] & cols_ok[None, :]).astype(np.float32)[None, None]


class Pool:
    """Max or average pooling over (N, C, H, W) with PyTorch's padding and ceil-mode rules."""

    def __init__(self, op: graph.Pool, in_shape: tuple, out_shape: tuple):
        self.op, self.out_hw = op, tuple(out_shape[1:])
        if isinstance(op, graph.AvgPool):
            self.divisor = _window_reduce(_counted(op, in_shape[1:], self.out_hw), op.kernel, op.stride,
                                          self.out_hw, np.add)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Apply to a batch."""
        op = self.op
        if isinstance(op, graph.MaxPool):
            xp = _pad_to_windows(x, op.kernel, op.stride, op.padding, self.out_hw, -np.inf)
            return _window_reduce(xp, op.kernel, op.stride, self.out_hw, np.maximum)
        xp = _pad_to_windows(x, op.kernel, op.stride, op.padding, self.out_hw, 0.0)
        total = _window_reduce(xp, op.kernel, op.stride, self.out_hw, np.add)
        return np.divide(total, self.divisor, out=total)


class AdaptiveAvgPool:
    """Mean over PyTorch's adaptive bins of (N, C, H, W)."""

    def __init__(self, out_hw: tuple):
        self.out_hw = out_hw

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Apply to a batch."""
        (oh, ow), (h, w) = self.out_hw, x.shape[2:]
        out = np.empty((*x.shape[:2], oh, ow), np.float32)
        for i in range(oh):
            r0, r1 = i * h // oh, -(-(i + 1) * h // oh)
            for j in range(ow):
                c0, c1 = j * w // ow, -(-(j + 1) * w // ow)
                out[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3), dtype=np.float32)
        return out


F32 = np.dtype(np.float32)


class Fc:
    """A fully connected layer on its sparse runtime layout; batch 1 goes straight to the matvec kernel."""

    name = "fc"

    def __init__(self, layer: SparseLinear, layer_name: str, where: str):
        self.layer, self.layer_name, self.where = layer, layer_name, where

    def __call__(self, x: np.ndarray, relu: bool = False) -> np.ndarray:
        """Apply to a batch (N, in), or to every vector along the last axis of (N, ..., in); with `relu`
        the ReLU of the result (a following Relu op fused in, chain.py)."""
        if x.ndim > 2:
            y = self(np.ascontiguousarray(x.reshape(-1, x.shape[-1])), relu)
            return y.reshape(*x.shape[:-1], -1)
        if x.shape[0] != 1:
            y = self.layer(x)
            return np.maximum(y, 0.0, out=y) if relu else y
        if x.dtype is not F32 or not x.flags.c_contiguous:  # `is`: 0.2 us less than ==; a miss only copies
            x = np.ascontiguousarray(x, dtype=np.float32)
        layer = self.layer
        if isinstance(layer, IntLinear):
            y = np.empty((1, layer.out_features), np.float32)
            layer.matvec(x[0], y[0], relu)
            return y
        if layer.threads == 1:
            return fp32_vec(layer.layout, layer.bias, x, relu)
        y = layer(x[0]).reshape(1, -1)  # the layer sets numba's thread count around the threaded matvec
        if relu:
            relu_inplace(y[0])
        return y


class Conv:
    """A 2-D convolution, dense-decoded or sparse as SparseConv2d's policy chose; with `one_d` a 1-D one
    (N, C, L) run as a height-1 2-D one."""

    name = "conv"

    def __init__(self, conv: SparseConv2d, layer_name: str, where: str, one_d: bool = False):
        self.conv, self.layer_name, self.where, self.one_d = conv, layer_name, where, one_d

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Apply to a batch."""
        if self.one_d:
            return self.conv(x[:, :, None, :])[:, :, 0, :]
        return self.conv(x)


def _per_channel(values, ndim: int) -> np.ndarray:
    """A (C,) vector shaped to broadcast over (N, C, ...) of `ndim` axes."""
    return np.asarray(values, np.float32).reshape(-1, *([1] * (ndim - 2)))


def _batch_aligned(x: np.ndarray, ndim: int) -> np.ndarray:
    """x (N, ...) with unit axes after N so that it has `ndim` axes (NumPy broadcasting of per-sample shapes)."""
    return x.reshape(x.shape[0], *([1] * (ndim - x.ndim)), *x.shape[1:])


def _layernorm(op: graph.LayerNorm):
    weight, bias = np.asarray(op.weight, np.float32), np.asarray(op.bias, np.float32)
    return lambda x: layernorm_last(x, weight, bias, op.eps)


def _softmax(axis: int, last: bool, inplace: bool):
    if last:
        return softmax_last  # one compiled pass per row (rowwise.py)

    def run(x):
        e = np.subtract(x, x.max(axis=axis, keepdims=True), out=x if inplace and x.dtype == F32 else None,
                        dtype=np.float32)
        e = exp_nonpositive(e)  # e <= 0 after subtracting the maximum
        e /= e.sum(axis=axis, keepdims=True, dtype=np.float32)
        return e
    return run


def _log_softmax(axis: int):
    def run(x):
        shifted = np.subtract(x, x.max(axis=axis, keepdims=True), dtype=np.float32)
        return shifted - np.log(exp_nonpositive(shifted).sum(axis=axis, keepdims=True, dtype=np.float32))
    return run


def _binary(fn):
    def run(a, b):
        ndim = max(a.ndim, b.ndim)
        return fn(_batch_aligned(a, ndim), _batch_aligned(b, ndim)).astype(np.float32, copy=False)
    return run


def _concat(axis: int):
    """Inputs joined along `axis`; a parameter's value (batch 1) broadcast to the others' batch first."""
    def run(*xs):
        batch = max(len(x) for x in xs)
        return np.concatenate([np.broadcast_to(x, (batch, *x.shape[1:])) for x in xs], axis=axis)
    return run


def build_op(op: graph.Op, layers: dict, forward: graph.ForwardPass, i: int, inplace: bool, batch: int,
             threads: int = 1, precision: str = "fp32", shared: dict | None = None):
    """The runnable op for record i of the pass, its layer prepared for `batch`-sized inputs and run on
    `threads` threads, FC layers in `precision` (convolutions stay fp32); `inplace` allows it to overwrite
    its input. `shared` (one dict for every op of the pass) lets the records of one LSTM/GRU call share
    its run."""
    where = f"op {i} ({op.name})"
    if isinstance(op, graph.Parameter):  # it has no input
        from .recurrent import build_sequence_op
        return build_sequence_op(op, layers, forward, i, batch, threads, precision, where, shared)
    in_shape = forward.input_shapes(i)[0]
    if isinstance(op, graph.Fc):
        layer = layers[op.layer]
        rows = batch * int(np.prod(in_shape[:-1]))  # a sequence's positions share the weights like a batch
        fc = SparseLinear.from_layer(layer, layer.bias, batch=rows, threads=threads, precision=precision)
        return Fc(fc, op.layer, where)
    if isinstance(op, graph.Conv):
        layer = layers[op.layer]
        conv = SparseConv2d(layer, layer.shape, layer.bias, op.stride, op.padding, threads=threads,
                            dilation=op.dilation, groups=op.groups)
        return Conv(conv, op.layer, where)
    if isinstance(op, graph.Conv1d):
        layer = layers[op.layer]
        conv = SparseConv2d(layer, layer.shape, layer.bias, (1, op.stride), (0, 0, *op.padding), threads=threads,
                            dilation=(1, op.dilation), groups=op.groups)
        return Conv(conv, op.layer, where, one_d=True)
    if isinstance(op, graph.Prelu):
        return _prelu(op, len(in_shape) + 1)
    if isinstance(op, graph.Activation):
        return Elementwise(_activation(op), inplace)
    if isinstance(op, graph.GroupNorm):
        return _group_norm(op, len(in_shape) + 1)
    if isinstance(op, graph.Slice):
        return _slice(op, len(in_shape) + 1)
    if isinstance(op, graph.Pool):
        return Pool(op, in_shape, forward.outputs[i])
    if isinstance(op, graph.AdaptiveAvgPool):
        return AdaptiveAvgPool(op.output_size)
    if isinstance(op, graph.Upsample):
        sh, sw = op.scale
        return lambda x: x.repeat(sh, axis=2).repeat(sw, axis=3)
    if isinstance(op, graph.Flatten):
        return lambda x: x.reshape(x.shape[0], -1)
    if isinstance(op, graph.Reshape):
        return lambda x: x.reshape(x.shape[0], *op.shape)  # -1 where it holds a variable length
    if isinstance(op, graph.Permute):
        return lambda x: np.ascontiguousarray(x.transpose(0, *(d + 1 for d in op.dims)))
    if isinstance(op, graph.Softmax):
        return _softmax(op.dim % len(in_shape) + 1, op.dim % len(in_shape) == len(in_shape) - 1, inplace)
    if isinstance(op, graph.LogSoftmax):
        return _log_softmax(op.dim % len(in_shape) + 1)
    if isinstance(op, graph.Affine):
        scale, shift = _per_channel(op.scale, len(in_shape) + 1), _per_channel(op.shift, len(in_shape) + 1)
        return lambda x: x * scale + shift
    if isinstance(op, graph.LayerNorm):
        return _layernorm(op)
    if isinstance(op, graph.Add):
        return _binary(np.add)
    if isinstance(op, graph.Mul):
        return _binary(np.multiply)
    if isinstance(op, graph.Concat):
        return _concat(op.dim % len(in_shape) + 1)
    if isinstance(op, (graph.Embedding, graph.Recurrent, graph.Select)):
        from .recurrent import build_sequence_op  # it imports this module's helpers
        return build_sequence_op(op, layers, forward, i, batch, threads, precision, where, shared)
    attn = build_attn_op(op, forward, i, inplace)
    if attn is not None:
        return attn
    raise ModelError(f"{where}: op {op.name!r} is defined by the format but the runtime cannot run it")


def build_ops(meta: dict, layers: dict, batch: int, threads: int = 1, precision: str = "fp32",
              input_shape: tuple | None = None, weight_ops: list | None = None) -> tuple[list, graph.ForwardPass]:
    """The runnable ops of the file's forward pass and the parsed pass; ModelError if they cannot run.
    `input_shape` builds them for inputs of another length on the file's variable axes, reusing the ops
    of the weight layers in `weight_ops` (the stored shape's ops) instead of preparing those again."""
    try:
        forward = graph.parse_forward(meta, layers, input_shape)
    except graph.GraphError as err:
        raise ModelError(str(err)) from None
    overwritable = _overwritable(forward)
    shared: dict = {}
    built = [weight_ops[i] if weight_ops is not None and _holds_weights(op)
             else build_op(op, layers, forward, i, overwritable[i], batch, threads, precision, shared)
             for i, op in enumerate(forward.ops)]
    return built, forward


def _holds_weights(op: graph.Op) -> bool:
    """Whether the op runs a weight layer (its runnable op depends on the input shape for tuning only)."""
    return isinstance(op, (graph.LayerOp, graph.Recurrent))


VIEWS = (graph.Flatten, graph.Reshape, graph.Permute)  # their outputs may share memory with their input


def _overwritable(forward: graph.ForwardPass) -> list[bool]:
    """Per op: whether it may write its result into its input's memory. Views share memory with their
    input, so reads are counted per underlying buffer: in place only when this op is the buffer's one
    reader (a view's own read does not count) and the buffer is not the model's output. The model's
    input is a private copy (CompressedModel.prepare), so it may be overwritten too."""
    buffer = {graph.INPUT: graph.INPUT}
    for i, op in enumerate(forward.ops):
        buffer[i] = buffer[forward.inputs[i][0]] if isinstance(op, VIEWS) else i
    reads: dict[int, int] = {}
    for i, op in enumerate(forward.ops):
        if not isinstance(op, VIEWS):
            for j in forward.inputs[i]:
                reads[buffer[j]] = reads.get(buffer[j], 0) + 1
    last = buffer[len(forward.ops) - 1]
    reads[last] = reads.get(last, 0) + 1
    return [len(src) == 1 and reads[buffer[src[0]]] == 1 for src in forward.inputs]
