"""One captured torch.fx node or module as the file's op records (deepcompress.format.graph), or a refusal
(`Unsupported`, naming the module and what to do): the per-node half of capture.py."""

from __future__ import annotations

import math
import operator

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..format import graph
from .capture_seq import embedding_op

SKIP = "skip"  # a node that passes its input through unchanged at inference (dropout, contiguous)
VALUE, OTHER_BATCH_VALUE = "deepcompress_value", "deepcompress_value_batch3"  # node.meta keys of numbers
WEIGHTS_ONLY_HINT = "or write weights only (weights_only=True)"


class Unsupported(UserError):
    """A part of the model the file's forward pass cannot express."""


def refuse(where: str, what: str, fix: str = "") -> None:
    """Raise Unsupported: `what` at `where` is not supported, with the fix and the weights-only way out."""
    raise Unsupported(f"{where}: {what} is not supported{'; ' + fix if fix else ''} ({WEIGHTS_ONLY_HINT})")


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


def _pool(name: str, m):
    if isinstance(m, nn.MaxPool2d):
        if graph.pair_of(m.dilation) != (1, 1) or m.return_indices:
            refuse(name, f"MaxPool2d(dilation={m.dilation}, return_indices={m.return_indices})")
        cls, extra = graph.MaxPool, {}
    else:
        if m.divisor_override:
            refuse(name, f"AvgPool2d(divisor_override={m.divisor_override})")
        cls, extra = graph.AvgPool, {"count_include_pad": m.count_include_pad}
    return cls(graph.pair_of(m.kernel_size), graph.pair_of(m.stride or m.kernel_size), graph.pair_of(m.padding),
               m.ceil_mode, **extra)


def _adaptive(name: str, m: nn.AdaptiveAvgPool2d, in_hw):
    size = m.output_size if isinstance(m.output_size, (tuple, list)) else (m.output_size, m.output_size)
    return graph.AdaptiveAvgPool(tuple(in_hw[i] if s is None else int(s) for i, s in enumerate(size)))


def _global_max(name: str, m: nn.AdaptiveMaxPool2d, in_hw):
    """AdaptiveMaxPool2d to a 1 x 1 output as the file's amax over height and width; other sizes refused."""
    size = m.output_size if isinstance(m.output_size, (tuple, list)) else (m.output_size, m.output_size)
    if m.return_indices or tuple(in_hw[i] if s is None else int(s) for i, s in enumerate(size)) != (1, 1):
        refuse(name, f"AdaptiveMaxPool2d(output_size={m.output_size}, return_indices={m.return_indices})",
               "only global max pooling (output size 1, no indices) is supported")
    return graph.Amax((-2, -1), True)


def _upsample(where: str, label: str, mode: str, size, scale_factor, in_shape: tuple):
    """Upsampling (nn.Upsample, F.interpolate: `label`) in "nearest" mode by whole factors of a (C, H, W)
    sample ("nearest-exact" picks the same pixels at whole factors); else refused."""
    if mode not in ("nearest", "nearest-exact") or len(in_shape) != 3:
        refuse(where, f"{label}(mode={mode!r}) of a sample of shape {tuple(in_shape)}",
               "the file upsamples (C, H, W) maps in 'nearest' mode by whole factors")
    if size is not None:
        size = graph.pair_of(size)
        scale = tuple(o // i if o % i == 0 else 0 for o, i in zip(size, in_shape[1:]))
    else:
        factors = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * 2
        scale = tuple(int(f) if float(f) == int(f) and f >= 1 else 0 for f in factors)
    if 0 in scale:
        refuse(where, f"{label}(size={size}, scale_factor={scale_factor}) of {tuple(in_shape)}",
               "upsample by whole factors")
    return graph.Upsample(scale)


INTERPOLATE_ARGS = ("size", "scale_factor", "mode", "align_corners", "recompute_scale_factor", "antialias")


def _interpolate(node: torch.fx.Node, where: str, in_shape: tuple):
    """F.interpolate as an upsample op; a size read from another tensor's shape (a U-Net's skip
    connection: size=skip.shape[2:]) is taken from the example."""
    args = {**dict(zip(INTERPOLATE_ARGS, node.args[1:])), **node.kwargs}
    if args.get("antialias"):
        refuse(where, "interpolate(antialias=True)", "upsample in 'nearest' mode")
    size = args.get("size")
    if isinstance(size, torch.fx.Node):
        size = size.meta.get(VALUE)
    elif isinstance(size, (tuple, list)):
        size = [int(_number(v, where)) for v in size]
    return _upsample(where, "interpolate", args.get("mode", "nearest"), size, args.get("scale_factor"), in_shape)


def _affine(name: str, m: nn.modules.batchnorm._BatchNorm):
    """A BatchNorm in inference mode as a per-channel affine op."""
    if m.running_mean is None:
        refuse(name, "BatchNorm without running statistics (track_running_stats=False)")
    scale = (m.weight if m.affine else 1.0) / torch.sqrt(m.running_var + m.eps)
    shift = (m.bias if m.affine else 0.0) - m.running_mean * scale
    return graph.Affine(tuple(scale.detach().tolist()), tuple(shift.detach().tolist()))


def _norm(name: str, m: nn.Module, in_shape: tuple):
    """GroupNorm, or InstanceNorm1d/2d (a group per channel of the input: without affine parameters
    PyTorch ignores num_features; with running statistics a per-channel affine, as BatchNorm in inference
    mode)."""
    if isinstance(m, nn.GroupNorm):
        groups, channels, affine = m.num_groups, m.num_channels, m.affine
    elif len(in_shape) != m._get_no_batch_dim():  # PyTorch reads one dimension fewer as one unbatched sample
        refuse(name, f"{type(m).__name__} on a sample of shape {tuple(in_shape)}",
               f"give it a batch of {m._get_no_batch_dim() + 1}-d inputs")
    elif m.track_running_stats:
        return _affine(name, m)
    else:
        groups = channels = in_shape[0]
        affine = m.affine
    weight = m.weight.detach().tolist() if affine else [1.0] * channels
    bias = m.bias.detach().tolist() if affine else [0.0] * channels
    return graph.GroupNorm(groups, tuple(weight), tuple(bias), float(m.eps))


def _one_d_pool(name: str, m: nn.Module):
    """AdaptiveAvgPool1d(1) / AdaptiveMaxPool1d(1) as the mean / amax over the last axis; other sizes refused."""
    size = m.output_size[0] if isinstance(m.output_size, (tuple, list)) else m.output_size
    if size != 1 or getattr(m, "return_indices", False):
        refuse(name, f"{type(m).__name__}(output_size={m.output_size})", "only global pooling (output size 1, no "
               "indices) is supported")
    return (graph.Mean if isinstance(m, nn.AdaptiveAvgPool1d) else graph.Amax)((-1,), True)


def glu(where: str, dim, in_shape: tuple) -> list:
    """GLU over `dim` of the batched tensor: the first half times the sigmoid of the second, as a chain
    of slices, sigmoid and mul reading the node's input (None)."""
    axis = _sample_dim(dim, where, "GLU")
    half = in_shape[axis] // 2  # even: PyTorch refuses to halve an odd axis, so the model ran
    return [(graph.Slice(axis, 0, half), (None,)), (graph.Slice(axis, half, None), (None,)),
            (graph.Sigmoid(), (1,)), (graph.Mul(), (0, 2))]


def layernorm_op(name: str, m: nn.LayerNorm) -> graph.LayerNorm:
    """A LayerNorm over the last axis as the file's op; others refused."""
    if len(m.normalized_shape) != 1:
        refuse(name, f"LayerNorm over {tuple(m.normalized_shape)}", "normalise over the last dimension only")
    n = m.normalized_shape[0]
    weight = m.weight.detach().tolist() if m.weight is not None else [1.0] * n
    bias = m.bias.detach().tolist() if m.bias is not None else [0.0] * n
    return graph.LayerNorm(tuple(weight), tuple(bias), float(m.eps))


def _sample_dim(dim, where: str, what: str) -> int:
    """A dimension of the batched tensor as a per-sample axis (negative ones count from the end)."""
    if isinstance(dim, bool) or not isinstance(dim, int) or dim == 0:
        refuse(where, f"{what} over dim {dim!r}", "give an integer dim other than the batch dimension")
    return dim - 1 if dim > 0 else dim


ATTENTION_MODULES = (nn.TransformerDecoderLayer, nn.TransformerDecoder, nn.Transformer)  # cross-attention
ACTIVATIONS = {nn.ReLU: graph.Relu, nn.ReLU6: graph.Relu6, nn.Sigmoid: graph.Sigmoid, nn.Tanh: graph.Tanh,
               nn.SiLU: graph.Silu, nn.Hardswish: graph.Hardswish, nn.Hardsigmoid: graph.Hardsigmoid,
               nn.Mish: graph.Mish}
INSTANCE_NORMS = (nn.InstanceNorm1d, nn.InstanceNorm2d)


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
        return op(_sample_dim(m.dim, name, op.name))
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        return _pool(name, m)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return _adaptive(name, m, in_shape[1:])
    if isinstance(m, nn.AdaptiveMaxPool2d):
        return _global_max(name, m, in_shape[1:])
    if isinstance(m, nn.Flatten):
        return graph.Flatten() if (m.start_dim, m.end_dim) == (1, -1) else "reshape"
    if isinstance(m, nn.Unflatten):
        return "reshape"
    if isinstance(m, (nn.Dropout, nn.Identity)):
        return SKIP
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return _affine(name, m)
    if isinstance(m, nn.LayerNorm):
        return layernorm_op(name, m)
    if isinstance(m, (nn.GroupNorm, *INSTANCE_NORMS)):
        return _norm(name, m, in_shape)
    if isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d)):
        return _one_d_pool(name, m)
    if isinstance(m, nn.Upsample):
        return _upsample(name, type(m).__name__, m.mode, m.size, m.scale_factor, in_shape)
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
        return _interpolate(node, where, in_shape)
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
        return graph.Concat(_sample_dim(dim, where, 'concatenation'))
    if target in (torch.permute, "permute", "transpose", torch.transpose):
        return _permute(node, where, len(in_shape) + 1)
    refuse(where, f"{getattr(target, '__name__', target)!r} in forward()",
            "express it with supported modules (docs/API.md)")


def _number(arg, where: str) -> float:
    """A Python number, or one computed in forward() from sizes that do not depend on the batch."""
    if isinstance(arg, (int, float)) and not isinstance(arg, bool):
        return float(arg)
    value = arg.meta.get(VALUE) if isinstance(arg, torch.fx.Node) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if arg.meta.get(OTHER_BATCH_VALUE) != value:
            refuse(where, f"a number that depends on the batch size ({arg.name})",
                    "compute it from the other dimensions")
        return float(value)
    refuse(where, f"arithmetic with {getattr(arg, 'name', repr(arg))} (neither a number nor a tensor with the "
            "batch first)")


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
        return graph.Scalar(fn, _number(second, where))
    return graph.Scalar({"sub": "rsub", "div": "rdiv"}.get(fn, fn), _number(first, where))


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
    return op(_sample_dim(dim, where, op.name))


def _reduce(node: torch.fx.Node, where: str, op: type):
    """x.mean(dims) / x.amax(dims) over per-sample axes as the file's `op` (graph.Mean or graph.Amax)."""
    kwargs = dict(node.kwargs)
    dim = kwargs.pop("dim", node.args[1] if len(node.args) > 1 else None)
    keepdim = kwargs.pop("keepdim", node.args[2] if len(node.args) > 2 else False)
    if kwargs or dim is None or dim == () or dim == []:
        refuse(where, f"{op.name} over {'all dimensions' if dim in (None, (), []) else 'dims ' + str(dim)}"
                f"{' with ' + ', '.join(kwargs) if kwargs else ''}", "give the dims to reduce (not the batch)")
    dims = dim if isinstance(dim, (list, tuple)) else [dim]
    return op(tuple(_sample_dim(d, where, op.name) for d in dims), bool(keepdim))


SDPA_ARGS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")


def _attention(node: torch.fx.Node, where: str) -> list:
    """F.scaled_dot_product_attention without mask tensor or dropout as ops: softmax(q k^T * scale) v, the
    scores above the diagonal set to -inf first with is_causal."""
    args = {**dict(zip(SDPA_ARGS, node.args)), **node.kwargs}
    if args.get("attn_mask") is not None or args.get("dropout_p") or args.get("enable_gqa"):
        refuse(where, "scaled_dot_product_attention with a mask, dropout_p or enable_gqa",
                "the file's attention takes no mask tensor (models of one input; is_causal=True is supported) "
                "and no dropout")
    if not isinstance(args.get("is_causal", False), bool):
        refuse(where, f"scaled_dot_product_attention(is_causal={args['is_causal']!r})", "pass True or False")
    q, k, v = args["query"], args["key"], args["value"]
    shapes = [node_shape(t) for t in (q, k, v)]
    if len({len(s) for s in shapes}) != 1 or len(shapes[0]) < 3:
        refuse(where, f"scaled_dot_product_attention of shapes {', '.join(str(tuple(s)) for s in shapes)}",
                "give query, key and value of equal rank (batch, ..., length, features)")
    dims = list(range(len(shapes[0]) - 1))
    dims[-2], dims[-1] = dims[-1], dims[-2]
    scale = 1.0 / math.sqrt(shapes[0][-1]) if args.get("scale") is None else _number(args["scale"], where)
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


def tensor_inputs(node: torch.fx.Node) -> list[torch.fx.Node]:
    """The node's arguments that hold tensors, in order (a tensor used twice appears twice)."""
    found = []

    def visit(arg: torch.fx.Node) -> torch.fx.Node:
        if node_shape(arg) or arg.op == "placeholder":
            found.append(arg)
        return arg
    torch.fx.node.map_arg((node.args, node.kwargs), visit)
    return found


def node_shape(node: torch.fx.Node) -> tuple:
    """The shape ShapeProp recorded for the node's tensor (() when it is not a tensor)."""
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else ()
