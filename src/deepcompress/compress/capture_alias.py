"""In-place operations in a captured forward pass: PyTorch's write reaches every view of the same memory
(a slice, a chunk's part, a reshape, the tensor an in-place op returns), while the file computes each op
from its inputs. An in-place op is therefore refused when a value sharing its input's memory is read
after it, other than through the op's own result."""

from __future__ import annotations

import operator

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from .capture_ops import IN_PLACE

VIEW_METHODS = {"view", "view_as", "reshape", "flatten", "unflatten", "permute", "transpose", "squeeze", "unsqueeze",
                "contiguous", "narrow", "chunk", "split", "split_with_sizes", "tensor_split", "unbind", "expand",
                "expand_as", "t", "detach"}
VIEW_FUNCTIONS = {operator.getitem, F.dropout, torch.narrow, torch.flatten, torch.reshape, torch.permute,
                  torch.transpose, torch.squeeze, torch.unsqueeze, torch.chunk, torch.split, torch.tensor_split,
                  torch.unbind, torch.t, torch.detach}  # F.dropout: in eval it returns its input
VIEW_ATTRIBUTES = {"T", "mT", "H", "mH"}  # getattr nodes that are views (not .shape)
SPLIT_TARGETS = {"chunk", "split", "split_with_sizes", "tensor_split", "unbind", torch.chunk, torch.split,
                 torch.tensor_split, torch.unbind}
VIEW_MODULES = (nn.Identity, nn.Dropout, nn.Flatten, nn.Unflatten)  # Dropout in eval returns its input


def writes_its_input(node: torch.fx.Node, modules: dict) -> bool:
    """Whether the node overwrites its first argument (inplace=True activations, +=, *=)."""
    if node.op == "call_module":
        return bool(getattr(modules[node.target], "inplace", False))
    return node.target in IN_PLACE or bool(node.kwargs.get("inplace", False))


def _shares_memory(node: torch.fx.Node, modules: dict) -> bool:
    """Whether the node's result may be its first argument's memory (a view, or an in-place op)."""
    if node.op == "call_method":
        view = node.target in VIEW_METHODS
    elif node.op == "call_function":
        view = node.target in VIEW_FUNCTIONS or (node.target is getattr and node.args[1] in VIEW_ATTRIBUTES)
    else:
        view = node.op == "call_module" and isinstance(modules[node.target], VIEW_MODULES)
    return (view or writes_its_input(node, modules)) and bool(node.args) and isinstance(node.args[0], torch.fx.Node)


def _tree(root: torch.fx.Node, modules: dict, other_parts: set = frozenset()) -> set:
    """root and every node sharing its memory through a chain of views or in-place ops, leaving out
    `other_parts` (parts of a chunk / split that do not overlap the memory in question)."""
    found, todo = {root}, [root]
    while todo:
        parent = todo.pop()
        for user in parent.users:
            if user not in found and user not in other_parts and _shares_memory(user, modules) \
                    and user.args[0] is parent:
                found.add(user)
                todo.append(user)
    return found


def _other_parts(chain: list) -> set:
    """The parts of each chunk / split on the chain (a node, its source, ... up to the root) other than
    the one the chain passes through: disjoint memory."""
    others = set()
    for node in chain:
        split = node.args[0] if node.target is operator.getitem else None
        if isinstance(split, torch.fx.Node) and split.target in SPLIT_TARGETS:
            others |= {u for u in split.users if u.target is operator.getitem and u.args[1] != node.args[1]}
    return others


def clobbers_a_later_read(node: torch.fx.Node, modules: dict, order: dict) -> bool:
    """Whether the in-place `node` writes memory that a node after it reads other than through `node`'s
    own result (and that result's views)."""
    chain = [node.args[0]]
    while _shares_memory(chain[-1], modules):
        chain.append(chain[-1].args[0])
    own = _tree(node, modules)
    for member in _tree(chain[-1], modules, _other_parts(chain)) - own:
        for reader in member.users:
            if reader not in own and order[reader] > order[node] and not (
                    _shares_memory(reader, modules) and reader.args[0] is member):  # a view: its readers count
                return True
    return False
