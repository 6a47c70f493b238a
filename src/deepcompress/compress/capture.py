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
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

from ..errors import UserError
from ..format import graph
from .capture_length import another_length, length_free, check_variable_axes
from .capture_base import (OTHER_BATCH_VALUE, SKIP, VALUE, WEIGHTS_ONLY_HINT, Unsupported, node_shape, refuse,
                           tensor_inputs)
from .capture_ops import ARITHMETIC, call_op, module_op, zero_padding
from .capture_alias import clobbers_a_later_read, writes_its_input
from .capture_attention import AttentionCapture
from .capture_index import NARROWS, Parts
from .capture_param import is_batch_expand, is_position_ids, is_positions, parameter_op, position_op
from .capture_seq import SequenceCapture
from .capture_trace import failed_on_example, trace_forward
from .slots import check_ties

__all__ = ["Unsupported", "capture", "check_variable_axes"]


def capture(model: nn.Module, example_input: torch.Tensor, variable_axes: tuple = ()) -> list[graph.Op]:
    """The model's forward pass (in eval mode) on inputs shaped like `example_input` (batch first) as op
    records; Unsupported (a UserError) naming the first module or function the schema cannot express.
    `variable_axes` (axes of example_input, the batch being 0) may have another length at run time: the
    pass is captured at a second length too, and a reshape that holds the length infers it (-1)."""
    example_input = torch.as_tensor(example_input)
    axes = check_variable_axes(variable_axes, example_input.dim())
    ops = _capture_at(model, example_input, axes)
    if not axes:
        return ops
    shorter = another_length(example_input, axes)
    try:
        other = _capture_at(model, shorter, axes)
    except UserError as err:
        raise Unsupported(f"variable_axes {list(axes)}: the model fails at another length (an input of "
                          f"shape {tuple(shorter.shape)}: {err})") from None
    return length_free(ops, other, axes)


def _capture_at(model: nn.Module, example_input: torch.Tensor, variable_axes: tuple) -> list[graph.Op]:
    """capture() at the example's own shape."""
    traced = trace_forward(model, example_input, variable_axes)
    placeholders = [n for n in traced.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise Unsupported(f"the model takes {len(placeholders)} inputs; the file describes models of one input "
                          f"({WEIGHTS_ONLY_HINT})")
    was_training = model.training
    model.eval()
    # a batch of two shows an op that mixes samples (a reshape across the batch), which batch 1 hides
    example_input = torch.cat([example_input[:1], example_input[:1]]) if len(example_input) < 2 else example_input
    try:
        with torch.no_grad():
            # eagerly first: ShapeProp prints a traceback to stderr when a node fails
            eager = model(example_input.clone())  # a clone: forward() may write into its input
            traced_out = _Recording(traced, VALUE).propagate(example_input.clone())
            if _numbers_used_in_arithmetic(traced):
                _values_at_another_batch(traced, torch.cat([example_input[:1]] * (len(example_input) + 1)))
    except Exception as err:  # the user's model failed on the example: say so, with its own message
        raise failed_on_example(example_input, err) from None
    finally:
        model.train(was_training)
    ops = _ops_of(traced, dict(model.named_modules()), len(example_input))  # what it cannot express first
    _check_trace_agrees(eager, traced_out)
    return _untied(ops, model)


def _untied(ops: list[graph.Op], model: nn.Module) -> list[graph.Op]:
    """The ops with each layer op whose weight is tied to an earlier layer's (an output layer sharing the
    embedding's table) reading that layer, which the file stores once (slots.check_ties refuses the rest)."""
    tied = check_ties(model)
    return [dataclasses.replace(op, layer=tied[op.layer]) if isinstance(op, graph.LayerOp) and op.layer in tied
            else op for op in ops]


def _check_trace_agrees(eager, traced) -> None:
    """Refuse a trace whose output differs from the model's own on the example: torch.fx records
    `a += b` as `a + b`, so a write into a view, or into a tensor also named elsewhere, is lost."""
    if not (isinstance(eager, torch.Tensor) and isinstance(traced, torch.Tensor)):
        return  # several outputs: refused when the ops are built
    same = eager.shape == traced.shape and (
        torch.allclose(eager, traced, rtol=1e-5, atol=1e-6, equal_nan=True) if eager.is_floating_point()
        else torch.equal(eager, traced))
    if not same:
        raise Unsupported("torch.fx's trace of forward() computes other values than the model on the example "
                          "input: an in-place write (+=, *=, ...) into a view (a slice, a chunk's part, a "
                          "reshape) or into a tensor also named elsewhere is lost in the trace; write it out of "
                          f"place (y = x + b) ({WEIGHTS_ONLY_HINT})")


class _Recording(ShapeProp):
    """ShapeProp that also keeps every non-tensor result (sizes, numbers) in node.meta[key]."""

    def __init__(self, module: torch.fx.GraphModule, key: str):
        super().__init__(module)
        self.key = key

    def run_node(self, n: torch.fx.Node):
        """Run the node, recording its result when it is not a tensor."""
        result = super().run_node(n)
        if not isinstance(result, torch.Tensor):
            n.meta[self.key] = result
        return result


class _Numbers(torch.fx.Interpreter):
    """Runs the graph keeping every non-tensor result in node.meta[OTHER_BATCH_VALUE] (shapes untouched)."""

    def run_node(self, n: torch.fx.Node):
        """Run the node, recording its result when it is not a tensor."""
        result = super().run_node(n)
        if not isinstance(result, torch.Tensor):
            n.meta[OTHER_BATCH_VALUE] = result
        return result


def _numbers_used_in_arithmetic(traced: torch.fx.GraphModule) -> bool:
    """Whether forward() computes a number (from sizes) that arithmetic on tensors, attention or indexing
    reads, or an upsampling or expand size."""
    return any(isinstance(n.meta.get(VALUE), (int, float)) and any(
        u.target in ARITHMETIC or u.target in NARROWS or u.target in (F.scaled_dot_product_attention,
                                                                      operator.getitem, F.interpolate, "expand",
                                                                      torch.arange)
        for u in n.users)
        for n in traced.graph.nodes)


def _values_at_another_batch(traced: torch.fx.GraphModule, example: torch.Tensor) -> None:
    """Record the numbers forward() computes on `example`, a batch one larger than the captured one: a
    number that differs from its value there depends on the batch size. A model that fails here hard-codes
    its batch; the numbers it computed stay unrecorded, so they are refused as batch-dependent."""
    try:
        _Numbers(traced).run(example)
    except Exception:  # it ran on batch 2, so it hard-codes the batch: number_value refuses what it reads
        pass


def _check_node(node: torch.fx.Node, sources: list, modules: dict, batch: int, where: str, order: dict) -> None:
    """Refuse what the file would compute differently: an op whose output does not keep the batch as its
    first axis, or an in-place op whose input's memory is read after it (capture_alias)."""
    shape = node_shape(node)
    if shape and shape[0] != batch:
        refuse(where, f"an operation whose output {tuple(shape)} does not keep the batch ({batch}) as its "
                       "first dimension", "keep the batch dimension first and separate")
    if sources and writes_its_input(node, modules) and clobbers_a_later_read(node, modules, order):
        refuse(where, "an in-place operation whose input (or a view of it) is used again",
               "use the out-of-place form")


def _is_tensor(node: torch.fx.Node) -> bool:
    return isinstance(node.meta.get("tensor_meta"), TensorMetadata)


def _refuse_tensor_parts(node: torch.fx.Node) -> None:
    """Refuse a call that returns several tensors (max over a dim, sort, topk; chunk and split are
    capture_index.Parts'): the file has no op for it."""
    value = node.meta.get(VALUE)
    if node.users and isinstance(value, (tuple, list)) and any(isinstance(v, torch.Tensor) for v in value):
        name = getattr(node.target, "__name__", node.target)
        fix = ("for the values use x.amax(dim)" if name == "max" else
               "pooling indices are not supported" if "with_indices" in str(name) else
               "the file has no op for it")
        refuse(f"forward() {node.name}", f"{name}() returning {len(value)} tensors", fix)


def _ops_of(traced: torch.fx.GraphModule, modules: dict, batch: int) -> list[graph.Op]:
    index: dict[torch.fx.Node, int] = {}
    pads: dict[torch.fx.Node, tuple] = {}  # zero padding merged into the convolutions reading it
    ops: list[graph.Op] = []
    seq, parts, attention = SequenceCapture(modules, refuse), Parts(), AttentionCapture(modules)
    order = {n: i for i, n in enumerate(traced.graph.nodes)}
    for node in traced.graph.nodes:
        if node.op == "placeholder":
            index[node] = graph.INPUT
            continue
        if node.op == "output":
            return _finish(node, index, ops)
        if is_position_ids(node, modules):  # torch.arange(t): read only by the position lookup below
            continue
        if node.target is torch.arange:
            refuse(f"forward() {node.name}", "torch.arange() other than position ids read by an nn.Embedding",
                   "look positions up as self.wpe(torch.arange(t)) or torch.arange(0, t).unsqueeze(0)")
        if is_positions(node, modules):  # wpe(torch.arange(t)): the table's first t rows
            _append(node, position_op(node, modules, batch), (), index, ops)
            continue
        if attention.take(node, lambda n, chain, source: _expand_as(n, chain, source, index, ops)):
            continue
        if seq.take(node, index, lambda n, op, src: _append(n, op, src, index, ops)):
            continue
        if parts.take(node, lambda n, op, source: _append(n, op, (_known(source, n, index),), index, ops)):
            continue
        if node.op == "get_attr":  # a parameter forward() reads itself
            _append(node, parameter_op(node, modules, batch), (), index, ops)
            continue
        if is_batch_expand(node):  # the parameter itself: concatenation broadcasts it over the batch
            index[node] = index[node.args[0]]
            continue
        if node.op != "call_module" and not node_shape(node):
            _refuse_tensor_parts(node)
            if _is_tensor(node):  # a 0-d tensor: a reduction over the batch too
                refuse(f"forward() {node.name}", "an operation whose output is a single number (shape ())",
                       "keep the batch dimension first and reduce only over the other dimensions")
            continue  # an int or a size: only shape arguments of a reshape read it
        sources = tensor_inputs(node)
        if any(s not in index for s in sources):
            raise Unsupported(f"{node.name}: reads a value the file cannot describe ({WEIGHTS_ONLY_HINT})")
        in_shape = node_shape(sources[0])[1:] if sources else ()
        where = node.target if node.op == "call_module" else f"forward() {node.name}"
        _check_node(node, sources, modules, batch, where, order)
        pad = zero_padding(node, modules, where)
        if pad is not None:  # merged into the convolutions that read it
            index[node], pads[node] = index[sources[0]], pad
            continue
        op = (module_op(node.target, modules[node.target], in_shape) if node.op == "call_module"
              else call_op(node, where, in_shape))
        if sources and sources[0] in pads:
            op = dataclasses.replace(op, padding=tuple(a + b for a, b in zip(op.padding, pads[sources[0]])))
        if op == SKIP:
            index[node] = index[sources[0]]
            continue
        if isinstance(op, list):
            index[node] = _expand(op, index, ops, sources[0] if sources else None)
            continue
        if op == "reshape":
            out = node_shape(node)[1:]
            op = graph.Flatten() if len(out) == 1 else graph.Reshape(tuple(out))
        _append(node, op, tuple(index[s] for s in sources), index, ops)
    raise Unsupported("the traced graph has no output")


def _known(source: torch.fx.Node, node: torch.fx.Node, index: dict) -> int:
    """The op index of the value `node` reads; Unsupported if the file does not hold that value."""
    if source not in index:
        raise Unsupported(f"{node.name}: reads a value the file cannot describe ({WEIGHTS_ONLY_HINT})")
    return index[source]


def _append(node: torch.fx.Node, op: graph.Op, src: tuple, index: dict, ops: list) -> None:
    """Add op (reading the op indices `src`) as the value of `node`."""
    if src != (len(ops) - 1,) or op.arity != 1:
        op = _with_inputs(op, src)
    index[node] = len(ops)
    ops.append(op)


def _expand(chain: list, index: dict, ops: list, source: torch.fx.Node | None) -> int:
    """Append a node's chain of (op, inputs) (an input: a graph node, an earlier op of the chain, or None
    for the node's first input `source`); the index of its last op."""
    base = len(ops)
    for op, refs in chain:
        src = tuple(index[source if r is None else r] if r is None or isinstance(r, torch.fx.Node) else base + r
                    for r in refs)
        ops.append(op if src == (len(ops) - 1,) and op.arity == 1 else _with_inputs(op, src))
    return len(ops) - 1


def _expand_as(node: torch.fx.Node, chain: list, source: torch.fx.Node, index: dict, ops: list) -> None:
    """Append a chain of (op, inputs) reading `source` as the value of `node`."""
    index[node] = _expand(chain, index, ops, source)


def _with_inputs(op: graph.Op, src: tuple) -> graph.Op:
    return dataclasses.replace(op, inputs=src)


def _finish(node: torch.fx.Node, index: dict, ops: list) -> list[graph.Op]:
    out = node.args[0]
    if not isinstance(out, torch.fx.Node) or out not in index:
        fix = (": wrap the model in a module whose forward returns the tensor alone (model(x)[0] for nanoGPT's "
               "(logits, loss))" if isinstance(out, (tuple, list)) else "")
        raise Unsupported(f"the model returns {type(out).__name__}; the file describes models with one "
                          f"tensor output{fix} ({WEIGHTS_ONLY_HINT})")
    if not ops or index[out] != len(ops) - 1:
        raise Unsupported(f"the model's output ({out.name}) is not its last operation ({WEIGHTS_ONLY_HINT})")
    return ops
