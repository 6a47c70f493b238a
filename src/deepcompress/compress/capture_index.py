"""Indexing and splitting in a captured forward pass as the file's `select` and `slice` ops: x[:, 0],
x[:, 1:], x[..., :64], and each part of chunk / split / tensor_split / unbind / narrow (the qkv split of
attention, a GLU's halves). What would move the batch, step, or add axes is refused, naming the node."""

from __future__ import annotations

import operator

import torch
import torch.fx

from ..format import graph
from .capture_ops import VALUE, _number, node_shape, refuse

SPLITS = {"chunk", "split", "split_with_sizes", "tensor_split", torch.chunk, torch.split, torch.tensor_split}
UNBINDS = {"unbind", torch.unbind}
NARROWS = {"narrow", torch.narrow}


class Parts:
    """The split-like calls of one capture: a call emits nothing; each part read emits a slice (or, for
    unbind, a select) of the call's input."""

    def __init__(self):
        self.calls: dict[torch.fx.Node, tuple[torch.fx.Node, int, list, bool]] = {}

    def take(self, node: torch.fx.Node, emit) -> bool:
        """Handle the node if it is a split-like call or reads one of its parts; False leaves it to the
        caller. `emit(node, op, source_node)` appends an op reading that node's value."""
        if node.op in ("call_method", "call_function") and (node.target in SPLITS or node.target in UNBINDS):
            self._record(node)
            return True
        if node.op in ("call_method", "call_function") and node.target in NARROWS:
            dim, start, length = (list(node.args[1:]) + [node.kwargs.get(k) for k in ("dim", "start", "length")])[:3]
            start, length = (_int(v, f"forward() {node.name}") for v in (start, length))
            axis = _sample_axis(dim, node)
            size = node_shape(node.args[0])[axis % (len(node_shape(node.args[0])) - 1) + 1]
            start = start % size  # narrow counts a negative start from the end; start + length must not wrap
            emit(node, graph.Slice(axis, start, start + length), node.args[0])
            return True
        if node.op == "call_function" and node.target is operator.getitem and node.args[0] in self.calls:
            source, dim, bounds, unbind = self.calls[node.args[0]]
            key = node.args[1]
            if isinstance(key, bool) or not isinstance(key, int) or not -len(bounds) <= key < len(bounds):
                refuse(f"forward() {node.name}", f"taking part {key!r} of {node.args[0].name}",
                       "take one part with an integer index")
            start, stop = bounds[key]
            if stop <= start:
                refuse(f"forward() {node.name}", f"an empty part of {node.args[0].name}")
            whole = bounds[-1][1]
            emit(node, graph.Select(dim, start, whole) if unbind else graph.Slice(dim, start, stop, whole), source)
            return True
        return False

    def _record(self, node: torch.fx.Node) -> None:
        """The call's source, per-sample axis and each part's (start, stop), from the parts ShapeProp saw."""
        parts = node.meta.get(VALUE)
        unbind = node.target in UNBINDS
        default = node.args[1] if unbind and len(node.args) > 1 else node.args[2] if len(node.args) > 2 else 0
        dim = _sample_axis(node.kwargs.get("dim", default), node)
        source = node.args[0]
        ndim = len(node_shape(source))
        sizes = [1 if unbind else tuple(p.shape)[dim % (ndim - 1) + 1] for p in parts]
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self.calls[node] = (source, dim, [(s, s + n) for s, n in zip(starts, sizes)], unbind)


def _sample_axis(dim, node: torch.fx.Node) -> int:
    """A dimension of the batched tensor as a per-sample axis; the batch itself refused."""
    if isinstance(dim, bool) or not isinstance(dim, int) or dim == 0 or (
            dim < 0 and dim == -len(node_shape(node.args[0]))):
        refuse(f"forward() {node.name}", f"{getattr(node.target, '__name__', node.target)}() over dim {dim!r}",
               "split an axis other than the batch")
    return dim - 1 if dim > 0 else dim


def _int(value, where: str) -> int | None:
    """An index or bound: None, a Python int, or one forward() computed from sizes (not the batch's)."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    number = _number(value, where)
    if number != int(number):
        refuse(where, f"the index {number}", "index with integers")
    return int(number)


def index_ops(node: torch.fx.Node, key, ndim: int) -> list[graph.Op]:
    """x[key] on a batch-first tensor of `ndim` axes as select / slice ops, applied in order (the
    selects last, from the highest axis down, so earlier axis numbers still hold)."""
    where = f"forward() {node.name}"
    keys = list(key) if isinstance(key, tuple) else [key]
    if sum(k is Ellipsis for k in keys) > 1 or any(k is None or isinstance(k, (list, torch.Tensor)) or (
            isinstance(k, torch.fx.Node) and not isinstance(k.meta.get(VALUE), int)) for k in keys):
        refuse(where, f"indexing with {key!r}", "index with integers and slices (use unsqueeze for new axes)")
    keys = [_int(k, where) if isinstance(k, torch.fx.Node) else k for k in keys]
    if Ellipsis in keys:
        at = keys.index(Ellipsis)
        keys[at:at + 1] = [slice(None)] * (ndim - len(keys) + 1)
    if not keys or keys[0] != slice(None) or len(keys) > ndim:
        refuse(where, f"indexing with {key!r}", "keep the whole batch: index as x[:, ...]")
    slices, selects = [], []
    for axis, k in enumerate(keys[1:]):
        if isinstance(k, slice):
            if _int(k.step, where) not in (None, 1):
                refuse(where, f"the slice {k} (of {key!r})", "slice with step 1")
            start, stop = _int(k.start, where), _int(k.stop, where)
            if (start, stop) != (None, None):
                slices.append(graph.Slice(axis, start or 0, stop))
        elif isinstance(k, int) and not isinstance(k, bool):
            selects.append(graph.Select(axis, k))
        else:
            refuse(where, f"indexing with {key!r}", "index with integers and slices")
    return slices + selects[::-1]
