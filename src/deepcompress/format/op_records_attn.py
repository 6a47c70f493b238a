"""Op records for sequence models and attention: 1-D convolution, matrix products between activations,
arithmetic with a number, subtraction and division of two tensors, and the mean over axes. They follow the
conventions of op_records.py (per-sample shapes, the batch axis never an op's axis) and are registered in
its OPS; what each computes is specified in docs/FORMAT.md section 4.1.1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .op_records import Binary, GraphError, LayerOp, Op, _axis, _bool, _int, _named, _number, pool_out


def _sides(value, where: str) -> tuple[int, int]:
    """(left, right) padding from an integer (both sides) or a list [left, right], each >= 0."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise GraphError(f"{where}: padding must be an integer or [left, right], got {value!r}")
        return _int(value[0], "padding", where, 0), _int(value[1], "padding", where, 0)
    value = _int(value, "padding", where, 0)
    return value, value


@dataclass(frozen=True)
class Conv1d(LayerOp):
    """1-D cross-correlation with zero padding, plus bias (PyTorch's conv1d), over (C, L). The layer is a
    conv layer of height 1, (out_c, in_c / groups, 1, k); `padding` is (left, right)."""

    name: ClassVar[str] = "conv1d"
    kind: ClassVar[str] = "conv"
    stride: int = 1
    padding: tuple = (0, 0)
    dilation: int = 1
    groups: int = 1

    @classmethod
    def build(cls, args, where):
        args = dict(args)
        args["stride"] = _int(args.get("stride", 1), "stride", where, 1)
        args["dilation"] = _int(args.get("dilation", 1), "dilation", where, 1)
        args["padding"] = _sides(args.get("padding", 0), where)
        args["groups"] = _int(args.get("groups", 1), "groups", where, 1)
        return super().build(args, where)

    def params(self) -> dict:
        left, right = self.padding
        out = {**super().params(), "stride": self.stride, "padding": left if left == right else [left, right]}
        if self.dilation != 1:
            out["dilation"] = self.dilation
        if self.groups != 1:
            out["groups"] = self.groups
        return out

    def out_shape(self, shape, layers, where):
        out_c, in_per_group, kh, k = self.weight(layers, where).shape
        left, right = self.padding
        reach = self.dilation * (k - 1) + 1
        if kh != 1:
            raise GraphError(f"{where}: layer {self.layer!r} has kernel height {kh}; a conv1d layer is "
                             "(out_c, in_c / groups, 1, k)")
        if out_c % self.groups:
            raise GraphError(f"{where}: layer {self.layer!r} has {out_c} outputs, not divisible into "
                             f"{self.groups} groups")
        if len(shape) != 2 or shape[0] != in_per_group * self.groups or shape[1] + left + right < reach:
            raise GraphError(f"{where}: layer {self.layer!r} needs ({in_per_group * self.groups}, L) inputs of "
                             f"length at least {reach} after padding {list(self.padding)}, gets {tuple(shape)}")
        return out_c, pool_out(shape[1], k, self.stride, left, right, self.dilation)


@dataclass(frozen=True)
class MatMul(Op):
    """Matrix product of two activations over their last two axes, a (..., M, K) x b (..., K, N) ->
    (..., M, N), the leading per-sample axes broadcast as NumPy does (torch.matmul)."""

    name: ClassVar[str] = "matmul"
    arity: ClassVar[int | None] = 2

    def infer(self, shapes, layers, where):
        a, b = (tuple(s) for s in shapes)
        if len(a) < 2 or len(b) < 2 or a[-1] != b[-2]:
            raise GraphError(f"{where}: cannot multiply per-sample shapes {a} and {b} (needs (..., M, K) and "
                             "(..., K, N))")
        lead = Binary.infer(self, [a[:-2], b[:-2]], layers, where)
        return (*lead, a[-2], b[-1])


SCALAR_FNS = ("add", "sub", "rsub", "mul", "div", "rdiv")


@dataclass(frozen=True)
class Scalar(Op):
    """Arithmetic with a number: fn "add" x + v, "sub" x - v, "rsub" v - x, "mul" x * v, "div" x / v,
    "rdiv" v / x (in float32, v rounded to float32 first, as PyTorch does with a Python number)."""

    name: ClassVar[str] = "scalar"
    fn: str = "mul"
    value: float = 1.0

    @classmethod
    def build(cls, args, where):
        fn = args.get("fn")
        if fn not in SCALAR_FNS:
            raise GraphError(f"{where}: fn must be one of {', '.join(SCALAR_FNS)}, got {fn!r}")
        return cls(fn, _number(args.get("value"), "value", where), inputs=args.get("inputs"))

    def params(self) -> dict:
        return {"fn": self.fn, "value": self.value}


Sub = _named("Sub", Binary, "sub", "a - b.")
Div = _named("Div", Binary, "div", "a / b.")
Sub.__module__ = Div.__module__ = __name__


@dataclass(frozen=True)
class Reduce(Op):
    """A reduction over the per-sample axes `dims`, which are dropped unless `keepdim` (then of size 1)."""

    name: ClassVar[str] = "reduce"
    dims: tuple = (-1,)
    keepdim: bool = False

    @classmethod
    def build(cls, args, where):
        dims = args.get("dims")
        if (not isinstance(dims, list) or not dims
                or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims)):
            raise GraphError(f"{where}: dims must be a nonempty list of integers, got {dims!r}")
        return cls(tuple(dims), _bool(args.get("keepdim", False), "keepdim", where), inputs=args.get("inputs"))

    def params(self) -> dict:
        return {"dims": list(self.dims), "keepdim": self.keepdim}

    def axes(self, ndim: int, where: str) -> tuple:
        """The reduced axes as nonnegative per-sample indices; GraphError if one repeats or is out of range."""
        axes = tuple(sorted(_axis(d, ndim, where) for d in self.dims))
        if len(set(axes)) != len(axes):
            raise GraphError(f"{where}: dims {list(self.dims)} name an axis twice")
        return axes

    def out_shape(self, shape, layers, where):
        axes = self.axes(len(shape), where)
        if self.keepdim:
            return tuple(1 if i in axes else d for i, d in enumerate(shape))
        return tuple(d for i, d in enumerate(shape) if i not in axes)


Mean = _named("Mean", Reduce, "mean", "Mean over the per-sample axes `dims`, dropped unless `keepdim` (then size 1).")
Amax = _named("Amax", Reduce, "amax", "Maximum over the per-sample axes `dims` (global max pooling), dropped unless "
              "`keepdim`.")
Mean.__module__ = Amax.__module__ = __name__


@dataclass(frozen=True)
class CausalMask(Op):
    """Attention scores (..., L, S) with every position j > i of each L x S matrix set to -inf, so that
    softmax gives them weight 0 (PyTorch's is_causal: the lower triangle, aligned at the top left, kept)."""

    name: ClassVar[str] = "causal_mask"

    def out_shape(self, shape, layers, where):
        if len(shape) < 2:
            raise GraphError(f"{where}: causal_mask needs scores of at least 2 axes (..., L, S), gets {tuple(shape)}")
        return tuple(shape)


ATTN_OPS = {cls.name: cls for cls in (Conv1d, MatMul, Scalar, Sub, Div, Mean, Amax, CausalMask)}
