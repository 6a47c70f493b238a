"""torch.fx tracing of a user's forward() at the file's input shape: what plain symbolic tracing refuses but
a file of that shape can still describe exactly.

- Arguments after the input that have defaults (nanoGPT's `targets=None`) are fixed at their defaults: the
  file describes the model called with its one input.
- Control flow on the input's shape (nanoGPT's `assert t <= block_size`, `if len(x.shape) == 3`) is
  decided at the example's shape, which the file fixes. A branch on the batch size or on a variable axis
  is refused: the file runs at other batches and lengths, where the branch could go the other way. A
  branch on values is refused as torch.fx refuses it.

    traced = trace_forward(model, example_input, variable_axes=())   # a torch.fx.GraphModule
"""

from __future__ import annotations

import inspect
import operator

import torch
import torch.fx
from torch import nn

from ..errors import UserError
from .capture_base import WEIGHTS_ONLY_HINT, Unsupported

# operations on sizes and numbers whose result a shape decides
_NUMBER_OPS = {operator.add, operator.sub, operator.mul, operator.floordiv, operator.mod, operator.lt,
               operator.le, operator.gt, operator.ge, operator.eq, operator.ne, operator.not_, operator.neg}
_FIXED_CHECKS = {torch.fx._symbolic_trace._assert_is_none, torch._assert}


class _ShapeTracer(torch.fx.Tracer):
    """A tracer that decides `if` / `assert` on the input's shape at the example's shape."""

    def __init__(self, shape: torch.Size | None, variable_axes: tuple):
        super().__init__()
        self.shape, self.variable_axes = shape, variable_axes

    def to_bool(self, obj: torch.fx.Proxy) -> bool:
        value, axes = _shape_value(obj.node, self.shape) if self.shape is not None else (None, None)
        if not isinstance(value, (bool, int, float)):
            raise _value_flow()
        where = f"forward() {obj.node.name}"
        if 0 in axes:
            raise Unsupported(f"{where}: an if or assert on the batch size; the file runs at any batch "
                              f"({WEIGHTS_ONLY_HINT})")
        if axes & set(self.variable_axes):
            raise Unsupported(f"{where}: an if or assert on the length of variable axis "
                              f"{sorted(axes & set(self.variable_axes))[0]}; the file runs at any length there, "
                              f"where it could go the other way: fix the length ({WEIGHTS_ONLY_HINT})")
        return bool(value)

    def proxy(self, node: torch.fx.Node) -> torch.fx.Proxy:
        return _ShapeProxy(node, self)


class _ShapeLen:
    """len() of a proxy: the input's rank when it holds the input's shape (`len(x.shape)`); its attributes
    alike."""

    def __getattr__(self, k: str) -> torch.fx.proxy.Attribute:
        return _ShapeAttribute(self, k)

    def __len__(self) -> int:
        try:
            value = _shape_value(self.node, self.tracer.shape)[0] if self.tracer.shape is not None else None
        except Unsupported:  # not decided by the shape: refused below with what len() means
            value = None
        if isinstance(value, tuple):
            return len(value)
        where = f"forward() {self.node.name}"
        if isinstance(value, _Input):
            raise Unsupported(f"{where}: len() of the input is the batch size; the file runs at any batch "
                              f"({WEIGHTS_ONLY_HINT})")
        raise Unsupported(f"{where}: len() of a traced value other than the input's shape; len() of a tensor is "
                          "its first axis's size: use x.shape[i] or x.size(i) for an axis other than the batch, "
                          f"len(x.shape) or x.dim() for the input's rank ({WEIGHTS_ONLY_HINT})")


class _ShapeProxy(_ShapeLen, torch.fx.Proxy):
    """The tracer's proxies."""


class _ShapeAttribute(_ShapeLen, torch.fx.proxy.Attribute):
    """Their attributes (x.shape, x.mT.shape)."""


def _shape_value(node: torch.fx.Node, shape: torch.Size) -> tuple:
    """(value, axes of the input read) of a node that only a shape decides; Unsupported otherwise, with
    torch.fx's own reason (control flow on values)."""
    def arg(a):
        return _shape_value(a, shape) if isinstance(a, torch.fx.Node) else (a, frozenset())

    if node.op == "placeholder" and node.prev.op == "root":  # the input; other arguments are not shapes
        return _Input(shape), frozenset()
    if node.op == "call_method" and node.target == "size" or (node.op == "call_function" and node.target is getattr
                                                           and node.args[1:] == ("shape",)):
        source, _ = arg(node.args[0])
        dim = None if node.op != "call_method" else node.args[1] if len(node.args) == 2 else node.kwargs.get("dim")
        if isinstance(source, _Input) and (dim is None or isinstance(dim, int)):
            if dim is not None:
                axis = dim % len(shape)
                return shape[axis], frozenset({axis})
            return tuple(shape), frozenset(range(len(shape)))
    if node.op == "call_method" and node.target in ("dim", "ndimension") and isinstance(arg(node.args[0])[0], _Input):
        return len(shape), frozenset()
    if node.op == "call_function" and node.target is operator.getitem:
        (sizes, axes), (i, index_axes) = arg(node.args[0]), arg(node.args[1])
        if isinstance(sizes, tuple) and isinstance(i, int) and len(sizes) == len(shape):
            return sizes[i], frozenset({i % len(shape)}) | index_axes
    if node.op == "call_function" and node.target in _NUMBER_OPS and not node.kwargs:
        values = [arg(a) for a in node.args]
        if all(not isinstance(v, _Input) for v, _ in values):
            return node.target(*(v for v, _ in values)), frozenset().union(*(a for _, a in values))
    raise _value_flow()


def _value_flow() -> Unsupported:
    """torch.fx's refusal of control flow that a shape does not decide."""
    return Unsupported("cannot capture the forward pass with torch.fx (TraceError: symbolically traced variables "
                       "cannot be used as inputs to control flow); make forward() traceable "
                       f"({WEIGHTS_ONLY_HINT})")


class _Input:
    """The traced input in a shape expression (only its shape is known)."""

    def __init__(self, shape: torch.Size):
        self.shape = shape


def trace_forward(model: nn.Module, example_input: torch.Tensor | None, variable_axes: tuple = ()
                  ) -> torch.fx.GraphModule:
    """model's forward pass traced with torch.fx for inputs shaped like `example_input`: arguments after the
    first fixed at their defaults (a second argument without one is left an input, for the caller to
    refuse), control flow on the input's shape decided at that shape (without an example, refused).
    Unsupported for what torch.fx cannot trace, with its reason."""
    fixed = _defaults_after_input(model)
    tracer = _ShapeTracer(None if example_input is None else example_input.shape, variable_axes)
    try:
        graph = tracer.trace(model, concrete_args=fixed or None)
    except Unsupported:
        raise
    except Exception as err:  # fx refuses data-dependent control flow and more; its message says which
        if example_input is not None:
            _check_runs(model, example_input)  # or the model's own check failed at this shape: its message
        what = str(err).splitlines()[0] if str(err) else type(err).__name__
        fix = ("unpack a chunk / split into names (q, k, v = x.chunk(3, -1)) instead of iterating over it"
               if "cannot be iterated" in what else "make forward() traceable")
        raise Unsupported(f"cannot capture the forward pass with torch.fx ({type(err).__name__}: {what}); "
                          f"{fix} ({WEIGHTS_ONLY_HINT})") from None
    _drop_fixed_arguments(graph)
    return torch.fx.GraphModule(tracer.root, graph, type(model).__name__)


def _check_runs(model: nn.Module, example_input: torch.Tensor) -> None:
    """UserError with the model's own message if it fails on the example input (in eval mode)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example_input.clone())
    except Exception as err:
        raise failed_on_example(example_input, err) from None
    finally:
        model.train(was_training)


def failed_on_example(example_input: torch.Tensor, err: Exception) -> UserError:
    """The error saying the user's model failed on the example input, with its own first line."""
    cause = err.__cause__ or err
    first = str(cause).splitlines()[0] if str(cause) else ""
    return UserError(f"the model failed on the example input of shape {tuple(example_input.shape)} "
                     f"({type(cause).__name__}: {first})")


def _defaults_after_input(model: nn.Module) -> dict:
    """{name: default} of forward()'s parameters after the first; a later parameter without a default
    (a second input) is left to the caller, which counts the inputs. Unsupported for a default that is not
    None, a number, a string or a boolean (torch.fx would take a tuple's or a tensor's parts for inputs)."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())[1:]
    except (TypeError, ValueError):
        return {}
    fixed = {p.name: p.default for p in params
             if p.default is not inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    for name, value in fixed.items():
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise Unsupported(f"forward() argument {name!r} has a default of type {type(value).__name__}; the file "
                              "describes the model called with its input alone, fixing later arguments at "
                              "defaults that are None, numbers, strings or booleans: give it one of those, or wrap "
                              f"the model in a module whose forward takes the input alone ({WEIGHTS_ONLY_HINT})")
    return fixed


def _drop_fixed_arguments(graph: torch.fx.Graph) -> None:
    """Remove the placeholders of arguments fixed at their defaults, with the checks torch.fx adds that
    they keep those values (the file has no such argument to check)."""
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    for node in placeholders[1:]:
        checks = _checks_of(node)
        if not checks:  # not fixed (no default, or positional-only): an input, counted and refused by the caller
            continue
        for check in checks:
            graph.erase_node(check)
        if not node.users:
            graph.erase_node(node)
    graph.lint()


def _checks_of(node: torch.fx.Node) -> list[torch.fx.Node]:
    """The nodes that only check a fixed argument's value (torch.fx's _assert_is_none, or torch._assert on
    `arg == default`), in the order to erase them."""
    checks = []
    for user in list(node.users):
        if user.target in _FIXED_CHECKS:
            checks.append(user)
        elif user.target is operator.eq and all(u.target is torch._assert for u in user.users):
            checks.extend([*user.users, user])
    return checks
