"""Indexing and splitting in a captured forward pass as the file's `select` and `slice` ops: x[:, 0],
x[:, 1:], x[..., :64], and each part of chunk / split / tensor_split / unbind / narrow (the qkv split of
attention, a GLU's halves). What would move the batch, step, or add axes is refused, naming the node."""

from __future__ import annotations

import operator

import torch
import torch.fx

from ..format import graph
from .capture_base import VALUE, node_shape, number_value, refuse, sample_dim

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
        calling = node.op in ("call_method", "call_function")
        if calling and (node.target in SPLITS or node.target in UNBINDS):
            self._record(node)
            return True
        if calling and node.target in NARROWS:
            emit(node, _narrow(node), node.args[0])
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
            emit(node, graph.Select(dim, start, axis_size=whole, origin="part") if unbind
                 else graph.Slice(dim, start, stop, axis_size=whole, origin="part"), source)
            return True
        return False

    def _record(self, node: torch.fx.Node) -> None:
        """The call's source, per-sample axis and each part's (start, stop), from the parts ShapeProp saw."""
        where = f"forward() {node.name}"
        whole = [u.name for u in node.users if u.target is not operator.getitem]
        if whole:
            refuse(where, f"using all the parts of {node.name} at once (in {', '.join(whole)})",
                   "take the parts by index (a, b = x.chunk(2, dim))")
        unbind = node.target in UNBINDS
        args = dict(zip(("dim",) if unbind else ("sections", "dim"), node.args[1:]))
        source = node.args[0]
        dim = _sample_axis({**args, **node.kwargs}.get("dim", 0), node, source)
        axis = dim % (len(node_shape(source)) - 1) + 1
        sizes = [1 if unbind else tuple(p.shape)[axis] for p in node.meta.get(VALUE)]
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self.calls[node] = (source, dim, [(s, s + n) for s, n in zip(starts, sizes)], unbind)


def _narrow(node: torch.fx.Node) -> graph.Slice:
    """x.narrow(dim, start, length) as a slice (a negative start counts from the end, as narrow does)."""
    where = f"forward() {node.name}"
    args = {**dict(zip(("dim", "start", "length"), node.args[1:])), **node.kwargs}
    source = node.args[0]
    dim = _sample_axis(args.get("dim"), node, source)
    start, length = (_int(args.get(k), where) for k in ("start", "length"))
    size = node_shape(source)[dim % (len(node_shape(source)) - 1) + 1]
    start %= size  # so that start + length cannot wrap
    computed = any(isinstance(args.get(k), torch.fx.Node) for k in ("start", "length"))
    return graph.Slice(dim, start, start + length, axis_size=size, origin="computed" if computed else "narrow")


def _sample_axis(dim, node: torch.fx.Node, source: torch.fx.Node) -> int:
    """A dimension of the batched `source` as a per-sample axis; the batch itself refused."""
    what = f"{getattr(node.target, '__name__', node.target)}()"
    return sample_dim(0 if dim == -len(node_shape(source)) else dim, f"forward() {node.name}", what)


def _int(value, where: str) -> int | None:
    """An index or bound: None, a Python int, or one forward() computed from sizes (not the batch's)."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    number = number_value(value, where)
    if number != int(number):
        refuse(where, f"the index {number}", "index with integers")
    return int(number)


def index_ops(node: torch.fx.Node, key, shape: tuple) -> list[graph.Op]:
    """x[key] on a batch-first tensor of `shape` as select / slice ops, applied in order (the selects
    last, from the highest axis down, so earlier axis numbers still hold); [] when it keeps everything."""
    where = f"forward() {node.name}"
    keys = list(key) if isinstance(key, tuple) else [key]
    # a list of several positions: PyTorch refuses too short an axis where a slice would clip
    listed = [isinstance(k, list) and len(k) > 1 for k in keys]
    if sum(isinstance(k, list) for k in keys) == 1:  # lists on two axes pair up (a gather), slices would not
        keys = [_run_as_slice(k) for k in keys]
    if sum(k is Ellipsis for k in keys) > 1 or any(k is None or isinstance(k, (list, torch.Tensor)) or (
            isinstance(k, torch.fx.Node) and not isinstance(k.meta.get(VALUE), int)) for k in keys):
        refuse(where, f"indexing with {key!r}", "index with integers and slices (use unsqueeze for new axes)")
    origins = ["computed" if isinstance(k, torch.fx.Node) else "list" if many else "index"
               for k, many in zip(keys, listed)]
    keys = [_int(k, where) if isinstance(k, torch.fx.Node) else k for k in keys]
    if Ellipsis in keys:
        at = keys.index(Ellipsis)
        origins[at:at + 1] = ["index"] * (len(shape) - len(keys) + 1)
        keys[at:at + 1] = [slice(None)] * (len(shape) - len(keys) + 1)
    if not keys or keys[0] != slice(None) or len(keys) > len(shape):
        refuse(where, f"indexing with {key!r}", "keep the whole batch: index as x[:, ...]")
    slices, selects = [], []
    for axis, k in enumerate(keys[1:]):
        if isinstance(k, slice):
            slices += _slice_of(k, axis, shape[axis + 1], key, where, origins[axis + 1])
        elif isinstance(k, int) and not isinstance(k, bool):
            selects.append(graph.Select(axis, k, axis_size=shape[axis + 1], origin=origins[axis + 1]))
        else:
            refuse(where, f"indexing with {key!r}", "index with integers and slices")
    return slices + selects[::-1]


def _run_as_slice(k):
    """A list of consecutive integers of one sign (nanoGPT's x[:, [-1], :]) as the slice that keeps the same
    positions and the axis; any other key as it is."""
    if not (isinstance(k, list) and k and all(isinstance(i, int) and not isinstance(i, bool) for i in k)):
        return k
    if k != list(range(k[0], k[0] + len(k))) or (k[0] < 0) != (k[-1] < 0):
        return k
    return slice(k[0], k[-1] + 1 if k[-1] != -1 else None)


def _slice_of(k: slice, axis: int, size: int, key, where: str, origin: str) -> list[graph.Slice]:
    """One slice of an index as a Slice op of per-sample `axis` ([] when it keeps the whole axis); `origin`
    says where its bounds came from (see graph.Slice)."""
    if _int(k.step, where) not in (None, 1):
        refuse(where, f"the slice {k} (of {key!r})", "slice with step 1")
    start, stop = _int(k.start, where), _int(k.stop, where)
    if not len(range(*slice(start, stop).indices(size))):
        refuse(where, f"the empty slice {k} of an axis of {size}")
    if (start, stop) == (None, None):
        return []
    if isinstance(k.start, torch.fx.Node) or isinstance(k.stop, torch.fx.Node):
        origin = "computed"
    return [graph.Slice(axis, start or 0, stop, axis_size=size, origin=origin)]
