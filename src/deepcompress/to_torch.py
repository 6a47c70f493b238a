"""Back to PyTorch: a .dcz file as an nn.Module with the decoded weights, running the file's forward pass
(docs/FORMAT.md section 4.1) with torch ops, so a compressed model can be deployed with the usual tools
(torch.export, TorchScript, ONNX).

    model = decompress("model.dcz")       # eval mode; model(x) matches deepcompress.runtime.load(...)(x)
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import format as dcz
from .errors import UserError
from .format import graph


class Held(nn.Module):
    """A parameter op's value (the layer's values, or its first `rows` rows), one sample (1, *shape), as a
    parameter; calling it returns it."""

    def __init__(self, values: torch.Tensor, shape: tuple):
        super().__init__()
        self.value = nn.Parameter(values.reshape(-1)[:math.prod(shape)].reshape(1, *shape))

    def forward(self) -> torch.Tensor:
        """The value (batch 1: arithmetic broadcasts it over the batch)."""
        return self.value


def _module(layer: dcz.QuantizedLayer, op: graph.Op) -> nn.Module:
    """An nn.Linear, nn.Conv1d, nn.Conv2d or nn.Embedding holding the layer's decoded weights and bias (or,
    for a parameter op, the value it holds)."""
    if isinstance(op, graph.Parameter):
        return Held(torch.from_numpy(layer.to_dense()), op.shape)
    if isinstance(op, graph.Embedding):
        m = nn.Embedding(*layer.shape, padding_idx=op.padding_idx)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(layer.to_dense()))
        return m
    weight = torch.from_numpy(layer.to_dense())
    if isinstance(op, graph.Fc):
        m = nn.Linear(layer.shape[1], layer.shape[0], bias=layer.bias is not None)
    elif isinstance(op, graph.Conv1d):
        out_c, in_per_group, _, k = layer.shape
        m = nn.Conv1d(in_per_group * op.groups, out_c, k, op.stride, 0, op.dilation, op.groups,
                      bias=layer.bias is not None)
        weight = weight.reshape(m.weight.shape)
    else:
        out_c, in_per_group, kh, kw = layer.shape
        m = nn.Conv2d(in_per_group * op.groups, out_c, (kh, kw), op.stride, 0, op.dilation, op.groups,
                      bias=layer.bias is not None)
    with torch.no_grad():
        m.weight.copy_(weight)
        if layer.bias is not None:
            m.bias.copy_(torch.from_numpy(layer.bias))
    return m


RECURRENT = {graph.Lstm: nn.LSTM, graph.Gru: nn.GRU}


def _recurrent(op: graph.Recurrent, layers: dict) -> nn.Module:
    """An nn.LSTM or nn.GRU (batch_first) holding the decoded weights of the op's layers; a matrix the file
    stores without a bias gets a zero one when others have one (PyTorch's bias is all or none)."""
    names = [n for pair in graph.weight_names(op.layer, op.num_layers, op.bidirectional) for n in pair]
    has_bias = any(layers[n].bias is not None for n in names)
    w_ih, w_hh = layers[names[0]], layers[names[1]]
    m = RECURRENT[type(op)](w_ih.shape[1], w_hh.shape[1], op.num_layers, bias=has_bias, batch_first=True,
                            bidirectional=op.bidirectional)
    with torch.no_grad():
        for name in names:
            attr = name[len(op.layer) + 1:]
            getattr(m, attr).copy_(torch.from_numpy(layers[name].to_dense()))
            if has_bias:
                bias = layers[name].bias
                getattr(m, attr.replace("weight", "bias")).copy_(
                    torch.from_numpy(bias) if bias is not None else torch.zeros(layers[name].shape[0]))
    return m


def _run_recurrent(op: graph.Recurrent, m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out, state = m(x)
    if op.output == "sequence":
        return out
    if isinstance(op, graph.Lstm):
        state = state[0] if op.output == "h_n" else state[1]
    return state[op.index]


def _pool(op: graph.Pool, x: torch.Tensor) -> torch.Tensor:
    if isinstance(op, graph.MaxPool):
        return F.max_pool2d(x, op.kernel, op.stride, op.padding, ceil_mode=op.ceil_mode)
    return F.avg_pool2d(x, op.kernel, op.stride, op.padding, op.ceil_mode, op.count_include_pad)


ACTIVATIONS = {graph.Relu: F.relu, graph.Relu6: F.relu6, graph.Sigmoid: torch.sigmoid, graph.Tanh: torch.tanh,
               graph.Silu: F.silu, graph.Hardswish: F.hardswish, graph.Hardsigmoid: F.hardsigmoid,
               graph.Mish: F.mish}


def _apply(op: graph.Op, xs: list, layer: nn.Module | None) -> torch.Tensor:
    """One op on batched tensors."""
    if isinstance(op, graph.Parameter):
        return layer()
    x = xs[0]
    if isinstance(op, graph.Conv):
        top, bottom, left, right = op.padding
        padded = F.pad(x, (left, right, top, bottom)) if any(op.padding) else x
        return F.conv2d(padded, layer.weight, layer.bias, op.stride, 0, op.dilation, op.groups)
    if isinstance(op, (graph.Fc, graph.Embedding)):  # one module for a layer both ops read (tied weights)
        if isinstance(op, graph.Fc) and isinstance(layer, nn.Embedding):
            return F.linear(x, layer.weight)
        if isinstance(op, graph.Embedding) and isinstance(layer, nn.Linear):
            return F.embedding(x, layer.weight)
        return layer(x)
    if isinstance(op, graph.Recurrent):
        return _run_recurrent(op, layer, x)
    if isinstance(op, graph.Select):
        return x.select(op.dim % (x.dim() - 1) + 1, op.index)
    if isinstance(op, graph.Slice):
        return x[(slice(None),) * (op.dim % (x.dim() - 1) + 1) + (slice(op.start, op.stop),)]
    if type(op) in ACTIVATIONS:
        return ACTIVATIONS[type(op)](x)
    simple = {
        graph.LeakyRelu: lambda: F.leaky_relu(x, op.negative_slope),
        graph.Gelu: lambda: F.gelu(x, approximate=op.approximate),
        graph.Elu: lambda: F.elu(x, op.alpha),
        graph.Softplus: lambda: F.softplus(x, op.beta, op.threshold),
        graph.Prelu: lambda: F.prelu(x, torch.tensor(op.slope)),
        graph.GroupNorm: lambda: F.group_norm(x, op.groups, torch.tensor(op.weight), torch.tensor(op.bias), op.eps),
        graph.Softmax: lambda: F.softmax(x, dim=op.dim % (x.dim() - 1) + 1),
        graph.LogSoftmax: lambda: F.log_softmax(x, dim=op.dim % (x.dim() - 1) + 1),
        graph.AdaptiveAvgPool: lambda: F.adaptive_avg_pool2d(x, op.output_size),
        graph.Upsample: lambda: F.interpolate(x, scale_factor=op.scale, mode="nearest"),
        graph.Flatten: lambda: x.flatten(1),
        graph.Reshape: lambda: x.reshape(x.shape[0], *op.shape),
        graph.Permute: lambda: x.permute(0, *(d + 1 for d in op.dims)),
        graph.Affine: lambda: (x * torch.tensor(op.scale).reshape(-1, *[1] * (x.dim() - 2))
                               + torch.tensor(op.shift).reshape(-1, *[1] * (x.dim() - 2))),
        graph.LayerNorm: lambda: F.layer_norm(x, (len(op.weight),), torch.tensor(op.weight), torch.tensor(op.bias),
                                              op.eps),
        graph.Concat: lambda: _concat(xs, op.dim % (x.dim() - 1) + 1),
    }
    if type(op) in simple:
        return simple[type(op)]()
    if isinstance(op, graph.Pool):
        return _pool(op, x)
    if isinstance(op, (graph.Add, graph.Mul)):
        a, b = (_aligned(t, max(xs[0].dim(), xs[1].dim())) for t in xs)
        return a + b if isinstance(op, graph.Add) else a * b
    if type(op) in ATTN_OPS:
        return _apply_attn(op, xs, layer)
    raise UserError(f"op {op.name!r} has no PyTorch equivalent here")


SCALAR_FNS = {"add": lambda x, v: x + v, "sub": lambda x, v: x - v, "rsub": lambda x, v: v - x,
              "mul": lambda x, v: x * v, "div": lambda x, v: x / v, "rdiv": lambda x, v: v / x}
ATTN_OPS = (graph.Conv1d, graph.MatMul, graph.Scalar, graph.Sub, graph.Div, graph.Mean, graph.Amax,
            graph.CausalMask)


def _apply_attn(op: graph.Op, xs: list, layer: nn.Module | None) -> torch.Tensor:
    """One of the sequence and attention ops (format/op_records_attn.py) on batched tensors."""
    x = xs[0]
    if isinstance(op, graph.Conv1d):
        return F.conv1d(F.pad(x, op.padding), layer.weight, layer.bias, op.stride, 0, op.dilation, op.groups)
    if isinstance(op, graph.Scalar):
        return SCALAR_FNS[op.fn](x, op.value)
    if isinstance(op, graph.CausalMask):
        above = torch.ones(x.shape[-2], x.shape[-1], dtype=torch.bool, device=x.device).triu(1)
        return x.masked_fill(above, float("-inf"))
    if isinstance(op, (graph.Mean, graph.Amax)):
        dims = [d % (x.dim() - 1) + 1 for d in op.dims]
        return (x.amax if isinstance(op, graph.Amax) else x.mean)(dim=dims, keepdim=op.keepdim)
    a, b = (_aligned(t, max(xs[0].dim(), xs[1].dim())) for t in xs)
    return {graph.MatMul: torch.matmul, graph.Sub: torch.sub, graph.Div: torch.div}[type(op)](a, b)


def _concat(xs: list, dim: int) -> torch.Tensor:
    """torch.cat along `dim`; a parameter's value (batch 1) expanded to the others' batch first."""
    batch = max(t.shape[0] for t in xs)
    return torch.cat([t.expand(batch, *t.shape[1:]) for t in xs], dim=dim)


def _aligned(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """t (N, ...) with unit axes after N up to `ndim` axes (NumPy broadcasting of per-sample shapes)."""
    return t.reshape(t.shape[0], *[1] * (ndim - t.dim()), *t.shape[1:])


class Decompressed(nn.Module):
    """A .dcz file's forward pass in PyTorch; its Linear/Conv2d/Embedding/LSTM/GRU modules hold the
    decoded weights, named as in the file (dots become underscores; a recurrent op's prefix)."""

    def __init__(self, layers: list[dcz.QuantizedLayer], meta: dict):
        super().__init__()
        by_name = {layer.name: layer for layer in layers}
        try:
            self.forward_pass = graph.parse_forward(meta, by_name)
        except graph.GraphError as err:
            raise UserError(f"cannot rebuild the model: {err}") from None
        self.weights = nn.ModuleDict()
        # a layer an fc op reads (tied to an embedding) becomes an nn.Linear, with the bias the file holds
        for op in sorted(self.forward_pass.ops, key=lambda o: not isinstance(o, graph.Fc)):
            key = _key(op)
            if key is not None and key not in self.weights:
                self.weights[key] = (_recurrent(op, by_name) if isinstance(op, graph.Recurrent)
                                     else _module(by_name[op.layer], op))
        self.meta = meta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's output for a batch (N, *input_shape)."""
        values = {graph.INPUT: x}
        fp = self.forward_pass
        for i, op in enumerate(fp.ops):
            key = _key(op)
            values[i] = _apply(op, [values[j] for j in fp.inputs[i]], self.weights[key] if key else None)
        return values[len(fp.ops) - 1]


def _key(op: graph.Op) -> str | None:
    """The ModuleDict key of a weight op's layer (its file name; ModuleDict keys cannot hold dots)."""
    return op.layer.replace(".", "_") if isinstance(op, (graph.LayerOp, graph.Recurrent)) else None


def decompress(path: str | Path) -> Decompressed:
    """The model in the .dcz file at `path` as a PyTorch module in eval mode (decoded float32 weights)."""
    layers, meta = dcz.read(path)
    return Decompressed(layers, meta).eval()
