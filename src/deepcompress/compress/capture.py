"""A PyTorch model's forward pass as the file's op records (deepcompress.format.graph), captured with
torch.fx and shape-propagated on an example input. Everything the schema cannot express is refused with
the module's name and what to do, never written half-described.

    ops = capture(model, torch.zeros(1, 1, 28, 28))     # list of graph.Op; UserError naming a module
"""

from __future__ import annotations

import dataclasses
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


ACTIVATIONS = {nn.ReLU: graph.Relu, nn.ReLU6: graph.Relu6, nn.Sigmoid: graph.Sigmoid, nn.Tanh: graph.Tanh,
               nn.SiLU: graph.Silu}


def module_op(name: str, m: nn.Module, in_shape: tuple):
    """The op record (or SKIP) of a called submodule; Unsupported naming it otherwise."""
    if isinstance(m, nn.Linear):
        return graph.Fc(layer=name)
    if isinstance(m, nn.Conv2d):
        return _conv(name, m)
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
BINARY = {operator.add: graph.Add, torch.add: graph.Add, "add": graph.Add, operator.iadd: graph.Add,
          operator.mul: graph.Mul, torch.mul: graph.Mul, "mul": graph.Mul, operator.imul: graph.Mul}
IN_PLACE = (operator.iadd, operator.imul)


def call_op(node: torch.fx.Node, where: str, in_shape: tuple):
    """The op record (SKIP, or "reshape") of a call_function / call_method node."""
    target = node.target
    kwargs = dict(node.kwargs)
    if target in FUNCTION_MODULES:
        return module_op(where, FUNCTION_MODULES[target](*node.args[1:], **kwargs), in_shape)
    if target in ELEMENTWISE:
        return ELEMENTWISE[target]()
    if target in BINARY:
        if kwargs or len(_tensor_inputs(node)) != 2:
            _refuse(where, f"{getattr(target, '__name__', target)!r} with a constant or keyword arguments "
                    f"({', '.join(kwargs) or 'a number'})", "add or multiply two tensors only")
        return BINARY[target]()
    if target in (torch.flatten, "flatten", "view", "reshape"):
        return "reshape"
    if target in ("contiguous",) or (target in (F.dropout,) and not kwargs.get("training", False)):
        return SKIP
    if target in (F.softmax, torch.softmax, "softmax"):
        dim = kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        return graph.Softmax(_sample_dim(dim, where, 'softmax'))
    if target in (torch.cat, torch.concat):
        dim = kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        return graph.Concat(_sample_dim(dim, where, 'concatenation'))
    if target in (torch.permute, "permute", "transpose"):
        return _permute(node, where, len(in_shape) + 1)
    _refuse(where, f"{getattr(target, '__name__', target)!r} in forward()",
            "express it with supported modules (docs/API.md)")


def _permute(node, where: str, ndim: int):
    if node.target == "transpose":
        a, b = (d % ndim for d in node.args[1:3])
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


def capture(model: nn.Module, example_input: torch.Tensor) -> list[graph.Op]:
    """The model's forward pass (in eval mode) on inputs shaped like `example_input` (batch first) as op
    records; Unsupported (a UserError) naming the first module or function the schema cannot express."""
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
    example_input = torch.as_tensor(example_input)
    example_input = torch.cat([example_input[:1], example_input[:1]]) if len(example_input) < 2 else example_input
    try:
        with torch.no_grad():
            ShapeProp(traced).propagate(example_input)
    except Exception as err:  # the user's model failed on the example: say so, with its own message
        cause = err.__cause__ or err
        raise UserError(f"the model failed on the example input of shape {tuple(example_input.shape)} "
                        f"({type(cause).__name__}: {str(cause).splitlines()[0]})") from None
    finally:
        model.train(was_training)
    return _ops_of(traced, dict(model.named_modules()), len(example_input))


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
