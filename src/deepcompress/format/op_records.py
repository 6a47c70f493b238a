"""The op records of a .dcz file's forward pass: one class per op, each parsing and checking its JSON
object, emitting it back and inferring its per-sample output shape. What each op computes is specified
in docs/FORMAT.md, section 4.1; the pass that chains them is deepcompress.format.graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, make_dataclass
from typing import ClassVar


class GraphError(ValueError):
    """The forward pass is malformed or does not fit the file's layers; the message names the op."""


def _int(value, key: str, where: str, minimum: int, expected: str = "") -> int:
    """`value` if it is an integer >= minimum; GraphError saying so (`expected` in place of that) if not."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise GraphError(f"{where}: {key} must be {expected or f'an integer >= {minimum}'}, got {value!r}")
    return value


def _pair(value, key: str, where: str, minimum: int) -> tuple[int, int]:
    """(height, width) from v or [h, w], each an integer >= minimum."""
    expected = f"an integer >= {minimum} or a pair of them"
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise GraphError(f"{where}: {key} must be {expected}, got {value!r}")
        return tuple(_int(v, key, where, minimum, expected) for v in value)
    value = _int(value, key, where, minimum, expected)
    return value, value


def _floats(value, key: str, where: str) -> tuple:
    """A list of finite numbers as a tuple of floats."""
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise GraphError(f"{where}: {key} must be a list of finite numbers")
    return tuple(float(v) for v in value)


def _number(value, key: str, where: str) -> float:
    """A finite JSON number as a float; GraphError naming `key` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GraphError(f"{where}: {key} must be a finite number, got {value!r}")
    return float(value)


def _bool(value, key: str, where: str) -> bool:
    if not isinstance(value, bool):
        raise GraphError(f"{where}: {key} must be true or false, got {value!r}")
    return value


def _axis(value, ndim: int, where: str) -> int:
    """A per-sample axis (negative counts from the end) as a nonnegative index."""
    if isinstance(value, bool) or not isinstance(value, int) or not -ndim <= value < ndim:
        raise GraphError(f"{where}: dim {value!r} is not an axis of a {ndim}-d per-sample shape")
    return value % ndim


def pair_of(value) -> tuple[int, int]:
    """(height, width) from an int or a 2-sequence of ints (PyTorch's convention for sizes)."""
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def pool_out(size: int, kernel: int, stride: int, pad_lo: int, pad_hi: int, dilation: int = 1,
             ceil_mode: bool = False) -> int:
    """Output length of a sliding window as PyTorch computes it (floor or ceil mode; in ceil mode a last
    window that would start in the trailing padding is dropped)."""
    span = size + pad_lo + pad_hi - dilation * (kernel - 1) - 1
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad_lo:
        out -= 1
    return out


@dataclass(frozen=True)
class Op:
    """Base of the op records: `name` is the JSON "op" value, `arity` how many inputs it takes (None: two
    or more; 0: none, a value the file holds); dataclass fields are its parameters; `inputs` (keyword-only)
    says where they come from."""

    name: ClassVar[str] = ""
    arity: ClassVar[int | None] = 1
    aliases: ClassVar[dict] = {}  # old spellings a reader accepts and a writer never emits
    inputs: tuple | None = field(default=None, kw_only=True)

    @classmethod
    def parse(cls, obj: dict, where: str) -> "Op":
        """The record of a JSON object whose "op" is this op's name."""
        allowed = {f.name for f in fields(cls)}
        args = {}
        for key, value in obj.items():
            if key == "op":
                continue
            name = cls.aliases.get(key, key)
            if name in args:
                raise GraphError(f"{where}: {name!r} is given twice (as {key!r} and {name!r})")
            if name not in allowed:
                expected = ", ".join(sorted(allowed)) or "no parameters"
                raise GraphError(f"{where}: unknown key {key!r} (expected {expected})")
            args[name] = value
        if "inputs" in args:
            args["inputs"] = cls._parse_inputs(args["inputs"], where)
        return cls.build(args, where)

    @classmethod
    def _parse_inputs(cls, value, where: str) -> tuple:
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise GraphError(f"{where}: inputs must be a list of op indices (-1: the model's input)")
        wanted = 2 if cls.arity is None else cls.arity
        if len(value) != wanted if cls.arity is not None else len(value) < wanted:
            raise GraphError(f"{where}: takes {'at least ' if cls.arity is None else ''}{wanted} input(s), "
                             f"inputs lists {len(value)}")
        return tuple(value)

    @classmethod
    def build(cls, args: dict, where: str) -> "Op":
        """The record from parsed parameters (subclasses check theirs)."""
        return cls(**args)

    def params(self) -> dict:
        """The op's parameters as the JSON object stores them (no "op", no "inputs")."""
        return {}

    def emit(self) -> dict:
        """The op as the JSON object a file stores."""
        out = {"op": self.name, **self.params()}
        if self.inputs is not None:
            out["inputs"] = list(self.inputs)
        return out

    def out_shape(self, shape: tuple, layers: dict, where: str) -> tuple:
        """Per-sample output shape of a one-input op for its input's shape; GraphError if it cannot take it."""
        return shape

    def infer(self, shapes: list, layers: dict, where: str) -> tuple:
        """Per-sample output shape for the per-sample shapes of all inputs."""
        return self.out_shape(shapes[0], layers, where)


def _named(cls_name: str, base: type, name: str, doc: str) -> type:
    """An op class with no parameters of its own: `base` under the JSON name `name`."""
    return type(cls_name, (base,), {"name": name, "__doc__": doc, "__module__": __name__})


@dataclass(frozen=True)
class LayerOp(Op):
    """An op that applies a weight layer of the file, named by `layer`."""

    kind: ClassVar[str] = ""
    layer: str = ""

    @classmethod
    def build(cls, args: dict, where: str) -> "Op":
        if not isinstance(args.get("layer"), str) or not args["layer"]:
            raise GraphError(f"{where}: a {cls.name} op must name its layer")
        return super().build(args, where)

    def weight(self, layers: dict, where: str):
        """The named layer (anything with .kind and .shape); GraphError if absent or of another kind."""
        layer = layers.get(self.layer)
        if layer is None:
            raise GraphError(f"{where}: layer {self.layer!r} is not in the file (it has "
                             f"{', '.join(layers) or 'none'})")
        if layer.kind != self.kind:
            raise GraphError(f"{where}: layer {self.layer!r} is a {layer.kind} layer, not {self.kind}")
        return layer

    def params(self) -> dict:
        return {"layer": self.layer}


@dataclass(frozen=True)
class Fc(LayerOp):
    """y = x W^T + b over the last axis (a flat input, or each position of a sequence); W is the (out, in)
    layer."""

    name: ClassVar[str] = "fc"
    kind: ClassVar[str] = "fc"

    def out_shape(self, shape, layers, where):
        out_f, in_f = self.weight(layers, where).shape
        if not shape or shape[-1] != in_f:
            raise GraphError(f"{where}: layer {self.layer!r} takes {in_f} inputs, gets shape {tuple(shape)} "
                             "(a flatten op may be missing)")
        return (*shape[:-1], out_f)  # applied to each vector along the last axis, as nn.Linear


@dataclass(frozen=True)
class Conv(LayerOp):
    """2-D cross-correlation with zero padding, plus bias (PyTorch's conv2d). `padding` is (top, bottom,
    left, right); a file may give it as one integer, a pair (height, width) or four integers."""

    name: ClassVar[str] = "conv"
    kind: ClassVar[str] = "conv"
    stride: tuple = (1, 1)
    padding: tuple = (0, 0, 0, 0)
    dilation: tuple = (1, 1)
    groups: int = 1

    def __post_init__(self):
        object.__setattr__(self, "padding", padding4(self.padding))  # a pair means both sides alike

    @classmethod
    def build(cls, args, where):
        args = dict(args)
        args["stride"] = _pair(args.get("stride", 1), "stride", where, 1)
        args["dilation"] = _pair(args.get("dilation", 1), "dilation", where, 1)
        args["padding"] = _padding(args.get("padding", 0), where)
        args["groups"] = _int(args.get("groups", 1), "groups", where, 1)
        return super().build(args, where)

    def params(self) -> dict:
        top, bottom, left, right = self.padding
        padding = [top, left] if (top, left) == (bottom, right) else list(self.padding)
        out = {**super().params(), "stride": list(self.stride), "padding": padding}
        if self.dilation != (1, 1):
            out["dilation"] = list(self.dilation)
        if self.groups != 1:
            out["groups"] = self.groups
        return out

    def out_shape(self, shape, layers, where):
        out_c, in_per_group, kh, kw = self.weight(layers, where).shape
        (sh, sw), (dh, dw), (top, bottom, left, right) = self.stride, self.dilation, self.padding
        in_c = in_per_group * self.groups
        reach_h, reach_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
        if out_c % self.groups:
            raise GraphError(f"{where}: layer {self.layer!r} has {out_c} outputs, not divisible into "
                             f"{self.groups} groups")
        if (len(shape) != 3 or shape[0] != in_c or shape[1] + top + bottom < reach_h
                or shape[2] + left + right < reach_w):
            raise GraphError(f"{where}: layer {self.layer!r} needs ({in_c}, H, W) inputs of at least "
                             f"{reach_h}x{reach_w} after padding {list(self.padding)}, gets {tuple(shape)}")
        return (out_c, pool_out(shape[1], kh, sh, top, bottom, dh), pool_out(shape[2], kw, sw, left, right, dw))


def padding4(value) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) from an int, a (height, width) pair or four ints (unchecked)."""
    if isinstance(value, (list, tuple)) and len(value) == 4:
        return tuple(int(v) for v in value)
    ph, pw = pair_of(value)
    return ph, ph, pw, pw


def _padding(value, where: str) -> tuple[int, int, int, int]:
    """padding4 of a file's value, each side checked to be an integer >= 0."""
    if isinstance(value, (list, tuple)) and len(value) == 4:
        return tuple(_int(v, "padding", where, 0) for v in value)
    return padding4(_pair(value, "padding", where, 0))


@dataclass(frozen=True)
class Flatten(Op):
    """(d0, d1, ...) -> (d0*d1*...,) in C order (first axis slowest), as torch.flatten(x, 1)."""

    name: ClassVar[str] = "flatten"

    def out_shape(self, shape, layers, where):
        return (math.prod(shape),)


@dataclass(frozen=True)
class IntListOp(Op):
    """Base of ops with one parameter, a list of integers named `key` (`valid` says which lists)."""

    key: ClassVar[str] = ""
    expected: ClassVar[str] = ""

    @staticmethod
    def valid(values: list) -> bool:
        """Whether a list of integers is an acceptable value."""
        return True

    @classmethod
    def build(cls, args, where):
        value = args.get(cls.key)
        if (not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
                or not cls.valid(value)):
            raise GraphError(f"{where}: {cls.key} must be {cls.expected}, got {value!r}")
        return cls(tuple(value), inputs=args.get("inputs"))

    def params(self) -> dict:
        return {self.key: list(getattr(self, self.key))}


def _reshape_out(op, shape, layers, where):
    total, known = math.prod(shape), math.prod(d for d in op.shape if d != -1)
    out = tuple(total // known if d == -1 else d for d in op.shape)
    if math.prod(out) != total:
        raise GraphError(f"{where}: cannot reshape {tuple(shape)} to {list(op.shape)}")
    return out


def _permute_out(op, shape, layers, where):
    if len(shape) != len(op.dims):
        raise GraphError(f"{where}: dims {list(op.dims)} do not fit a {len(shape)}-d input {tuple(shape)}")
    return tuple(shape[d] for d in op.dims)


def _int_list_op(cls_name: str, name: str, key: str, doc: str, expected: str, valid, out_shape) -> type:
    """An IntListOp subclass whose one parameter, `key`, is a tuple of integers."""
    return make_dataclass(cls_name, [(key, tuple, field(default=()))], bases=(IntListOp,), frozen=True,
                          namespace={"name": name, "key": key, "expected": expected, "__doc__": doc,
                                     "valid": staticmethod(valid), "out_shape": out_shape,
                                     "__module__": __name__})


Reshape = _int_list_op("Reshape", "reshape", "shape", "Per-sample reshape in C order to `shape` (one entry may be "
                       "-1: inferred).", "a list of positive integers with at most one -1",
                       lambda v: bool(v) and v.count(-1) <= 1 and all(d >= 1 or d == -1 for d in v), _reshape_out)
Permute = _int_list_op("Permute", "permute", "dims", "Per-sample axis permutation: output axis i is input axis "
                       "dims[i].", "a permutation of 0..n-1 over per-sample axes",
                       lambda v: sorted(v) == list(range(len(v))), _permute_out)


# the other records build on the classes above, so they are imported (and registered) last
from .op_records_pool import Pool, MaxPool, AvgPool, AdaptiveAvgPool, Upsample  # noqa: E402
from .op_records_elementwise import (  # noqa: E402
    Activation, Relu, Relu6, LeakyRelu, Sigmoid, Tanh, Gelu, Silu, Hardswish, Hardsigmoid, Elu, Softplus, Mish,
    Prelu, Softmax, LogSoftmax, Affine, LayerNorm, GroupNorm, Binary, Add, Mul, Concat)

OPS = {cls.name: cls for cls in (Fc, Conv, MaxPool, AvgPool, AdaptiveAvgPool, Upsample, Flatten, Reshape, Permute,
                                 Relu, Relu6, LeakyRelu, Sigmoid, Tanh, Gelu, Silu, Hardswish, Hardsigmoid, Elu,
                                 Softplus, Mish, Prelu, Softmax, LogSoftmax, Affine, LayerNorm, GroupNorm, Add,
                                 Mul, Concat)}

from .op_records_attn import ATTN_OPS  # noqa: E402
OPS.update(ATTN_OPS)


def _register_sequence_ops() -> None:
    from .op_records_seq import SEQ_OPS  # imports this module's base classes, so registered last
    OPS.update(SEQ_OPS)


_register_sequence_ops()


def parse_op(obj, index: int) -> Op:
    """The typed record of the JSON object at position `index` of meta["ops"]."""
    where = f"op {index}"
    if not isinstance(obj, dict) or not isinstance(obj.get("op"), str):
        raise GraphError(f"{where}: expected an object with an 'op' name, got {obj!r}")
    cls = OPS.get(obj["op"])
    if cls is None:
        raise GraphError(f"{where}: unsupported op {obj['op']!r}; the format defines {', '.join(OPS)}")
    return cls.parse(obj, f"{where} ({obj['op']})")
