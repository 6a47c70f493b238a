"""Capture of sequence models (deepcompress.compress.capture's part for them): nn.Embedding, nn.LSTM and
nn.GRU calls and the indexing around them as the file's `embedding`, `lstm`, `gru` and `select` records.

An LSTM/GRU call returns a tuple; fx unpacks it with getitem nodes. The call itself emits nothing; the
sequence output (`out`) and each final state used as `h_n[k]` (`c_n[k]`) become one recurrent op each.
The file's tensors keep the batch first, so a `batch_first=False` module must sit between transposes
that swap the batch and time axes: the tensors in between are tracked as time-major and the transposes
vanish. Anything else is refused with one line naming the module or node.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch.fx
from torch import nn

from ..format import graph

RECURRENT = {nn.LSTM: graph.Lstm, nn.GRU: graph.Gru}


def embedding_op(name: str, m: nn.Embedding, refuse) -> graph.Embedding:
    """The embedding record of an nn.Embedding; `refuse(where, what, fix)` for what inference cannot keep."""
    for attr, bad in (("max_norm", m.max_norm is not None), ("sparse", m.sparse),
                      ("scale_grad_by_freq", m.scale_grad_by_freq)):
        if bad:
            refuse(name, f"Embedding({attr}={getattr(m, attr)!r})", f"construct it without {attr}")
    pad = None if m.padding_idx is None else m.padding_idx % m.num_embeddings
    return graph.Embedding(layer=name, padding_idx=pad)


def check_recurrent(name: str, m: nn.Module, refuse) -> None:
    """Refuse an LSTM/GRU setting the file's recurrent ops cannot express."""
    if getattr(m, "proj_size", 0):
        refuse(name, f"LSTM(proj_size={m.proj_size})")
    if m.mode not in ("LSTM", "GRU"):
        refuse(name, type(m).__name__)


@dataclass
class Call:
    """A captured LSTM/GRU call: its module name and module, and the op index of its input."""

    name: str
    module: nn.Module
    source: int

    def op(self, output: str = "sequence", index: int | None = None) -> graph.Recurrent:
        m = self.module
        return RECURRENT[type(m)](self.name, m.num_layers, m.bidirectional, output, index)


class SequenceCapture:
    """The sequence part of one capture: takes the nodes it owns and emits their ops."""

    def __init__(self, modules: dict, refuse):
        self.modules, self.refuse = modules, refuse
        self.calls: dict[torch.fx.Node, Call] = {}  # an LSTM/GRU call (a tuple)
        self.pairs: dict[torch.fx.Node, Call] = {}  # an LSTM's (h_n, c_n) tuple
        self.states: dict[torch.fx.Node, tuple[Call, str]] = {}  # h_n or c_n: (layers x directions, N, H)
        self.time_major: set[torch.fx.Node] = set()  # the file holds it as (N, T, ...), torch as (T, N, ...)

    def is_recurrent(self, node: torch.fx.Node) -> bool:
        """Whether the node calls an LSTM or GRU module."""
        return node.op == "call_module" and type(self.modules[node.target]) in RECURRENT

    def take(self, node: torch.fx.Node, index: dict, emit) -> bool:
        """Handle the node if it is part of a sequence model's plumbing; False leaves it to the caller.
        `emit(node, op, sources)` appends an op reading the given op indices (-1: the model's input)."""
        if self.is_recurrent(node):
            self._call(node, index)
            return True
        if node.op == "call_function" and node.target is operator.getitem:
            return self._getitem(node, index, emit)
        if node.op in ("call_method", "call_function") and self._swaps_batch_and_time(node):
            src = node.args[0]
            index[node] = index[src]
            if src not in self.time_major:
                self.time_major.add(node)
            return True
        owned = [a for a in node.all_input_nodes if a in self.time_major or a in self.states
                 or a in self.calls or a in self.pairs]
        if owned:
            self._refuse_use(node, owned[0])
        return False

    def _call(self, node: torch.fx.Node, index: dict) -> None:
        name, m = node.target, self.modules[node.target]
        check_recurrent(name, m, self.refuse)
        if len(node.all_input_nodes) != 1 or node.kwargs:
            self.refuse(name, f"{type(m).__name__} called with an initial state (h0)",
                        "start from zero state (call it on the input alone)")
        src = node.args[0]
        shape = _shape(src)
        if len(shape) != 3:
            self.refuse(name, f"{type(m).__name__} on a {len(shape)}-d input", "give it a batch of sequences")
        if m.batch_first == (src in self.time_major):
            layout = "sequence-first (T, N, ...)" if src in self.time_major else "batch-first (N, T, ...)"
            self.refuse(name, f"{type(m).__name__}(batch_first={m.batch_first}) reading a {layout} tensor",
                        "the file's tensors keep the batch first: use batch_first=True, or transpose(0, 1) a "
                        "batch-first tensor before a batch_first=False module")
        self.calls[node] = Call(name, m, index[src])

    def _getitem(self, node: torch.fx.Node, index: dict, emit) -> bool:
        src, key = node.args
        if src in self.calls:
            call = self.calls[src]
            if key == 0:
                if node.users:
                    emit(node, call.op(), (call.source,))
                    if not call.module.batch_first:
                        self.time_major.add(node)
            elif isinstance(call.module, nn.LSTM):
                self.pairs[node] = call
            else:
                self.states[node] = (call, "h_n")
            return True
        if src in self.pairs:
            self.states[node] = (self.pairs[src], ("h_n", "c_n")[key])
            return True
        if src in self.states:
            call, which = self.states[src]
            states = call.module.num_layers * (2 if call.module.bidirectional else 1)
            if isinstance(key, bool) or not isinstance(key, int) or not -states <= key < states:
                self.refuse(f"forward() {node.name}", f"indexing {call.name}'s {which} with {key!r}",
                            f"select one layer's final state as {which}[k] with an integer k")
            emit(node, call.op(which, key % states), (call.source,))
            return True
        return self._select(node, src, key, index, emit)

    def _select(self, node, src, key, index, emit) -> bool:
        """x[k] of a time-major tensor as a select op, or x[key] of a batch-first one as select and
        slice ops (capture_index.index_ops)."""
        where = f"forward() {node.name}"
        if src in self.time_major:
            keys = key if isinstance(key, tuple) else (key,)
            if not _is_int(keys[0]) or not all(k == slice(None) for k in keys[1:]):
                self.refuse(where, f"indexing a sequence-first tensor with {key!r}",
                            "select one time step as x[t], or transpose(0, 1) it back first")
            emit(node, graph.Select(0, keys[0]), (index[src],))
            return True
        if not _shape(src):
            return False
        from .capture_index import index_ops  # it imports capture_ops, which imports this module
        ops = index_ops(node, key, _shape(src))
        if not ops:  # x[:, :] or x[...]: the value itself
            index[node] = index[src]
        for op in ops:
            emit(node, op, (index[src],))
            src = node
        return True

    def _swaps_batch_and_time(self, node: torch.fx.Node) -> bool:
        """transpose(0, 1) / permute(1, 0, ...) of a tensor: the file keeps its value, torch's axes swap."""
        if node.target not in ("transpose", "permute", torch.transpose, torch.permute) or not node.args:
            return False
        ndim = len(_shape(node.args[0]))
        if ndim != 3:  # a (N, T, F) sequence
            return False
        rest = node.args[1:]
        if node.target in ("transpose", torch.transpose):
            return len(rest) == 2 and sorted(d % ndim for d in rest) == [0, 1]
        dims = rest[0] if len(rest) == 1 and isinstance(rest[0], (list, tuple)) else rest
        return [d % ndim for d in dims] == [1, 0, 2]

    def _refuse_use(self, node: torch.fx.Node, owned: torch.fx.Node) -> None:
        where = node.target if node.op == "call_module" else f"forward() {node.name}"
        if owned in self.time_major:
            self.refuse(where, "an operation on a sequence-first (T, N, ...) tensor",
                        "transpose(0, 1) it back to batch-first first, or select a step as x[t]")
        if owned in self.states:
            call, which = self.states[owned]
            self.refuse(where, f"using {call.name}'s {which} whole", f"use one layer's final state, {which}[k]")
        self.refuse(where, "using an LSTM/GRU's output tuple directly", "unpack it: out, h = rnn(x)")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shape(node) -> tuple:
    meta = node.meta.get("tensor_meta") if isinstance(node, torch.fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else ()
