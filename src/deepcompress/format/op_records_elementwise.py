"""Op records that act element-wise or along one axis: activations, softmax, per-channel affine,
layer normalisation, add / mul of two inputs with broadcasting, and concatenation; registered in
op_records.OPS. What each computes is specified in docs/FORMAT.md, section 4.1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .op_records import GraphError, Op, _axis, _floats, _named


@dataclass(frozen=True)
class Activation(Op):
    """An element-wise function; the output has the input's shape."""


Relu = _named("Relu", Activation, "relu", "max(x, 0).")
Relu6 = _named("Relu6", Activation, "relu6", "min(max(x, 0), 6).")


@dataclass(frozen=True)
class LeakyRelu(Activation):
    """x if x >= 0 else negative_slope * x."""

    name: ClassVar[str] = "leaky_relu"
    negative_slope: float = 0.01

    @classmethod
    def build(cls, args, where):
        slope = _floats([args.get("negative_slope", 0.01)], "negative_slope", where)[0]
        return cls(slope, inputs=args.get("inputs"))

    def params(self) -> dict:
        return {"negative_slope": self.negative_slope}


Sigmoid = _named("Sigmoid", Activation, "sigmoid", "1 / (1 + exp(-x)).")
Tanh = _named("Tanh", Activation, "tanh", "tanh(x).")


@dataclass(frozen=True)
class Gelu(Activation):
    """x * Phi(x) (approximate "none": the normal CDF via erf; "tanh": PyTorch's tanh formula)."""

    name: ClassVar[str] = "gelu"
    approximate: str = "none"

    @classmethod
    def build(cls, args, where):
        approximate = args.get("approximate", "none")
        if approximate not in ("none", "tanh"):
            raise GraphError(f"{where}: approximate must be 'none' or 'tanh', got {approximate!r}")
        return cls(approximate, inputs=args.get("inputs"))

    def params(self) -> dict:
        return {"approximate": self.approximate} if self.approximate != "none" else {}


Silu = _named("Silu", Activation, "silu", "x * sigmoid(x).")
Hardswish = _named("Hardswish", Activation, "hardswish", "x * min(max(x + 3, 0), 6) / 6.")
Hardsigmoid = _named("Hardsigmoid", Activation, "hardsigmoid", "min(max(x + 3, 0), 6) / 6.")


@dataclass(frozen=True)
class AlongAxis(Op):
    """A function along the per-sample axis `dim`; the output has the input's shape."""

    name: ClassVar[str] = "along_axis"
    dim: int = -1

    @classmethod
    def build(cls, args, where):
        dim = args.get("dim", -1)
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise GraphError(f"{where}: dim must be an integer, got {dim!r}")
        return cls(dim, inputs=args.get("inputs"))

    def params(self) -> dict:
        return {"dim": self.dim}

    def out_shape(self, shape, layers, where):
        _axis(self.dim, len(shape), where)
        return shape


Softmax = _named("Softmax", AlongAxis, "softmax",
                 "exp(x) / sum(exp(x)) along the per-sample axis `dim` (max subtracted first).")
LogSoftmax = _named("LogSoftmax", AlongAxis, "log_softmax",
                    "x - log(sum(exp(x))) along the per-sample axis `dim` (max subtracted first).")
Softmax.__module__ = LogSoftmax.__module__ = __name__


@dataclass(frozen=True)
class Affine(Op):
    """Per-channel y = x * scale[c] + shift[c], channel = per-sample axis 0 (a BatchNorm that could not be
    folded into the layer before it)."""

    name: ClassVar[str] = "affine"
    scale: tuple = ()
    shift: tuple = ()

    @classmethod
    def build(cls, args, where):
        scale, shift = _floats(args.get("scale"), "scale", where), _floats(args.get("shift"), "shift", where)
        if len(scale) != len(shift) or not scale:
            raise GraphError(f"{where}: scale and shift must be nonempty and of equal length")
        return cls(scale, shift, inputs=args.get("inputs"))

    def params(self) -> dict:
        return {"scale": list(self.scale), "shift": list(self.shift)}

    def out_shape(self, shape, layers, where):
        if not shape or shape[0] != len(self.scale):
            raise GraphError(f"{where}: {len(self.scale)} channels, input {tuple(shape)}")
        return shape


@dataclass(frozen=True)
class LayerNorm(Op):
    """Normalise over the last `len(weight)`-sized axis: (x - mean) / sqrt(var + eps) * weight + bias
    (biased variance, as torch.nn.LayerNorm over the last dimension)."""

    name: ClassVar[str] = "layernorm"
    weight: tuple = ()
    bias: tuple = ()
    eps: float = 1e-5

    @classmethod
    def build(cls, args, where):
        weight, bias = _floats(args.get("weight"), "weight", where), _floats(args.get("bias"), "bias", where)
        eps = _floats([args.get("eps", 1e-5)], "eps", where)[0]
        if len(weight) != len(bias) or not weight or eps <= 0:
            raise GraphError(f"{where}: weight and bias must be nonempty and of equal length, eps > 0")
        return cls(weight, bias, eps, inputs=args.get("inputs"))

    def params(self) -> dict:
        return {"weight": list(self.weight), "bias": list(self.bias), "eps": self.eps}

    def out_shape(self, shape, layers, where):
        if not shape or shape[-1] != len(self.weight):
            raise GraphError(f"{where}: normalises {len(self.weight)} values, input {tuple(shape)}")
        return shape


@dataclass(frozen=True)
class Binary(Op):
    """An element-wise op of two inputs with NumPy broadcasting of their per-sample shapes."""

    arity: ClassVar[int | None] = 2

    def infer(self, shapes, layers, where):
        a, b = shapes
        out = []
        for x, y in zip((1,) * (len(b) - len(a)) + tuple(a), (1,) * (len(a) - len(b)) + tuple(b)):
            if x != y and 1 not in (x, y):
                raise GraphError(f"{where}: shapes {tuple(a)} and {tuple(b)} do not broadcast")
            out.append(max(x, y))
        return tuple(out)


Add = _named("Add", Binary, "add", "a + b.")
Mul = _named("Mul", Binary, "mul", "a * b.")


@dataclass(frozen=True)
class Concat(Op):
    """Inputs joined along the per-sample axis `dim`; other axes must agree."""

    name: ClassVar[str] = "concat"
    arity: ClassVar[int | None] = None
    dim: int = 0

    @classmethod
    def build(cls, args, where):
        dim = args.get("dim", 0)
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise GraphError(f"{where}: dim must be an integer, got {dim!r}")
        return cls(dim, inputs=args.get("inputs"))

    def params(self) -> dict:
        return {"dim": self.dim}

    def infer(self, shapes, layers, where):
        axis = _axis(self.dim, len(shapes[0]), where)
        rest = {tuple(s[:axis]) + tuple(s[axis + 1:]) for s in shapes}
        if len(rest) != 1 or len({len(s) for s in shapes}) != 1:
            raise GraphError(f"{where}: cannot concatenate shapes {[tuple(s) for s in shapes]} along dim {self.dim}")
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        return tuple(out)
