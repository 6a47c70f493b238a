"""The runtime's sequence ops: embedding lookup, LSTM and GRU step by step, select (docs/FORMAT.md 4.1).

Each recurrent layer's two matrices run on the runtime's sparse FC layers (SparseLinear, or IntLinear in
the int8/int16 modes: the matrix-vector products in integers, gates in float32): the input projection
W_ih x_t + b_ih of all T steps as one batched product, then per step W_hh h_{t-1} + b_hh, a batch-1
product going straight to the matvec kernel. The initial state is zero, so step 0 needs only b_hh.

One LSTM/GRU call whose sequence output and final states are all used is several records in the file
(one per output, reading the same input); they share one run per input (SharedRun).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from ..format import graph
from .errors import InputError
from .ops import _sigmoid
from .sparse_fc import SparseLinear


class Embedding:
    """Rows of the decoded (V, E) table for integer ids; an id outside 0..V-1 is an InputError."""

    def __init__(self, layer, where: str):
        self.table = np.ascontiguousarray(layer.to_dense(), np.float32)
        self.layer_name, self.where = layer.name, where

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        """(N, *S) int64 ids -> (N, *S, E) float32."""
        vocab = self.table.shape[0]
        if ids.size and (ids.min() < 0 or ids.max() >= vocab):
            bad = ids[(ids < 0) | (ids >= vocab)].flat[0]
            raise InputError(f"{self.where}: token id {bad} is outside the vocabulary 0..{vocab - 1} of "
                             f"embedding {self.layer_name!r}")
        return self.table[ids]


class ParameterValue:
    """A parameter op's value: the decoded layer (its first `rows` rows, if the op says) as one
    sample (1, *shape), a fresh copy per call so that an op allowed to write into its input never changes
    the stored value."""

    def __init__(self, layer, shape: tuple):
        values = np.ascontiguousarray(layer.to_dense(), np.float32).reshape(-1)
        self.value = values[:math.prod(shape)].reshape(1, *shape)

    def __call__(self) -> np.ndarray:
        """The value, batch 1."""
        return self.value.copy()


def _product(layer, x: np.ndarray) -> np.ndarray:
    """layer(x) for x (N, in); one sample goes to the matvec kernel without the batched path's padding."""
    if x.shape[0] == 1 and layer.threads == 1:
        y = np.empty(layer.out_features, np.float32)
        if isinstance(layer, SparseLinear):
            y[:] = layer.bias
            layer.layout.matvec(np.ascontiguousarray(x[0]), y)
        else:
            layer.matvec(np.ascontiguousarray(x[0]), y)
        return y.reshape(1, -1)
    return layer(x)


def _lstm_step(gi, gh, c):
    i, f, g, o = np.split(gi + gh, 4, axis=1)
    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    return _sigmoid(o) * np.tanh(c), c


def _gru_step(gi, gh, h):
    i_r, i_z, i_n = np.split(gi, 3, axis=1)
    h_r, h_z, h_n = np.split(gh, 3, axis=1)
    r, z = _sigmoid(i_r + h_r), _sigmoid(i_z + h_z)
    n = np.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


class Recurrent:
    """A multi-layer (bi)directional LSTM or GRU over (N, T, I) from zero state; returns the sequence
    output (N, T, D*H), or one layer/direction's final h or c (N, H). It runs the layers that `op` and the
    records in `serves` (other outputs of the same call) need."""

    def __init__(self, op: graph.Recurrent, layers: dict, batch: int, steps: int, threads: int, precision: str,
                 where: str, serves: tuple = ()):
        self.op, self.where, self.lstm = op, where, isinstance(op, graph.Lstm)
        self.hidden = layers[graph.weight_names(op.layer, 1, False)[0][1]].shape[1]
        needs = [o.num_layers if o.output == "sequence" else o.index // o.directions + 1 for o in (op, *serves)]
        last = max(needs)
        self.matrices = [
            tuple(SparseLinear.from_layer(layers[n], layers[n].bias, batch=b, threads=threads, precision=precision)
                  for n, b in zip(names, (batch * steps, batch)))
            for names in graph.weight_names(op.layer, last, op.bidirectional)]
        self.layer_name = op.layer

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Run the layers needed for the op's output on a batch of sequences."""
        return pick(self.op, *self.run(x))

    def run(self, x: np.ndarray) -> tuple[np.ndarray, list]:
        """The last layer run's sequence output and the final (h, c) of every layer and direction run
        (c None for a GRU)."""
        d = self.op.directions
        finals = []
        for k in range(len(self.matrices) // d):
            runs = [self._direction(x, *self.matrices[k * d + j], reverse=j == 1) for j in range(d)]
            finals += [(h, c) for _, h, c in runs]
            x = runs[0][0] if d == 1 else np.concatenate([r[0] for r in runs], axis=2)
        return x, finals

    def _direction(self, x, w_ih, w_hh, reverse: bool):
        """One layer in one direction: (sequence output (N, T, H), final h, final c or None)."""
        n, steps, _ = x.shape
        gates = _product(w_ih, np.ascontiguousarray(x.reshape(n * steps, -1))).reshape(n, steps, -1)
        h = np.zeros((n, self.hidden), np.float32)
        c = np.zeros_like(h) if self.lstm else None
        out = np.empty((n, steps, self.hidden), np.float32)
        for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
            gh = np.broadcast_to(w_hh.bias, gates[:, t].shape) if t == (steps - 1 if reverse else 0) \
                else _product(w_hh, h)
            if self.lstm:
                h, c = _lstm_step(gates[:, t], gh, c)
            else:
                h = _gru_step(gates[:, t], gh, h)
            out[:, t] = h
        return out, h, c


def pick(op: graph.Recurrent, seq: np.ndarray, finals: list) -> np.ndarray:
    """Record `op`'s output from a run (Recurrent.run): the sequence, or one final h or c."""
    if op.output == "sequence":
        return seq
    h, c = finals[op.index]
    return h if op.output == "h_n" else c


def _part(op: graph.Recurrent) -> tuple:
    return op.output, op.index


class SharedRun:
    """One LSTM/GRU call whose outputs several records use: it runs once per input, and each record's
    op (`part`) takes its output from that run."""

    def __init__(self, recurrent: Recurrent, ops: list):
        self.recurrent = recurrent
        self.wanted = Counter(_part(o) for o in ops)
        self._x = self._result = None
        self._left: Counter = Counter()

    def part(self, op: graph.Recurrent):
        """The runnable op of record `op`, one of the call's records."""
        key = _part(op)

        def take(x: np.ndarray) -> np.ndarray:
            # a new input, or one whose output this record already took (an earlier call that stopped midway)
            if x is not self._x or not self._left[key]:
                self._x, self._result, self._left = x, self.recurrent.run(x), Counter(self.wanted)
            self._left[key] -= 1
            out = pick(op, *self._result)
            if self._left[key]:
                out = out.copy()  # a second record takes the same output, and a later op may overwrite this one
            if not any(self._left.values()):
                self._x = self._result = None  # every record has its output: hold nothing between calls
            return out
        return take


def _same_call(forward: graph.ForwardPass, i: int) -> list[int]:
    """The recurrent records that run the same LSTM/GRU call as record i: same kind and layers, same input."""
    op = forward.ops[i]
    call = (type(op), op.layer, op.num_layers, op.bidirectional, forward.inputs[i])
    return [j for j, o in enumerate(forward.ops) if isinstance(o, graph.Recurrent)
            and (type(o), o.layer, o.num_layers, o.bidirectional, forward.inputs[j]) == call]


def build_sequence_op(op: graph.Op, layers: dict, forward: graph.ForwardPass, i: int, batch: int, threads: int,
                      precision: str, where: str, shared: dict | None = None):
    """The runnable op of an embedding, parameter, lstm, gru or select record. Records of one LSTM/GRU call share
    its run through `shared` (one dict for all the pass's ops; without it each record runs the call)."""
    if isinstance(op, graph.Embedding):
        return Embedding(layers[op.layer], where)  # a lookup: the same in every precision
    if isinstance(op, graph.Parameter):
        return ParameterValue(layers[op.layer], op.shape)  # likewise
    if isinstance(op, graph.Recurrent):
        steps = forward.input_shapes(i)[0][0]
        same = _same_call(forward, i)
        if shared is None or len(same) == 1:
            return Recurrent(op, layers, batch, steps, threads, precision, where)
        if same[0] not in shared:
            ops = [forward.ops[j] for j in same]
            shared[same[0]] = SharedRun(Recurrent(op, layers, batch, steps, threads, precision, where, tuple(ops)),
                                        ops)
        return shared[same[0]].part(op)
    axis = op.dim % len(forward.input_shapes(i)[0]) + 1
    return lambda x: np.take(x, op.index, axis=axis)  # a copy: later in-place ops cannot reach x
