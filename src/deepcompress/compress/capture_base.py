"""What the capture modules share: the refusal (`Unsupported`, naming the module and what to do), the keys
of numbers recorded on torch.fx nodes, and reading a node's shape, tensor inputs, numbers and axes."""

from __future__ import annotations

import torch
import torch.fx

from ..errors import UserError

SKIP = "skip"  # a node that passes its input through unchanged at inference (dropout, contiguous)
# node.meta keys of numbers: at the example's batch, and at one more (forward() runs twice, so a number that
# depends on the batch differs between them)
VALUE, OTHER_BATCH_VALUE = "deepcompress_value", "deepcompress_value_batch3"
WEIGHTS_ONLY_HINT = "or write weights only (weights_only=True)"


class Unsupported(UserError):
    """A part of the model the file's forward pass cannot express."""


def refuse(where: str, what: str, fix: str = "") -> None:
    """Raise Unsupported: `what` at `where` is not supported, with the fix and the weights-only way out."""
    raise Unsupported(f"{where}: {what} is not supported{'; ' + fix if fix else ''} ({WEIGHTS_ONLY_HINT})")


def number_value(arg, where: str) -> float:
    """A Python number, or one computed in forward() from sizes that do not depend on the batch."""
    if isinstance(arg, (int, float)) and not isinstance(arg, bool):
        return float(arg)
    value = arg.meta.get(VALUE) if isinstance(arg, torch.fx.Node) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if arg.meta.get(OTHER_BATCH_VALUE) != value:
            refuse(where, f"a number that depends on the batch size ({arg.name})",
                    "compute it from the other dimensions")
        return float(value)
    refuse(where, f"arithmetic with {getattr(arg, 'name', repr(arg))} (neither a number nor a tensor with the "
            "batch first)")


def sample_dim(dim, where: str, what: str) -> int:
    """A dimension of the batched tensor as a per-sample axis (negative ones count from the end)."""
    if isinstance(dim, bool) or not isinstance(dim, int) or dim == 0:
        refuse(where, f"{what} over dim {dim!r}", "give an integer dim other than the batch dimension")
    return dim - 1 if dim > 0 else dim


def tensor_inputs(node: torch.fx.Node) -> list[torch.fx.Node]:
    """The node's arguments that hold tensors, in order (a tensor used twice appears twice)."""
    found = []

    def visit(arg: torch.fx.Node) -> torch.fx.Node:
        if node_shape(arg) or arg.op in ("placeholder", "get_attr"):  # get_attr: a parameter, maybe 0-d
            found.append(arg)
        return arg
    torch.fx.node.map_arg((node.args, node.kwargs), visit)
    return found


def node_shape(node: torch.fx.Node) -> tuple:
    """The shape ShapeProp recorded for the node's tensor (() when it is not a tensor)."""
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else ()
