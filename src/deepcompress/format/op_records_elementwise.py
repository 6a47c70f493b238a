"""Op records that act element-wise or along one axis: activations, softmax, per-channel affine,
layer and group normalisation, add / mul of two inputs with broadcasting, and concatenation; registered in
op_records.OPS. What each computes is specified in docs/FORMAT.md, section 4.1.
"""

from __future__ import annotations

from dataclasses import dataclass, make_dataclass
from typing import ClassVar

from .op_records import GraphError, Op, _axis, _floats, _named, _number


@dataclass(frozen=True)
class Activation(Op):
    """An element-wise function; the output has the input's shape."""


Relu = _named("Relu", Activation, "relu", "max(x, 0).")
Relu6 = _named("Relu6", Activation, "relu6", "min(max(x, 0), 6).")


def _one_number(cls_name: str, name: str, key: str, default: float, doc: str) -> type:
    """An activation record with one numeric parameter `key` (default `default`)."""
    def build(cls, args, where):
        return cls(_number(args.get(key, default), key, where), inputs=args.get("inputs"))

    def params(self) -> dict:
        return {key: getattr(self, key)}
    return make_dataclass(cls_name, [(key, float, default)], bases=(Activation,), frozen=True,
                          namespace={"name": name, "__doc__": doc, "__module__": __name__,
                                     "build": classmethod(build), "params": params})


LeakyRelu = _one_number("LeakyRelu", "leaky_relu", "negative_slope", 0.01, "x if x >= 0 else negative_slope * x.")
Elu = _one_number("Elu", "elu", "alpha", 1.0, "x if x > 0 else alpha * (exp(x) - 1).")


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
Mish = _named("Mish", Activation, "mish", "x * tanh(softplus(x)).")


@dataclass(frozen=True)
class Softplus(Activation):
    """log(1 + exp(beta * x)) / beta, or x where beta * x > threshold (PyTorch's softplus)."""

    name: ClassVar[str] = "softplus"
    beta: float = 1.0
    threshold: float = 20.0

    @classmethod
    def build(cls, args, where):
        beta, threshold = (_number(args.get(k, d), k, where) for k, d in (("beta", 1.0), ("threshold", 20.0)))
        if beta <= 0:
            raise GraphError(f"{where}: beta must be > 0, got {beta}")
        return cls(beta, threshold, inputs=args.get("inputs"))

    def params(self) -> dict:
        return {"beta": self.beta, "threshold": self.threshold}


@dataclass(frozen=True)
class Prelu(Activation):
    """x if x >= 0 else slope[c] * x, channel = per-sample axis 0 (one slope: every channel)."""

    name: ClassVar[str] = "prelu"
    slope: tuple = ()

    @classmethod
    def build(cls, args, where):
        slope = _floats(args.get("slope"), "slope", where)
        if not slope:
            raise GraphError(f"{where}: slope must be a nonempty list of numbers")
        return cls(slope, inputs=args.get("inputs"))

    def params(self) -> dict:
        return {"slope": list(self.slope)}

    def out_shape(self, shape, layers, where):
        if len(self.slope) != 1 and (not shape or shape[0] != len(self.slope)):
            raise GraphError(f"{where}: {len(self.slope)} slopes, input {tuple(shape)}")
        return shape


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
class GroupNorm(Op):
    """Channels (per-sample axis 0) in `groups` groups; each group of each sample normalised over its
    channels and the axes after them (if any), (x - mean) / sqrt(var + eps) (biased variance), then per channel
    * weight[c] + bias[c] (torch.nn.GroupNorm; InstanceNorm is groups = channels)."""

    name: ClassVar[str] = "group_norm"
    groups: int = 1
    weight: tuple = ()
    bias: tuple = ()
    eps: float = 1e-5

    @classmethod
    def build(cls, args, where):
        groups = args.get("groups")
        weight, bias = _floats(args.get("weight"), "weight", where), _floats(args.get("bias"), "bias", where)
        eps = _number(args.get("eps", 1e-5), "eps", where)
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise GraphError(f"{where}: groups must be a positive integer, got {groups!r}")
        if len(weight) != len(bias) or not weight or len(weight) % groups or eps <= 0:
            raise GraphError(f"{where}: weight and bias must be of equal length, a multiple of groups "
                             f"({groups}), and eps > 0")
        return cls(groups, weight, bias, eps, inputs=args.get("inputs"))

    def params(self) -> dict:
        return {"groups": self.groups, "weight": list(self.weight), "bias": list(self.bias), "eps": self.eps}

    def out_shape(self, shape, layers, where):
        if not shape or shape[0] != len(self.weight):
            raise GraphError(f"{where}: normalises {len(self.weight)} channels, input {tuple(shape)}")
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
