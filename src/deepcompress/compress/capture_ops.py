"""One captured torch.fx node or module as the file's op records (deepcompress.format.graph), or a refusal
(`Unsupported`, naming the module and what to do): the per-node half of capture.py."""

from __future__ import annotations

import math
import operator

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from ..format import graph
from .capture_base import SKIP, node_shape, number_value, refuse, sample_dim, tensor_inputs
from .capture_layers import (INSTANCE_NORMS, adaptive_op, affine_op, global_max_op, interpolate_op, layernorm_op,
                             norm_op, one_d_pool_op, pool_op, upsample_op)
from .capture_seq import embedding_op


def conv_padding(module: nn.Conv2d) -> tuple:
    """(top, bottom, left, right) of a Conv2d, "same" resolved as PyTorch does (extra padding at the end)."""
    if module.padding == "valid":
        return (0, 0, 0, 0)
    if module.padding == "same":
        out = []
        for k, d in zip(module.kernel_size, module.dilation):
            total = d * (k - 1)
            out += [total // 2, total - total // 2]
        return tuple(out)
    ph, pw = module.padding
    return (ph, ph, pw, pw)


ZERO_PADS = (nn.ZeroPad1d, nn.ZeroPad2d)


def zero_padding(node: torch.fx.Node, modules: dict, where: str) -> tuple | None:
    """The padding a ZeroPad1d/2d or F.pad(x, pad) with zeros adds before the convolutions that alone read
    it, in the file's order ((left, right), or (top, bottom, left, right)); None for any other node.
    Zero padding read by anything else, or cropping, is refused: the file has no padding op."""
    if node.op == "call_module" and isinstance(modules[node.target], ZERO_PADS):
        pad = tuple(modules[node.target].padding)
    elif node.op == "call_function" and node.target is F.pad:
        pad = tuple(node.args[1] if len(node.args) > 1 else node.kwargs.get("pad", ()))
        mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
        value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else None)
        if mode != "constant" or value not in (None, 0):
            refuse(where, f"F.pad with mode={mode!r}, value={value!r}", "pad with zeros right before a convolution")
    else:
        return None
    conv = nn.Conv1d if len(pad) == 2 else nn.Conv2d
    readers = [u for u in node.users if u.op == "call_module" and type(modules[u.target]) is conv]
    if len(pad) not in (2, 4) or min(pad) < 0 or not node.users or len(readers) != len(node.users):
        refuse(where, f"zero padding {list(pad)} read by {', '.join(sorted(u.name for u in node.users)) or 'nothing'}",
               f"the file merges zero padding into the {conv.__name__} that alone reads it; it has no padding op")
    return pad if len(pad) == 2 else (pad[2], pad[3], pad[0], pad[1])


def _conv(name: str, m: nn.Conv2d):
    if m.padding_mode != "zeros":
        refuse(name, f"Conv2d(padding_mode={m.padding_mode!r})", "use zero padding")
    return graph.Conv(layer=name, stride=tuple(m.stride), padding=conv_padding(m), dilation=tuple(m.dilation),
                      groups=m.groups)


def _conv1d(name: str, m: nn.Conv1d):
    if m.padding_mode != "zeros":
        refuse(name, f"Conv1d(padding_mode={m.padding_mode!r})", "use zero padding")
    if m.padding == "valid":
        padding = (0, 0)
    elif m.padding == "same":  # as PyTorch: the odd unit of padding goes at the end
        total = m.dilation[0] * (m.kernel_size[0] - 1)
        padding = (total // 2, total - total // 2)
    else:
        padding = (m.padding[0], m.padding[0])
    return graph.Conv1d(layer=name, stride=m.stride[0], padding=padding, dilation=m.dilation[0], groups=m.groups)


def glu(where: str, dim, in_shape: tuple) -> list:
    """GLU over `dim` of the batched tensor: the first half times the sigmoid of the second, as a chain
    of slices, sigmoid and mul reading the node's input (None)."""
    axis = sample_dim(dim, where, "GLU")
    half = in_shape[axis] // 2  # even: PyTorch refuses to halve an odd axis, so the model ran
    return [(graph.Slice(axis, 0, half), (None,)), (graph.Slice(axis, half, None), (None,)),
            (graph.Sigmoid(), (1,)), (graph.Mul(), (0, 2))]


ATTENTION_MODULES = (nn.TransformerDecoderLayer, nn.TransformerDecoder, nn.Transformer)  # cross-attention
ACTIVATIONS = {nn.ReLU: graph.Relu, nn.ReLU6: graph.Relu6, nn.Sigmoid: graph.Sigmoid, nn.Tanh: graph.Tanh,
               nn.SiLU: graph.Silu, nn.Hardswish: graph.Hardswish, nn.Hardsigmoid: graph.Hardsigmoid,
               nn.Mish: graph.Mish}


def module_op(name: str, m: nn.Module, in_shape: tuple):
    """The op record (or SKIP) of a called submodule; Unsupported naming it otherwise."""
    if isinstance(m, nn.Linear):
        return graph.Fc(layer=name)
    if isinstance(m, nn.Conv2d):
        return _conv(name, m)
    if isinstance(m, nn.Conv1d):
        return _conv1d(name, m)
    if isinstance(m, ATTENTION_MODULES):
        refuse(name, type(m).__name__, "the file describes self-attention only (nn.MultiheadAttention, "
               "nn.TransformerEncoder, batch_first=True): write cross-attention with Linear layers, torch.matmul "
               "(or @) and softmax (docs/API.md)")
    if type(m) in ACTIVATIONS:
        return ACTIVATIONS[type(m)]()
    if isinstance(m, nn.LeakyReLU):
        return graph.LeakyRelu(float(m.negative_slope))
    if isinstance(m, nn.GELU):
        return graph.Gelu(m.approximate)
    if isinstance(m, nn.ELU):
        return graph.Elu(float(m.alpha))
    if isinstance(m, nn.Softplus):
        return graph.Softplus(float(m.beta), float(m.threshold))
    if isinstance(m, nn.PReLU):
        return graph.Prelu(tuple(m.weight.detach().reshape(-1).tolist()))
    if isinstance(m, nn.GLU):
        return glu(name, m.dim, in_shape)
    if isinstance(m, (nn.Softmax, nn.LogSoftmax)):
        op = graph.Softmax if isinstance(m, nn.Softmax) else graph.LogSoftmax
        return op(sample_dim(m.dim, name, op.name))
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        return pool_op(name, m)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return adaptive_op(name, m, in_shape[1:])
    if isinstance(m, nn.AdaptiveMaxPool2d):
        return global_max_op(name, m, in_shape[1:])
    if isinstance(m, nn.Flatten):
        return graph.Flatten() if (m.start_dim, m.end_dim) == (1, -1) else "reshape"
    if isinstance(m, nn.Unflatten):
        return "reshape"
    if isinstance(m, (nn.Dropout, nn.Identity)):
        return SKIP
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return affine_op(name, m)
    if isinstance(m, nn.LayerNorm):
        return layernorm_op(name, m)
    if isinstance(m, (nn.GroupNorm, *INSTANCE_NORMS)):
        return norm_op(name, m, in_shape)
    if isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d)):
        return one_d_pool_op(name, m)
    if isinstance(m, nn.Upsample):
        return upsample_op(name, type(m).__name__, m.mode, m.size, m.scale_factor, in_shape)
    if isinstance(m, nn.Embedding):
        return embedding_op(name, m, refuse)
    refuse(name, f"{type(m).__name__} ({m!r})" if len(repr(m)) < 80 else type(m).__name__,
            "see docs/API.md for the supported layers")


FUNCTION_MODULES = {F.max_pool2d: nn.MaxPool2d, F.avg_pool2d: nn.AvgPool2d, F.adaptive_avg_pool2d: nn.AdaptiveAvgPool2d,
                    F.adaptive_max_pool2d: nn.AdaptiveMaxPool2d, F.relu6: nn.ReLU6, F.leaky_relu: nn.LeakyReLU,
                    F.gelu: nn.GELU, F.elu: nn.ELU, F.softplus: nn.Softplus, F.glu: nn.GLU,
                    F.adaptive_avg_pool1d: nn.AdaptiveAvgPool1d, F.adaptive_max_pool1d: nn.AdaptiveMaxPool1d}
ELEMENTWISE = {F.relu: graph.Relu, torch.relu: graph.Relu, torch.sigmoid: graph.Sigmoid, F.sigmoid: graph.Sigmoid,
               torch.tanh: graph.Tanh, F.tanh: graph.Tanh, F.silu: graph.Silu, F.hardswish: graph.Hardswish,
               F.hardsigmoid: graph.Hardsigmoid, F.mish: graph.Mish, "relu": graph.Relu,
               "sigmoid": graph.Sigmoid, "tanh": graph.Tanh}
ARITHMETIC = {operator.add: "add", torch.add: "add", "add": "add", operator.iadd: "add",
              operator.sub: "sub", torch.sub: "sub", "sub": "sub", operator.isub: "sub",
              operator.mul: "mul", torch.mul: "mul", "mul": "mul", operator.imul: "mul",
              operator.truediv: "div", torch.div: "div", "div": "div", operator.itruediv: "div",
              torch.true_divide: "div", "true_divide": "div"}
ALONG_AXIS = {F.softmax: graph.Softmax, torch.softmax: graph.Softmax, "softmax": graph.Softmax,
              F.log_softmax: graph.LogSoftmax, torch.log_softmax: graph.LogSoftmax, "log_softmax": graph.LogSoftmax}
TWO_TENSORS = {"add": graph.Add, "sub": graph.Sub, "mul": graph.Mul, "div": graph.Div}
IN_PLACE = (operator.iadd, operator.isub, operator.imul, operator.itruediv)
MATMUL = (operator.matmul, torch.matmul, torch.bmm, "matmul", "bmm")
NEGATE = (operator.neg, torch.neg, "neg")
RESHAPES = (torch.flatten, "flatten", "view", "reshape", torch.reshape, "unsqueeze", torch.unsqueeze, "squeeze",
            torch.squeeze)


def call_op(node: torch.fx.Node, where: str, in_shape: tuple):
    """The op record (SKIP, or "reshape") of a call_function / call_method node."""
    target = node.target
    kwargs = dict(node.kwargs)
    if target in FUNCTION_MODULES:
        return module_op(where, FUNCTION_MODULES[target](*node.args[1:], **kwargs), in_shape)
    if target is F.interpolate:
        return interpolate_op(node, where, in_shape)
    if target in ELEMENTWISE:
        return ELEMENTWISE[target]()
    if target in ARITHMETIC:
        return _arithmetic(node, where, ARITHMETIC[target])
    if target in NEGATE:
        return graph.Scalar("mul", -1.0)
    if target in MATMUL:
        return _matmul(node, where)
    if target in (torch.mean, "mean"):
        return _reduce(node, where, graph.Mean)
    if target in (torch.amax, "amax"):
        return _reduce(node, where, graph.Amax)
    if target is F.scaled_dot_product_attention:
        return _attention(node, where)
    if target is getattr and node.args[1] == "mT":
        return _permute(node, where, len(in_shape) + 1)
    if target in RESHAPES:
        return "reshape"
    if target in ("contiguous",) or (target in (F.dropout,) and not kwargs.get("training", False)):
        return SKIP
    if target in ALONG_AXIS:
        return _along_axis(node, where, ALONG_AXIS[target])
    if target in (torch.cat, torch.concat):
        dim = kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        return graph.Concat(sample_dim(dim, where, 'concatenation'))
    if target in (torch.permute, "permute", "transpose", torch.transpose):
        return _permute(node, where, len(in_shape) + 1)
    refuse(where, f"{getattr(target, '__name__', target)!r} in forward()",
            "express it with supported modules (docs/API.md)")


def _arithmetic(node: torch.fx.Node, where: str, fn: str):
    """add/sub/mul/div of two tensors, or of a tensor and a number (a scalar op)."""
    if node.kwargs:
        refuse(where, f"{getattr(node.target, '__name__', node.target)!r} with keyword arguments "
                f"({', '.join(node.kwargs)})")
    tensors = tensor_inputs(node)
    if len(tensors) == 2:
        return TWO_TENSORS[fn]()
    first, second = node.args[:2]
    if tensors and first is tensors[0]:
        return graph.Scalar(fn, number_value(second, where))
    return graph.Scalar({"sub": "rsub", "div": "rdiv"}.get(fn, fn), number_value(first, where))


def _matmul(node: torch.fx.Node, where: str):
    """A matrix product of two activations of equal rank (so the batch axes meet)."""
    tensors = tensor_inputs(node)
    shapes = [node_shape(t) for t in tensors]
    if node.kwargs or len(tensors) != 2 or len(shapes[0]) != len(shapes[1]) or len(shapes[0]) < 3:
        refuse(where, f"a matrix product of shapes {', '.join(str(tuple(s)) for s in shapes)}",
                "multiply two activations of equal rank of at least 3 (batch, ..., rows, columns); a weight "
                "matrix belongs in an nn.Linear")
    return graph.MatMul()


def _along_axis(node: torch.fx.Node, where: str, op: type):
    """softmax / log_softmax over one per-sample axis; a dtype other than float32 is refused (the file
    computes in float32)."""
    kwargs = {k: v for k, v in node.kwargs.items() if k != "_stacklevel"}
    dim = kwargs.pop("dim", node.args[1] if len(node.args) > 1 else None)
    dtypes = [v for v in (*node.args[2:], kwargs.pop("dtype", None)) if isinstance(v, torch.dtype)]
    if kwargs or any(d != torch.float32 for d in dtypes):
        what = ", ".join([*kwargs, *(f"dtype={d}" for d in dtypes if d != torch.float32)])
        refuse(where, f"{op.name} with {what}", "the file computes in float32: call it without those arguments")
    return op(sample_dim(dim, where, op.name))


def _reduce(node: torch.fx.Node, where: str, op: type):
    """x.mean(dims) / x.amax(dims) over per-sample axes as the file's `op` (graph.Mean or graph.Amax)."""
    kwargs = dict(node.kwargs)
    dim = kwargs.pop("dim", node.args[1] if len(node.args) > 1 else None)
    keepdim = kwargs.pop("keepdim", node.args[2] if len(node.args) > 2 else False)
    if kwargs or dim is None or dim == () or dim == []:
        refuse(where, f"{op.name} over {'all dimensions' if dim in (None, (), []) else 'dims ' + str(dim)}"
                f"{' with ' + ', '.join(kwargs) if kwargs else ''}", "give the dims to reduce (not the batch)")
    dims = dim if isinstance(dim, (list, tuple)) else [dim]
    return op(tuple(sample_dim(d, where, op.name) for d in dims), bool(keepdim))


SDPA_ARGS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")


def _attention(node: torch.fx.Node, where: str) -> list:
    """F.scaled_dot_product_attention without mask tensor or dropout as ops: softmax(q k^T * scale) v, the
    scores above the diagonal set to -inf first with is_causal."""
    args = {**dict(zip(SDPA_ARGS, node.args)), **node.kwargs}
    if args.get("attn_mask") is not None or args.get("dropout_p") or args.get("enable_gqa"):
        refuse(where, "scaled_dot_product_attention with a mask, dropout_p or enable_gqa",
                "the file's attention takes no mask tensor (models of one input; is_causal=True is supported) "
                "and no dropout")
    causal = args.get("is_causal", False)
    if not isinstance(causal, bool):
        what = (f"is_causal computed in forward() ({causal.name})" if isinstance(causal, torch.fx.Node)
                else f"is_causal={causal!r}")
        refuse(where, f"scaled_dot_product_attention with {what}", "pass a Python True or False")
    q, k, v = args["query"], args["key"], args["value"]
    shapes = [node_shape(t) for t in (q, k, v)]
    if len({len(s) for s in shapes}) != 1 or len(shapes[0]) < 3:
        refuse(where, f"scaled_dot_product_attention of shapes {', '.join(str(tuple(s)) for s in shapes)}",
                "give query, key and value of equal rank (batch, ..., length, features)")
    dims = list(range(len(shapes[0]) - 1))
    dims[-2], dims[-1] = dims[-1], dims[-2]
    scale = 1.0 / math.sqrt(shapes[0][-1]) if args.get("scale") is None else number_value(args["scale"], where)
    # (op, inputs): a node is a value of the graph, an integer an earlier op of this list
    scores = [(graph.Permute(tuple(dims)), (k,)), (graph.MatMul(), (q, 0)), (graph.Scalar("mul", scale), (1,))]
    if args.get("is_causal"):
        scores.append((graph.CausalMask(), (2,)))
    n = len(scores)
    return scores + [(graph.Softmax(-1), (n - 1,)), (graph.MatMul(), (n, v))]


def _permute(node, where: str, ndim: int):
    if node.target in ("transpose", torch.transpose, getattr):
        a, b = (d % ndim for d in node.args[1:3]) if node.target is not getattr else (-1 % ndim, -2 % ndim)
        dims = list(range(ndim))
        dims[a], dims[b] = dims[b], dims[a]
    else:
        dims = node.args[1] if len(node.args) == 2 and isinstance(node.args[1], (list, tuple)) else node.args[1:]
        dims = [d % ndim for d in dims]
    if dims[0] != 0:
        refuse(where, "a permutation that moves the batch dimension")
    return graph.Permute(tuple(d - 1 for d in dims[1:]))
