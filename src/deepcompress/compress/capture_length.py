"""A variable sequence axis: the forward pass captured at two lengths must agree except for the one
entry of a reshape that holds the length, which becomes -1 in the file (capture.py's variable_axes)."""

from __future__ import annotations

import dataclasses

import torch

from ..errors import UserError
from ..format import graph
from .capture_base import Unsupported


def check_variable_axes(axes, ndim: int) -> tuple:
    """The variable axes checked against an example input of `ndim` axes: distinct, not the batch (0)."""
    axes = tuple(axes)
    if (len(set(axes)) != len(axes)
            or not all(isinstance(a, int) and not isinstance(a, bool) and 1 <= a < ndim for a in axes)):
        raise UserError(f"variable_axes {list(axes)}: expected distinct axes of the example input other than "
                        f"the batch (1..{ndim - 1})")
    return axes


def another_length(example: torch.Tensor, axes: tuple) -> torch.Tensor:
    """The example one shorter along each variable axis (one longer, repeating its last slice, where it
    has fewer than 3): real values, so an embedding still reads valid ids."""
    for axis in axes:
        n = example.shape[axis]
        example = (example.narrow(axis, 0, n - 1) if n >= 3
                   else torch.cat([example, example.narrow(axis, n - 1, 1)], dim=axis))
    return example


def length_free(ops: list, other: list, axes: tuple) -> list[graph.Op]:
    """The ops captured at the example's length, with each reshape's length-holding entry replaced by -1;
    Unsupported when the two captures differ otherwise (the model computes something else at another
    length, e.g. a number from the length, or a layer sized by it)."""
    where = f"variable_axes {list(axes)}"
    if len(ops) != len(other):
        raise Unsupported(f"{where}: the model's forward pass has other operations at another length "
                          f"({len(ops)} and {len(other)}); the file holds one pass for every length")
    out = []
    for i, (a, b) in enumerate(zip(ops, other)):
        _check_indexing(a, b, f"{where}: op {i} ({a.name})")
        if isinstance(a, (graph.Slice, graph.Select)):  # literal bounds: the same at any length
            a, b = (dataclasses.replace(op, axis_size=None) for op in (a, b))
        if a == b:
            out.append(a)
            continue
        entry = _length_entry(a, b)
        if entry is None:
            raise Unsupported(f"{where}: op {i} ({a.name}) depends on the input's length ({a.emit()} vs "
                              f"{b.emit()} at another length); write the model so that only reshapes "
                              f"(with one length-holding entry) see the length")
        out.append(dataclasses.replace(a, shape=tuple(-1 if k == entry else d for k, d in enumerate(a.shape))))
    return out


def _check_indexing(a: graph.Op, b: graph.Op, where: str) -> None:
    """Refuse a slice / select of the variable-length axis whose bounds forward() computed from sizes
    (they may depend on the length in ways two lengths do not show: T // 4 is 1 at 5 and 6), or that is
    a part of a chunk / split of that axis. Literal bounds (x[:, 1:], x[:, -1]) keep their meaning."""
    if not isinstance(a, (graph.Slice, graph.Select)) or a.axis_size == b.axis_size or a.origin == "index":
        return
    clipped = {"narrow": "narrow() of the variable-length axis",
               "list": "indexing the variable-length axis with a list of several positions"}
    if a.origin in clipped:  # PyTorch refuses a sequence too short for them; a slice would clip
        raise Unsupported(f"{where}: {clipped[a.origin]} is not supported; slice it (x[:, start:stop]) if "
                          "shorter sequences may give fewer positions")
    if a.origin == "computed":
        raise Unsupported(f"{where}: an index of the variable-length axis computed from sizes (x.size() / "
                          "x.shape) is not supported; write the bound as a number")
    raise Unsupported(f"{where}: a chunk / split / unbind of the variable-length axis is not supported: its "
                      "parts' bounds depend on the length")


def _length_entry(a: graph.Op, b: graph.Op) -> int | None:
    """The one entry in which two captures of a reshape differ (None if they are not such a pair)."""
    if not (isinstance(a, graph.Reshape) and isinstance(b, graph.Reshape) and a.inputs == b.inputs
            and len(a.shape) == len(b.shape) and -1 not in a.shape):
        return None
    differs = [k for k, (x, y) in enumerate(zip(a.shape, b.shape)) if x != y]
    return differs[0] if len(differs) == 1 else None
