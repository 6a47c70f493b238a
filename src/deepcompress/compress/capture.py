"""A PyTorch model's forward pass as the file's op records (deepcompress.format.graph), captured with
torch.fx and shape-propagated on an example input. Everything the schema cannot express is refused with
the module's name and what to do, never written half-described.

    ops = capture(model, torch.zeros(1, 1, 28, 28))     # list of graph.Op; UserError naming a module
"""

from __future__ import annotations

import dataclasses
import math
import operator

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from ..errors import UserError
from ..format import graph
from .capture_seq import SequenceCapture, embedding_op

SKIP = "skip"  # a node that passes its input through unchanged at inference (dropout, contiguous)
VALUE, OTHER_BATCH_VALUE = "deepcompress_value", "deepcompress_value_batch3"  # node.meta keys of numbers
WEIGHTS_ONLY_HINT = "or write weights only (weights_only=True)"


class Unsupported(UserError):
    """A part of the model the file's forward pass cannot express."""


def _refuse(where: str, what: str, fix: str = "") -> None:
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


def _conv(name: str, m: nn.Conv2d):
    if m.padding_mode != "zeros":
        _refuse(name, f"Conv2d(padding_mode={m.padding_mode!r})", "use zero padding")
    return graph.Conv(layer=name, stride=tuple(m.stride), padding=conv_padding(m), dilation=tuple(m.dilation),
                      groups=m.groups)


def _conv1d(name: str, m: nn.Conv1d):
    if m.padding_mode != "zeros":
        _refuse(name, f"Conv1d(padding_mode={m.padding_mode!r})", "use zero padding")
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
            _refuse(name, f"MaxPool2d(dilation={m.dilation}, return_indices={m.return_indices})")
        cls, extra = graph.MaxPool, {}
    else:
        if m.divisor_override:
            _refuse(name, f"AvgPool2d(divisor_override={m.divisor_override})")
        cls, extra = graph.AvgPool, {"count_include_pad": m.count_include_pad}
    return cls(graph.pair_of(m.kernel_size), graph.pair_of(m.stride or m.kernel_size), graph.pair_of(m.padding),
               m.ceil_mode, **extra)


def _adaptive(name: str, m: nn.AdaptiveAvgPool2d, in_hw):
    size = m.output_size if isinstance(m.output_size, (tuple, list)) else (m.output_size, m.output_size)
    return graph.AdaptiveAvgPool(tuple(in_hw[i] if s is None else int(s) for i, s in enumerate(size)))


def _affine(name: str, m: nn.modules.batchnorm._BatchNorm):
    """A BatchNorm in inference mode as a per-channel affine op."""
    if m.running_mean is None:
        _refuse(name, "BatchNorm without running statistics (track_running_stats=False)")
    scale = (m.weight if m.affine else 1.0) / torch.sqrt(m.running_var + m.eps)
    shift = (m.bias if m.affine else 0.0) - m.running_mean * scale
    return graph.Affine(tuple(scale.detach().tolist()), tuple(shift.detach().tolist()))


def _layernorm(name: str, m: nn.LayerNorm):
    if len(m.normalized_shape) != 1:
        _refuse(name, f"LayerNorm over {tuple(m.normalized_shape)}", "normalise over the last dimension only")
    n = m.normalized_shape[0]
    weight = m.weight.detach().tolist() if m.weight is not None else [1.0] * n
    bias = m.bias.detach().tolist() if m.bias is not None else [0.0] * n
    return graph.LayerNorm(tuple(weight), tuple(bias), float(m.eps))


def _sample_dim(dim, where: str, what: str) -> int:
    """A dimension of the batched tensor as a per-sample axis (negative ones count from the end)."""
    if isinstance(dim, bool) or not isinstance(dim, int) or dim == 0:
        _refuse(where, f"{what} over dim {dim!r}", "give an integer dim other than the batch dimension")
    return dim - 1 if dim > 0 else dim


ATTENTION_MODULES = (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerEncoder,
                     nn.TransformerDecoderLayer, nn.TransformerDecoder, nn.Transformer)
ACTIVATIONS = {nn.ReLU: graph.Relu, nn.ReLU6: graph.Relu6, nn.Sigmoid: graph.Sigmoid, nn.Tanh: graph.Tanh,
               nn.SiLU: graph.Silu}


def module_op(name: str, m: nn.Module, in_shape: tuple):
    """The op record (or SKIP) of a called submodule; Unsupported naming it otherwise."""
    if isinstance(m, nn.Linear):
        return graph.Fc(layer=name)
    if isinstance(m, nn.Conv2d):
        return _conv(name, m)
    if isinstance(m, nn.Conv1d):
        return _conv1d(name, m)
    if isinstance(m, ATTENTION_MODULES):
        _refuse(name, type(m).__name__, "write attention with Linear layers, torch.matmul (or @) and softmax "
                "(docs/API.md)")
    if type(m) in ACTIVATIONS:
        return ACTIVATIONS[type(m)]()
    if isinstance(m, nn.LeakyReLU):
        return graph.LeakyRelu(float(m.negative_slope))
    if isinstance(m, nn.GELU):
        return graph.Gelu(m.approximate)
    if isinstance(m, nn.Softmax):
        return graph.Softmax(_sample_dim(m.dim, name, 'softmax'))
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        return _pool(name, m)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return _adaptive(name, m, in_shape[1:])
    if isinstance(m, nn.Flatten):
        return graph.Flatten() if (m.start_dim, m.end_dim) == (1, -1) else "reshape"
    if isinstance(m, (nn.Dropout, nn.Identity)):
        return SKIP
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return _affine(name, m)
    if isinstance(m, nn.LayerNorm):
        return _layernorm(name, m)
    if isinstance(m, nn.Embedding):
        return embedding_op(name, m, _refuse)
    _refuse(name, f"{type(m).__name__} ({m!r})" if len(repr(m)) < 80 else type(m).__name__,
            "see docs/API.md for the supported layers")


FUNCTION_MODULES = {F.max_pool2d: nn.MaxPool2d, F.avg_pool2d: nn.AvgPool2d, F.adaptive_avg_pool2d: nn.AdaptiveAvgPool2d,
                    F.relu6: nn.ReLU6, F.leaky_relu: nn.LeakyReLU, F.gelu: nn.GELU}
ELEMENTWISE = {F.relu: graph.Relu, torch.relu: graph.Relu, torch.sigmoid: graph.Sigmoid, F.sigmoid: graph.Sigmoid,
               torch.tanh: graph.Tanh, F.tanh: graph.Tanh, F.silu: graph.Silu, "relu": graph.Relu,
               "sigmoid": graph.Sigmoid, "tanh": graph.Tanh}
ARITHMETIC = {operator.add: "add", torch.add: "add", "add": "add", operator.iadd: "add",
              operator.sub: "sub", torch.sub: "sub", "sub": "sub", operator.isub: "sub",
              operator.mul: "mul", torch.mul: "mul", "mul": "mul", operator.imul: "mul",
              operator.truediv: "div", torch.div: "div", "div": "div", operator.itruediv: "div",
              torch.true_divide: "div", "true_divide": "div"}
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
    if target in ELEMENTWISE:
        return ELEMENTWISE[target]()
    if target in ARITHMETIC:
        return _arithmetic(node, where, ARITHMETIC[target])
    if target in NEGATE:
        return graph.Scalar("mul", -1.0)
    if target in MATMUL:
        return _matmul(node, where)
    if target in (torch.mean, "mean"):
        return _mean(node, where)
    if target is F.scaled_dot_product_attention:
        return _attention(node, where)
    if target is getattr and node.args[1] == "mT":
        return _permute(node, where, len(in_shape) + 1)
    if target in RESHAPES:
        return "reshape"
    if target in ("contiguous",) or (target in (F.dropout,) and not kwargs.get("training", False)):
        return SKIP
    if target in (F.softmax, torch.softmax, "softmax"):
        dim = kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        return graph.Softmax(_sample_dim(dim, where, 'softmax'))
    if target in (torch.cat, torch.concat):
        dim = kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        return graph.Concat(_sample_dim(dim, where, 'concatenation'))
    if target in (torch.permute, "permute", "transpose", torch.transpose):
        return _permute(node, where, len(in_shape) + 1)
    _refuse(where, f"{getattr(target, '__name__', target)!r} in forward()",
            "express it with supported modules (docs/API.md)")


def _number(arg, where: str) -> float:
    """A Python number, or one computed in forward() from sizes that do not depend on the batch."""
    if isinstance(arg, (int, float)) and not isinstance(arg, bool):
        return float(arg)
    value = arg.meta.get(VALUE) if isinstance(arg, torch.fx.Node) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if arg.meta.get(OTHER_BATCH_VALUE) != value:
            _refuse(where, f"a number that depends on the batch size ({arg.name})",
                    "compute it from the other dimensions")
        return float(value)
    _refuse(where, f"arithmetic with {getattr(arg, 'name', repr(arg))} (neither a number nor a tensor with the "
            "batch first)")


def _arithmetic(node: torch.fx.Node, where: str, fn: str):
    """add/sub/mul/div of two tensors, or of a tensor and a number (a scalar op)."""
    if node.kwargs:
        _refuse(where, f"{getattr(node.target, '__name__', node.target)!r} with keyword arguments "
                f"({', '.join(node.kwargs)})")
    tensors = _tensor_inputs(node)
    if len(tensors) == 2:
        return TWO_TENSORS[fn]()
    first, second = node.args[:2]
    if tensors and first is tensors[0]:
        return graph.Scalar(fn, _number(second, where))
    return graph.Scalar({"sub": "rsub", "div": "rdiv"}.get(fn, fn), _number(first, where))


def _matmul(node: torch.fx.Node, where: str):
    """A matrix product of two activations of equal rank (so the batch axes meet)."""
    tensors = _tensor_inputs(node)
    shapes = [_shape(t) for t in tensors]
    if node.kwargs or len(tensors) != 2 or len(shapes[0]) != len(shapes[1]) or len(shapes[0]) < 3:
        _refuse(where, f"a matrix product of shapes {', '.join(str(tuple(s)) for s in shapes)}",
                "multiply two activations of equal rank of at least 3 (batch, ..., rows, columns); a weight "
                "matrix belongs in an nn.Linear")
    return graph.MatMul()


def _mean(node: torch.fx.Node, where: str):
    kwargs = dict(node.kwargs)
    dim = kwargs.pop("dim", node.args[1] if len(node.args) > 1 else None)
    keepdim = kwargs.pop("keepdim", node.args[2] if len(node.args) > 2 else False)
    if kwargs or dim is None:
        _refuse(where, f"mean over {'all dimensions' if dim is None else 'dims ' + str(dim)}"
                f"{' with ' + ', '.join(kwargs) if kwargs else ''}", "give the dims to average over (not the batch)")
    dims = dim if isinstance(dim, (list, tuple)) else [dim]
    return graph.Mean(tuple(_sample_dim(d, where, "mean") for d in dims), bool(keepdim))


SDPA_ARGS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")


def _attention(node: torch.fx.Node, where: str) -> list:
    """F.scaled_dot_product_attention without mask or dropout as ops: softmax(q k^T * scale) v."""
    args = {**dict(zip(SDPA_ARGS, node.args)), **node.kwargs}
    if args.get("attn_mask") is not None or args.get("is_causal") or args.get("dropout_p") or args.get("enable_gqa"):
        _refuse(where, "scaled_dot_product_attention with a mask, is_causal, dropout_p or enable_gqa",
                "the file's attention takes no mask (models of one input) and no dropout")
    q, k, v = args["query"], args["key"], args["value"]
    shapes = [_shape(t) for t in (q, k, v)]
    if len({len(s) for s in shapes}) != 1 or len(shapes[0]) < 3:
        _refuse(where, f"scaled_dot_product_attention of shapes {', '.join(str(tuple(s)) for s in shapes)}",
                "give query, key and value of equal rank (batch, ..., length, features)")
    dims = list(range(len(shapes[0]) - 1))
    dims[-2], dims[-1] = dims[-1], dims[-2]
    scale = 1.0 / math.sqrt(shapes[0][-1]) if args.get("scale") is None else _number(args["scale"], where)
    # (op, inputs): a node is a value of the graph, an integer an earlier op of this list
    return [(graph.Permute(tuple(dims)), (k,)), (graph.MatMul(), (q, 0)), (graph.Scalar("mul", scale), (1,)),
            (graph.Softmax(-1), (2,)), (graph.MatMul(), (3, v))]


def _permute(node, where: str, ndim: int):
    if node.target in ("transpose", torch.transpose, getattr):
        a, b = (d % ndim for d in node.args[1:3]) if node.target is not getattr else (-1 % ndim, -2 % ndim)
        dims = list(range(ndim))
        dims[a], dims[b] = dims[b], dims[a]
    else:
        dims = node.args[1] if len(node.args) == 2 and isinstance(node.args[1], (list, tuple)) else node.args[1:]
        dims = [d % ndim for d in dims]
    if dims[0] != 0:
        _refuse(where, "a permutation that moves the batch dimension")
    return graph.Permute(tuple(d - 1 for d in dims[1:]))


def _tensor_inputs(node: torch.fx.Node) -> list[torch.fx.Node]:
    """The node's arguments that hold tensors, in order (a tensor used twice appears twice)."""
    found = []

    def visit(arg: torch.fx.Node) -> torch.fx.Node:
        if _shape(arg) or arg.op == "placeholder":
            found.append(arg)
        return arg
    torch.fx.node.map_arg((node.args, node.kwargs), visit)
    return found


def _shape(node: torch.fx.Node) -> tuple:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else ()


def capture(model: nn.Module, example_input: torch.Tensor, variable_axes: tuple = ()) -> list[graph.Op]:
    """The model's forward pass (in eval mode) on inputs shaped like `example_input` (batch first) as op
    records; Unsupported (a UserError) naming the first module or function the schema cannot express.
    `variable_axes` (axes of example_input, the batch being 0) may have another length at run time: the
    pass is captured at a second length too, and a reshape that holds the length infers it (-1)."""
    example_input = torch.as_tensor(example_input)
    axes = check_variable_axes(variable_axes, example_input.dim())
    ops = _capture_at(model, example_input)
    if not axes:
        return ops
    shorter = _another_length(example_input, axes)
    try:
        other = _capture_at(model, shorter)
    except UserError as err:
        raise Unsupported(f"variable_axes {list(axes)}: the model fails at another length (an input of "
                          f"shape {tuple(shorter.shape)}: {err})") from None
    return _length_free(ops, other, axes)


def check_variable_axes(axes, ndim: int) -> tuple:
    """The variable axes checked against an example input of `ndim` axes: distinct, not the batch (0)."""
    axes = tuple(axes)
    if (len(set(axes)) != len(axes)
            or not all(isinstance(a, int) and not isinstance(a, bool) and 1 <= a < ndim for a in axes)):
        raise UserError(f"variable_axes {list(axes)}: expected distinct axes of the example input other than "
                        f"the batch (1..{ndim - 1})")
    return axes


def _another_length(example: torch.Tensor, axes: tuple) -> torch.Tensor:
    """The example one shorter along each variable axis (one longer, repeating its last slice, where it
    has fewer than 3): real values, so an embedding still reads valid ids."""
    for axis in axes:
        n = example.shape[axis]
        example = (example.narrow(axis, 0, n - 1) if n >= 3
                   else torch.cat([example, example.narrow(axis, n - 1, 1)], dim=axis))
    return example


def _length_free(ops: list, other: list, axes: tuple) -> list[graph.Op]:
    """The ops captured at the example's length, with each reshape's length-holding entry replaced by -1;
    Unsupported when the two captures differ otherwise (the model computes something else at another
    length, e.g. a number from the length, or a layer sized by it)."""
    where = f"variable_axes {list(axes)}"
    if len(ops) != len(other):
        raise Unsupported(f"{where}: the model's forward pass has other operations at another length "
                          f"({len(ops)} and {len(other)}); the file holds one pass for every length")
    out = []
    for i, (a, b) in enumerate(zip(ops, other)):
        if a == b:
            out.append(a)
            continue
        entry = _length_entry(a, b)
        if entry is None:
            raise Unsupported(f"{where}: op {i} ({a.name}) depends on the input's length ({a.emit()} vs "
                              f"{b.emit()} at another length); write the model so that only reshapes "
                              f"(with one length-holding entry) see the length")
        out.append(dataclasses.replace(a, shape=tuple(-1 if k == entry else d for k, d in enumerate(a.shape))))
    return out


def _length_entry(a: graph.Op, b: graph.Op) -> int | None:
    """The one entry in which two captures of a reshape differ (None if they are not such a pair)."""
    if not (isinstance(a, graph.Reshape) and isinstance(b, graph.Reshape) and a.inputs == b.inputs
            and len(a.shape) == len(b.shape) and -1 not in a.shape):
        return None
    differs = [k for k, (x, y) in enumerate(zip(a.shape, b.shape)) if x != y]
    return differs[0] if len(differs) == 1 else None


def _capture_at(model: nn.Module, example_input: torch.Tensor) -> list[graph.Op]:
    """capture() at the example's own shape."""
    try:
        traced = torch.fx.symbolic_trace(model)
    except Exception as err:  # fx refuses data-dependent control flow and more; its message says which
        raise Unsupported(f"cannot capture the forward pass with torch.fx ({type(err).__name__}: {err}); "
                          f"make forward() traceable ({WEIGHTS_ONLY_HINT})") from None
    placeholders = [n for n in traced.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise Unsupported(f"the model takes {len(placeholders)} inputs; the file describes models of one input "
                          f"({WEIGHTS_ONLY_HINT})")
    was_training = model.training
    model.eval()
    # a batch of two shows an op that mixes samples (a reshape across the batch), which batch 1 hides
    example_input = torch.cat([example_input[:1], example_input[:1]]) if len(example_input) < 2 else example_input
    try:
        with torch.no_grad():
            _Recording(traced, VALUE).propagate(example_input)
            if _numbers_used_in_arithmetic(traced):
                _values_at_another_batch(traced, torch.cat([example_input[:1]] * 3))
    except Exception as err:  # the user's model failed on the example: say so, with its own message
        cause = err.__cause__ or err
        raise UserError(f"the model failed on the example input of shape {tuple(example_input.shape)} "
                        f"({type(cause).__name__}: {str(cause).splitlines()[0]})") from None
    finally:
        model.train(was_training)
    return _ops_of(traced, dict(model.named_modules()), len(example_input))


class _Recording(ShapeProp):
    """ShapeProp that also keeps every non-tensor result (sizes, numbers) in node.meta[key]."""

    def __init__(self, module: torch.fx.GraphModule, key: str):
        super().__init__(module)
        self.key = key

    def run_node(self, n: torch.fx.Node):
        """Run the node, recording its result when it is not a tensor."""
        result = super().run_node(n)
        if not isinstance(result, torch.Tensor):
            n.meta[self.key] = result
        return result


class _Numbers(torch.fx.Interpreter):
    """Runs the graph keeping every non-tensor result in node.meta[OTHER_BATCH_VALUE] (shapes untouched)."""

    def run_node(self, n: torch.fx.Node):
        """Run the node, recording its result when it is not a tensor."""
        result = super().run_node(n)
        if not isinstance(result, torch.Tensor):
            n.meta[OTHER_BATCH_VALUE] = result
        return result


def _numbers_used_in_arithmetic(traced: torch.fx.GraphModule) -> bool:
    """Whether forward() computes a number (from sizes) that arithmetic on tensors or attention reads."""
    return any(isinstance(n.meta.get(VALUE), (int, float)) and any(
        u.target in ARITHMETIC or u.target is F.scaled_dot_product_attention for u in n.users)
        for n in traced.graph.nodes)


def _values_at_another_batch(traced: torch.fx.GraphModule, example: torch.Tensor) -> None:
    """Record the numbers forward() computes on a batch of 3: one that differs from its batch-2 value
    depends on the batch size. A model that fails here hard-codes its batch; the numbers it computed
    stay unrecorded, so they are refused as batch-dependent."""
    try:
        _Numbers(traced).run(example)
    except Exception:  # it ran on batch 2, so it hard-codes the batch: _number refuses what it reads
        pass


def _writes_its_input(node: torch.fx.Node, modules: dict) -> bool:
    """Whether the node overwrites its first argument (inplace=True activations, +=, *=)."""
    if node.op == "call_module":
        return bool(getattr(modules[node.target], "inplace", False))
    return node.target in IN_PLACE or bool(node.kwargs.get("inplace", False))


def _check_node(node: torch.fx.Node, sources: list, modules: dict, batch: int, where: str) -> None:
    """Refuse what the file would compute differently: an op whose output does not keep the batch as its
    first axis, or an in-place op whose input is read again elsewhere."""
    shape = _shape(node)
    if shape and shape[0] != batch:
        _refuse(where, f"an operation whose output {tuple(shape)} does not keep the batch ({batch}) as its "
                       "first dimension", "keep the batch dimension first and separate")
    if sources and _writes_its_input(node, modules) and len(sources[0].users) > 1:
        _refuse(where, "an in-place operation whose input is used again", "use the out-of-place form")


def _ops_of(traced: torch.fx.GraphModule, modules: dict, batch: int) -> list[graph.Op]:
    index: dict[torch.fx.Node, int] = {}
    ops: list[graph.Op] = []
    seq = SequenceCapture(modules, _refuse)
    for node in traced.graph.nodes:
        if node.op == "placeholder":
            index[node] = graph.INPUT
            continue
        if node.op == "output":
            return _finish(node, index, ops)
        if seq.take(node, index, lambda n, op, src: _append(n, op, src, index, ops)):
            continue
        if node.op != "call_module" and not _shape(node):
            continue  # an int or a size: only shape arguments of a reshape read it
        if node.op == "get_attr":
            raise Unsupported(f"{node.target}: a parameter or buffer used directly in forward() is not "
                              f"supported; use it through a module ({WEIGHTS_ONLY_HINT})")
        sources = _tensor_inputs(node)
        if any(s not in index for s in sources):
            raise Unsupported(f"{node.name}: reads a value the file cannot describe ({WEIGHTS_ONLY_HINT})")
        in_shape = _shape(sources[0])[1:] if sources else ()
        where = node.target if node.op == "call_module" else f"forward() {node.name}"
        _check_node(node, sources, modules, batch, where)
        op = (module_op(node.target, modules[node.target], in_shape) if node.op == "call_module"
              else call_op(node, where, in_shape))
        if op == SKIP:
            index[node] = index[sources[0]]
            continue
        if isinstance(op, list):
            index[node] = _expand(op, index, ops)
            continue
        if op == "reshape":
            out = _shape(node)[1:]
            op = graph.Flatten() if len(out) == 1 else graph.Reshape(tuple(out))
        _append(node, op, tuple(index[s] for s in sources), index, ops)
    raise Unsupported("the traced graph has no output")


def _append(node: torch.fx.Node, op: graph.Op, src: tuple, index: dict, ops: list) -> None:
    """Add op (reading the op indices `src`) as the value of `node`."""
    if src != (len(ops) - 1,) or op.arity != 1:
        op = _with_inputs(op, src)
    index[node] = len(ops)
    ops.append(op)


def _expand(chain: list, index: dict, ops: list) -> int:
    """Append a node's chain of (op, inputs) (an input: a graph node, or an earlier op of the chain);
    the index of its last op."""
    base = len(ops)
    for op, refs in chain:
        src = tuple(index[r] if isinstance(r, torch.fx.Node) else base + r for r in refs)
        ops.append(op if src == (len(ops) - 1,) and op.arity == 1 else _with_inputs(op, src))
    return len(ops) - 1


def _with_inputs(op: graph.Op, src: tuple) -> graph.Op:
    return dataclasses.replace(op, inputs=src)


def _finish(node: torch.fx.Node, index: dict, ops: list) -> list[graph.Op]:
    out = node.args[0]
    if not isinstance(out, torch.fx.Node) or out not in index:
        raise Unsupported(f"the model returns {type(out).__name__}; the file describes models with one "
                          f"tensor output ({WEIGHTS_ONLY_HINT})")
    if not ops or index[out] != len(ops) - 1:
        raise Unsupported(f"the model's output ({out.name}) is not its last operation ({WEIGHTS_ONLY_HINT})")
    return ops
