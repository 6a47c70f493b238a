"""The forward pass a .dcz file describes, as typed op records: parsed from and emitted to the meta JSON
once, here, with per-sample output-shape inference. Export writes it; the runtime and the hardware models
read it. The op records live in op_records.py (re-exported here); what each op computes is specified in
docs/FORMAT.md, section 4.1 "Forward pass".

The pass is a DAG in topological order: op i reads the outputs of the ops listed in its "inputs" (indices
of earlier ops, -1 for the model's input; by default the op just before it), and the last op's output is
the model's output.

    fp = parse_forward(meta, {layer.name: layer for layer in layers})   # GraphError if malformed
    fp.ops[i], fp.inputs[i], fp.outputs[i]     # a record, where its inputs come from, its output shape
    parse_forward(meta, layers, input_shape=(2, 16))  # the same pass for inputs of another length
    meta["ops"] = emit_ops(ops)

A file may declare axes of its input whose length varies (meta "variable_axes", e.g. a sequence axis):
`input_shape` then holds the length it was captured at, and the pass must run at any other length.
"""

from __future__ import annotations

from dataclasses import dataclass

from .op_records import (  # noqa: F401 - the op records are part of this module's interface
    GraphError, Op, LayerOp, Fc, Conv, Pool, MaxPool, AvgPool, AdaptiveAvgPool, Upsample, Flatten, IntListOp,
    Reshape, Permute, Activation, Relu, Relu6, LeakyRelu, Sigmoid, Tanh, Gelu, Silu, Hardswish, Hardsigmoid,
    Elu, Softplus, Mish, Prelu, Softmax, LogSoftmax, Affine, LayerNorm, GroupNorm, Binary, Add, Mul, Concat, OPS, pair_of, padding4, parse_op, pool_out)
from .op_records_seq import (  # noqa: F401
    Embedding, Parameter, Recurrent, Lstm, Gru, Select, Slice, check_dtype, parse_input_dtype, weight_names)
from .op_records_attn import Amax, CausalMask, Conv1d, MatMul, Mean, Scalar, Sub, Div  # noqa: F401 - likewise

INPUT = -1  # the index that names the model's input in "inputs"


def parse_input_shape(meta: dict) -> tuple:
    """meta["input_shape"]: the per-sample input shape, a list of positive integers."""
    shape = meta.get("input_shape")
    if (not isinstance(shape, list) or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape)):
        raise GraphError(f"meta 'input_shape' must be a list of positive integers (per sample, e.g. "
                         f"[1, 28, 28]), got {shape!r}")
    return tuple(shape)


def parse_variable_axes(meta: dict, input_shape: tuple) -> tuple:
    """meta["variable_axes"]: per-sample input axes whose length may differ from input_shape's (sorted,
    distinct, each < len(input_shape)); () when absent."""
    axes = meta.get("variable_axes", [])
    if (not isinstance(axes, list) or len(set(axes)) != len(axes)
            or not all(isinstance(a, int) and not isinstance(a, bool) and 0 <= a < len(input_shape) for a in axes)):
        raise GraphError(f"meta 'variable_axes' must be a list of distinct per-sample axes of input_shape "
                         f"{list(input_shape)} (0..{len(input_shape) - 1}), got {axes!r}")
    return tuple(sorted(axes))


def check_input_shape(shape: tuple, stored: tuple, variable: tuple) -> str | None:
    """Why a per-sample input shape does not fit a pass stored at `stored` with `variable` axes (None if
    it fits: the same rank, the same length on every fixed axis, >= 1 on the variable ones)."""
    if len(shape) != len(stored):
        return f"{len(shape)} per-sample axes, the model takes {len(stored)}"
    for axis, (got, want) in enumerate(zip(shape, stored)):
        if axis in variable and got < 1:
            return f"axis {axis} (variable) has length {got}; it must be >= 1"
        if axis not in variable and got != want:
            return f"axis {axis} has length {got}; the model takes {want} there"
    return None


def _another_length(shape: tuple, variable: tuple) -> tuple:
    """input_shape with each variable axis one shorter (one longer where it is 1 or 2): the length a
    reader checks the pass at."""
    return tuple(d + (1 if d < 3 else -1) if a in variable else d for a, d in enumerate(shape))


@dataclass(frozen=True)
class ForwardPass:
    """A file's forward pass: the per-sample input shape, the op records in order, where each op's inputs
    come from (indices of earlier ops, INPUT for the model's input) and each op's per-sample output shape."""

    input_shape: tuple
    ops: tuple
    inputs: tuple
    outputs: tuple
    input_dtype: str = "float32"  # or "int64": token ids (meta "input_dtype")
    variable_axes: tuple = ()  # per-sample input axes whose length may differ (meta "variable_axes")

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
        if op.arity == 0:
            return ()
        if op.arity != 1:
            raise GraphError(f"{where}: a {op.name} op must list its inputs")
        return (i - 1,)
    for j in op.inputs:
        if not INPUT <= j < i:
            raise GraphError(f"{where}: input {j} is not an earlier op (0..{i - 1}) or -1 (the model's input)")
    return op.inputs


def parse_forward(meta: dict, layers: dict, input_shape: tuple | None = None) -> ForwardPass:
    """The forward pass in meta ("input_shape", "ops"), checked against `layers` (name -> anything with
    .kind and .shape, e.g. QuantizedLayer): GraphError naming the op when it cannot run. `input_shape`
    (per sample) infers the shapes for inputs of another length on the file's variable axes; without it
    a file that declares variable axes is also checked at a second length."""
    ops = meta.get("ops") if isinstance(meta, dict) else None
    if not isinstance(ops, list) or not ops:
        raise GraphError("the file describes no forward pass (meta 'ops' is missing or empty): it stores "
                         "weights only")
    stored = parse_input_shape(meta)
    variable = parse_variable_axes(meta, stored)
    if input_shape is not None:
        why = check_input_shape(tuple(input_shape), stored, variable)
        if why is not None:
            raise GraphError(f"input shape {list(input_shape)} does not fit the file's input_shape "
                             f"{list(stored)}: {why}")
    elif variable:
        try:
            _infer(ops, _another_length(stored, variable), parse_input_dtype(meta), layers)
        except GraphError as err:
            raise GraphError(f"meta 'variable_axes' {list(variable)}: the forward pass does not run at another "
                             f"length ({err})") from None
    shape = tuple(input_shape) if input_shape is not None else stored
    return ForwardPass(shape, *_infer(ops, shape, parse_input_dtype(meta), layers), variable)


def _infer(ops: list, input_shape: tuple, input_dtype: str, layers: dict) -> tuple:
    """(records, sources, outputs, input_dtype) of the ops for inputs of `input_shape`."""
    records, sources, outputs = [], [], []
    for i, obj in enumerate(ops):
        op = parse_op(obj, i)
        where = f"op {i} ({op.name})"
        src = _sources(op, i, where)
        check_dtype(op, src, input_dtype, where)
        _check_parameter_reads(op, [records[j] if j != INPUT else None for j in src], where)
        shapes = [input_shape if j == INPUT else outputs[j] for j in src]
        records.append(op)
        sources.append(src)
        outputs.append(tuple(op.infer(shapes, layers, where)))
    return tuple(records), tuple(sources), tuple(outputs), input_dtype


def _check_parameter_reads(op: Op, sources: list, where: str) -> None:
    """A parameter's value (batch 1) is read only by add, mul, sub, div or concat with a value that has the
    batch, over which they broadcast it; GraphError for any other reader."""
    held = [isinstance(s, Parameter) for s in sources]
    if any(held) and (not isinstance(op, (Binary, Concat)) or all(held)):
        raise GraphError(f"{where}: reads a parameter op's value; only add, mul, sub, div and concat with "
                         "another op's value may")


def emit_ops(ops) -> list[dict]:
    """meta["ops"] for a sequence of op records."""
    return [op.emit() for op in ops]
