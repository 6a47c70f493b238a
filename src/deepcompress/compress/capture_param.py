"""A parameter that forward() reads itself, as the file's `parameter` op: `x + self.pos` (a learned position
table), `self.gamma * x` (layer scale), `x * self.scale + self.shift`, and a class token joined to the
sequence, `torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)`; and learned positions looked
up with `self.wpe(torch.arange(t))` (GPT-2, BERT), the first t rows of the table. The value has batch 1
and is read only by +, -, *, / with a tensor that has the batch, or, expanded to the batch, by torch.cat, so the file
computes what PyTorch's broadcasting does; every other use (slicing it, a matrix product) is refused,
naming the parameter."""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.fx
from torch import nn

from ..format import graph
from .capture_base import OTHER_BATCH_VALUE, VALUE, node_shape, number_value, refuse, tensor_inputs
from .capture_ops import ARITHMETIC
from .capture_seq import embedding_op

USE = ("the file reads a parameter only in +, -, *, / with a tensor that has the batch (x + self.pos, "
       "self.gamma * x) or expanded to the batch in torch.cat (self.cls.expand(x.shape[0], -1, -1))")


def parameter_op(node: torch.fx.Node, modules: dict, batch: int) -> graph.Parameter:
    """The `parameter` op of get_attr `node` (its layer: the parameter's qualified name); Unsupported for a
    buffer, a parameter of one of PyTorch's modules, or a use the file cannot express."""
    prefix, _, attr = node.target.rpartition(".")
    owner = modules.get(prefix)
    where = f"forward() {node.target}"
    if owner is None or attr not in dict(owner.named_parameters(recurse=False)):
        refuse(where, "a buffer (or another tensor attribute) used directly in forward()",
               "register it as a parameter (nn.Parameter(value, requires_grad=False)) or use it through a module")
    if isinstance(owner, (nn.ParameterList, nn.ParameterDict)):
        refuse(where, f"a parameter read from a {type(owner).__name__}",
               "register it on the module itself (self.scale0 = nn.Parameter(...))")
    if type(owner).__module__.startswith("torch."):
        refuse(where, f"a parameter of {type(owner).__name__} used directly in forward()", "call the module instead")
    return _held(node, batch, where)


def _held(node: torch.fx.Node, batch: int, where: str) -> graph.Parameter:
    """The `parameter` op of layer `node.target` in the one per-sample shape every reader of `node` gives it."""
    shapes = {_sample_shape(node, user, batch, where) for user in node.users}
    if len(shapes) != 1:
        refuse(where, f"a value broadcast to {len(shapes)} different shapes", USE)
    return graph.Parameter(layer=node.target, shape=shapes.pop())


def position_op(node: torch.fx.Node, modules: dict, batch: int) -> graph.Parameter:
    """The `parameter` op of an Embedding looked up at torch.arange(t) (is_positions): its table's first t
    rows, as its readers broadcast them."""
    where = f"{node.target}(torch.arange(...))"
    ids = node.args[0] if node.args[0].target is torch.arange else node.args[0].args[0]
    check_position_count(ids, where)
    embedding_op(node.target, modules[node.target], refuse)  # what inference cannot keep (max_norm, ...)
    op = _held(node, batch, where)
    return dataclasses.replace(op, rows=math.prod(op.shape) // modules[node.target].embedding_dim)


def is_positions(node: torch.fx.Node, modules: dict) -> bool:
    """Whether `node` calls an nn.Embedding on position ids, torch.arange(t) (or its .unsqueeze(0))."""
    return (node.op == "call_module" and isinstance(modules.get(node.target), nn.Embedding) and len(node.args) == 1
            and isinstance(node.args[0], torch.fx.Node) and _arange_ids(node.args[0]))


def is_position_ids(node: torch.fx.Node, modules: dict) -> bool:
    """Whether `node` is torch.arange(t) or torch.arange(0, t), or its .unsqueeze(0), read only on the way
    to Embedding modules (a value without the batch, skipped: the lookup becomes a parameter op)."""
    return _arange_ids(node) and bool(node.users) and all(
        is_positions(u, modules) or is_position_ids(u, modules) for u in node.users)


def _arange_ids(node: torch.fx.Node) -> bool:
    """torch.arange(t), torch.arange(0, t) (any dtype and device), or the .unsqueeze(0) of one."""
    if node.op == "call_method" and node.target == "unsqueeze" and node.args[1:] == (0,):
        source = node.args[0]
        return isinstance(source, torch.fx.Node) and source.target is torch.arange and _arange_ids(source)
    return (node.target is torch.arange and len(node.args) in (1, 2) and (len(node.args) == 1 or node.args[0] == 0)
            and node.kwargs.get("start", 0) == 0 and node.kwargs.get("step", 1) == 1)


def check_position_count(node: torch.fx.Node, where: str) -> None:
    """Refuse torch.arange(t) whose t depends on the batch size (a constant or a length is fine)."""
    number_value(node.args[-1], where)


def _sample_shape(node: torch.fx.Node, user: torch.fx.Node, batch: int, where: str) -> tuple:
    """The parameter's per-sample shape as `user` (+, -, *, / with a batched tensor) broadcasts it."""
    if is_batch_expand(user):
        return _expanded_shape(node, user, where)
    sources = tensor_inputs(user)
    others = [s for s in sources if s is not node]
    target = user.target if user.op in ("call_function", "call_method") else None
    if target not in ARITHMETIC or len(sources) != 2 or len(others) != 1:
        refuse(where, f"a parameter read by {user.name}", USE)
    other, shape, out = node_shape(others[0]), node_shape(node), node_shape(user)
    if not other or other[0] != batch or not out or out[0] != batch:
        refuse(where, f"a parameter combined in {user.name} with a value that does not have the batch first", USE)
    if len(shape) < len(out):
        return shape
    if shape[0] != 1:
        refuse(where, f"a parameter of shape {tuple(shape)} whose first axis lines up with the batch",
               "give it a leading axis of 1 (or none): it is the same for every sample")
    return shape[1:]


def is_batch_expand(node: torch.fx.Node) -> bool:
    """Whether `node` is `param.expand(B, ...)` of a parameter, B the batch size forward() read (the value
    it stands for: the parameter itself, which concatenation broadcasts over the batch)."""
    if node.op != "call_method" or node.target != "expand" or len(node.args) < 2:
        return False
    source, size = node.args[0], node.args[1]
    batch = node_shape(node)[0]
    return (isinstance(source, torch.fx.Node) and source.op == "get_attr" and isinstance(size, torch.fx.Node)
            and size.meta.get(VALUE) == batch and size.meta.get(OTHER_BATCH_VALUE) == batch + 1)


def _expanded_shape(node: torch.fx.Node, expand: torch.fx.Node, where: str) -> tuple:
    """The per-sample shape of a parameter that `expand` broadcasts to the batch for torch.cat."""
    shape, sizes = node_shape(node), expand.args[2:]
    if len(sizes) != len(shape) - 1 or shape[0] != 1 or any(s not in (-1, d) for s, d in zip(sizes, shape[1:])):
        refuse(where, f"expanding a parameter of shape {tuple(shape)} other than to the batch", USE)
    readers = [u for u in expand.users if u.target not in (torch.cat, torch.concat)
               or all(is_batch_expand(s) for s in tensor_inputs(u))]  # a cat of parameters alone has no batch
    if readers:
        refuse(where, f"a parameter expanded to the batch and read by {readers[0].name}", USE)
    return shape[1:]
