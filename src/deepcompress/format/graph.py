"""The forward pass a .dcz file describes, as typed op records: parsed from and emitted to the meta JSON
once, here, with per-sample output-shape inference. Export writes it; the runtime and the hardware models
read it. The op records live in op_records.py (re-exported here); what each op computes is specified in
docs/FORMAT.md, section 4.1 "Forward pass".

The pass is a DAG in topological order: op i reads the outputs of the ops listed in its "inputs" (indices
of earlier ops, -1 for the model's input; by default the op just before it), and the last op's output is
the model's output.

    fp = parse_forward(meta, {layer.name: layer for layer in layers})   # GraphError if malformed
    fp.ops[i], fp.inputs[i], fp.outputs[i]     # a record, where its inputs come from, its output shape
    meta["ops"] = emit_ops(ops)
"""

from __future__ import annotations

from dataclasses import dataclass

from .op_records import (  # noqa: F401 - the op records are part of this module's interface
    GraphError, Op, LayerOp, Fc, Conv, Pool, MaxPool, AvgPool, AdaptiveAvgPool, Flatten, IntListOp,
    Reshape, Permute, Activation, Relu, Relu6, LeakyRelu, Sigmoid, Tanh, Gelu, Silu, Softmax, Affine,
    LayerNorm, Binary, Add, Mul, Concat, OPS, pair_of, padding4, parse_op, pool_out)
from .op_records_seq import (  # noqa: F401
    Embedding, Recurrent, Lstm, Gru, Select, check_dtype, parse_input_dtype, weight_names)
from .op_records_attn import Conv1d, MatMul, Mean, Scalar, Sub, Div  # noqa: F401 - likewise

INPUT = -1  # the index that names the model's input in "inputs"


def parse_input_shape(meta: dict) -> tuple:
    """meta["input_shape"]: the per-sample input shape, a list of positive integers."""
    shape = meta.get("input_shape")
    if (not isinstance(shape, list) or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape)):
        raise GraphError(f"meta 'input_shape' must be a list of positive integers (per sample, e.g. "
                         f"[1, 28, 28]), got {shape!r}")
    return tuple(shape)


@dataclass(frozen=True)
class ForwardPass:
    """A file's forward pass: the per-sample input shape, the op records in order, where each op's inputs
    come from (indices of earlier ops, INPUT for the model's input) and each op's per-sample output shape."""

    input_shape: tuple
    ops: tuple
    inputs: tuple
    outputs: tuple
    input_dtype: str = "float32"  # or "int64": token ids (meta "input_dtype")

    @property
    def output_shape(self) -> tuple:
        """Per-sample shape of the result (the last op's output)."""
        return self.outputs[-1]

    def shape_of(self, index: int) -> tuple:
        """Per-sample shape of op `index`'s output, or of the model's input for INPUT."""
        return self.input_shape if index == INPUT else self.outputs[index]

    def input_shapes(self, i: int) -> list:
        """Per-sample shapes of op i's inputs."""
        return [self.shape_of(j) for j in self.inputs[i]]


def _sources(op: Op, i: int, where: str) -> tuple:
    if op.inputs is None:
        if op.arity != 1:
            raise GraphError(f"{where}: a {op.name} op must list its inputs")
        return (i - 1,)
    for j in op.inputs:
        if not INPUT <= j < i:
            raise GraphError(f"{where}: input {j} is not an earlier op (0..{i - 1}) or -1 (the model's input)")
    return op.inputs


def parse_forward(meta: dict, layers: dict) -> ForwardPass:
    """The forward pass in meta ("input_shape", "ops"), checked against `layers` (name -> anything with
    .kind and .shape, e.g. QuantizedLayer): GraphError naming the op when it cannot run."""
    ops = meta.get("ops") if isinstance(meta, dict) else None
    if not isinstance(ops, list) or not ops:
        raise GraphError("the file describes no forward pass (meta 'ops' is missing or empty): it stores "
                         "weights only")
    input_shape = parse_input_shape(meta)
    input_dtype = parse_input_dtype(meta)
    records, sources, outputs = [], [], []
    for i, obj in enumerate(ops):
        op = parse_op(obj, i)
        where = f"op {i} ({op.name})"
        src = _sources(op, i, where)
        check_dtype(op, src, input_dtype, where)
        shapes = [input_shape if j == INPUT else outputs[j] for j in src]
        records.append(op)
        sources.append(src)
        outputs.append(tuple(op.infer(shapes, layers, where)))
    return ForwardPass(input_shape, tuple(records), tuple(sources), tuple(outputs), input_dtype)


def emit_ops(ops) -> list[dict]:
    """meta["ops"] for a sequence of op records."""
    return [op.emit() for op in ops]
