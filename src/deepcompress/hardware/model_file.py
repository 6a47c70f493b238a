"""A compressed model file (.dcz) as workloads for the hardware models: each layer as the file stores it
(the one sparse-layer type, deepcompress.format.QuantizedLayer, never decoded to floats and re-encoded)
and its shape, with conv layers' input sizes taken from the file's forward pass (deepcompress.format.graph,
the same parser the runtime uses). The format package is numpy + stdlib, so this keeps hardware torch-free.

Sequences: an fc layer applied to (..., in) runs once per position (FileLayer.steps per sample); a conv1d
layer is the 1 x k convolution over its length, with its left and right padding; a
matrix product between activations has no layer: activation_matmuls lists it as a dense fc workload.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from ..errors import UserError
from ..format import graph
from ..format.layer import QuantizedLayer
from .netspecs import LayerShape


@dataclass(frozen=True)
class FileLayer:
    """One layer of a file as a workload: the file's layer itself, its shape for the cost models (None
    for a conv whose input size is unknown) and, then, why."""

    layer: QuantizedLayer
    shape: LayerShape | None
    note: str = ""
    steps: int = 1  # input vectors per sample: T for a recurrent matrix, the positions for an fc over a sequence
    role: str = ""  # "w_ih" or "w_hh" for an LSTM/GRU matrix (a W_hh's first step reads the zero state)

    @property
    def name(self) -> str:
        """The layer's name in the file."""
        return self.layer.name

    @property
    def kind(self) -> str:
        """'fc' or 'conv'."""
        return self.layer.kind

    @property
    def index_bits(self) -> int:
        """Width of a codebook index in the file."""
        return self.layer.index_bits


def read_pass(meta: dict, layers: dict, input_shape: tuple | None = None) -> tuple[graph.ForwardPass | None, str]:
    """The file's forward pass, parsed once for every cost model (layers: name -> QuantizedLayer; at
    `input_shape`, another length on the file's variable axes, if given); or None and a note saying why it
    cannot be read."""
    try:
        return graph.parse_forward(meta, layers, input_shape), ""
    except graph.GraphError as exc:
        return None, f"cannot read the forward pass ({exc})"


def conv_inputs(forward: graph.ForwardPass | None) -> dict[str, dict]:
    """Input size, stride, padding (top, bottom, left, right), dilation and groups of each conv op of the
    parsed forward pass (none without one); a Conv1d is a conv of height 1."""
    if forward is None:
        return {}
    found = {}
    for i, op in enumerate(forward.ops):
        if isinstance(op, graph.Conv1d):
            found[op.layer] = {"in_hw": (1, forward.input_shapes(i)[0][1]), "stride": (1, op.stride),
                               "padding": (0, 0, *op.padding), "dilation": (1, op.dilation), "groups": op.groups}
        elif isinstance(op, graph.Conv):
            found[op.layer] = {"in_hw": tuple(forward.input_shapes(i)[0][1:]), "stride": tuple(op.stride),
                               "padding": tuple(op.padding), "dilation": tuple(op.dilation), "groups": op.groups}
    return found


@dataclass(frozen=True)
class MatmulWork:
    """A matrix product between activations, (M, K) x (K, N), `count` times per sample (heads and other
    leading axes): the fc workload `shape` (K inputs, N outputs, dense) on M input vectors."""

    name: str
    shape: LayerShape
    rows: int
    count: int


def activation_matmuls(forward: graph.ForwardPass | None) -> list[MatmulWork]:
    """The matmul ops of the parsed forward pass as workloads; empty when it has none or there is none."""
    if forward is None:
        return []
    work = []
    for i, op in enumerate(forward.ops):
        if isinstance(op, graph.MatMul):
            a, out = forward.input_shapes(i)[0], forward.outputs[i]
            name = f"matmul{i}"  # i: the op's index in the pass
            work.append(MatmulWork(name, LayerShape(name, "fc", a[-1], out[-1]), out[-2], math.prod(out[:-2])))
    return work


def sequence_uses(forward: graph.ForwardPass | None, layers: dict) -> dict[str, dict]:
    """Per layer the parsed forward pass uses more than once per sample, or not as a matrix product:
    "steps" (matrix-vector products per sample), "role" ("w_ih" or "w_hh" of an LSTM/GRU), or "note" (an
    embedding or a parameter: not costed; an embedding table an fc op also reads, tied, is costed as
    that). Empty when there is no pass (read_pass says why) or no such use."""
    if forward is None:
        return {}
    uses = {}
    products = {op.layer for op in forward.ops if isinstance(op, graph.Fc)}  # also read as a matrix (tied)
    for i, op in enumerate(forward.ops):
        if isinstance(op, graph.Parameter):
            uses[op.layer] = {"note": f"parameter: {math.prod(op.shape)} value(s) the model holds, read by "
                                      "element-wise arithmetic, not a matrix product; not costed"}
            continue
        shape = forward.input_shapes(i)[0]
        if isinstance(op, graph.Embedding) and op.layer not in products:
            uses[op.layer] = {"note": f"embedding: a table lookup (one row of {layers[op.layer].shape[1]} values "
                                      f"read per token), not a matrix product; not costed"}
        elif isinstance(op, graph.Recurrent):
            for w_ih, w_hh in graph.weight_names(op.layer, op.num_layers, op.bidirectional):
                uses[w_ih] = {"steps": shape[0], "role": "w_ih"}
                uses[w_hh] = {"steps": shape[0], "role": "w_hh"}
        elif isinstance(op, graph.Fc) and len(shape) > 1:
            uses[op.layer] = {"steps": math.prod(shape[:-1])}
    return uses


class ModelFile(NamedTuple):
    """A .dcz file read for the cost models: its layers as workloads, its meta, a note on conv shape
    tracing, and its forward pass (None when the file has none or it cannot be read)."""

    layers: list[FileLayer]
    meta: dict
    note: str
    forward: graph.ForwardPass | None


def load_model(path, input_shape: tuple | None = None) -> ModelFile:
    """The .dcz file at `path` for the cost models, its forward pass parsed once (for per-sample inputs
    of `input_shape`: another length on the file's variable axes, e.g. a sentence's tokens)."""
    from .. import format as dcz

    try:
        layers, meta = dcz.read(path)
    except (OSError, ValueError, dcz.FormatError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    by_name = {q.name: q for q in layers}
    forward, unreadable = read_pass(meta, by_name, input_shape)
    if input_shape is not None and forward is None:
        raise UserError(f"{path}: {unreadable}")
    has_conv = any(q.kind == "conv" for q in layers)
    traced = conv_inputs(forward)
    note = unreadable if has_conv else ""
    uses = sequence_uses(forward, by_name)
    out = []
    for q in layers:
        use = uses.get(q.name, {})
        if "note" in use:
            out.append(FileLayer(q, None, use["note"]))
        elif q.kind == "fc":
            out.append(FileLayer(q, LayerShape(q.name, "fc", q.shape[1], q.shape[0], weight_density=q.density),
                                 steps=use.get("steps", 1), role=use.get("role", "")))
        elif q.name in traced:
            t = traced[q.name]
            shape = LayerShape(q.name, "conv", q.shape[1] * t["groups"], q.shape[0], t["in_hw"], tuple(q.shape[2:]),
                               t["stride"], t["padding"], t["groups"], q.density, t["dilation"])
            out.append(FileLayer(q, shape))
        else:
            out.append(FileLayer(q, None, f"input size unknown: {note or 'layer not in the forward pass'}"))
    return ModelFile(out, meta, note, forward)
