"""The forward pass a .dcz file describes, as typed op records: parsed from and emitted to the meta JSON
once, here, with per-sample output-shape inference. Export writes it; the runtime and the hardware models
read it. What each op computes is specified in docs/FORMAT.md, section "Forward pass".

    fp = parse_forward(meta, {layer.name: layer for layer in layers})   # GraphError if malformed
    fp.ops[0], fp.shapes[0]                                            # a record and its input shape
    meta["ops"] = [op.emit() for op in ops]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import ClassVar


class GraphError(ValueError):
    """The forward pass is malformed or does not fit the file's layers; the message names the op."""


def _int(value, key: str, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise GraphError(f"{where}: {key} must be an integer >= {minimum} or a pair of them, got {value!r}")
    return value


def _pair(value, key: str, where: str, minimum: int) -> tuple[int, int]:
    """(height, width) from v or [h, w], each an integer >= minimum."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise GraphError(f"{where}: {key} must be an integer or a pair, got {value!r}")
        return _int(value[0], key, where, minimum), _int(value[1], key, where, minimum)
    value = _int(value, key, where, minimum)
    return value, value


def pair_of(value) -> tuple[int, int]:
    """(height, width) from an int or a 2-sequence of ints (PyTorch's convention for sizes)."""
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def _window(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a sliding window (PyTorch's floor mode)."""
    return (size + 2 * padding - kernel) // stride + 1


@dataclass(frozen=True)
class Op:
    """Base of the op records: `name` is the JSON "op" value; fields are the op's parameters."""

    name: ClassVar[str] = ""
    aliases: ClassVar[dict] = {}  # old spellings a reader accepts and a writer never emits

    @classmethod
    def parse(cls, obj: dict, where: str) -> "Op":
        """The record of a JSON object whose "op" is this op's name."""
        allowed = {f.name for f in fields(cls)}
        args = {}
        for key, value in obj.items():
            if key == "op":
                continue
            field = cls.aliases.get(key, key)
            if field in args:
                raise GraphError(f"{where}: {field!r} is given twice (as {key!r} and {field!r})")
            if field not in allowed:
                expected = ", ".join(sorted(allowed)) or "no parameters"
                raise GraphError(f"{where}: unknown key {key!r} (expected {expected})")
            args[field] = value
        return cls.build(args, where)

    @classmethod
    def build(cls, args: dict, where: str) -> "Op":
        """The record from parsed parameters (subclasses check them)."""
        return cls(**args)

    def emit(self) -> dict:
        """The op as the JSON object a file stores."""
        return {"op": self.name}

    def out_shape(self, shape: tuple, layers: dict, where: str) -> tuple:
        """Per-sample output shape for a per-sample input shape; GraphError if the op cannot take it."""
        return shape


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

    def emit(self) -> dict:
        return {"op": self.name, "layer": self.layer}


@dataclass(frozen=True)
class Fc(LayerOp):
    """y = x W^T + b on a flat input; W is the (out, in) layer."""

    name: ClassVar[str] = "fc"
    kind: ClassVar[str] = "fc"

    def out_shape(self, shape, layers, where):
        out_f, in_f = self.weight(layers, where).shape
        if tuple(shape) != (in_f,):
            raise GraphError(f"{where}: layer {self.layer!r} takes {in_f} inputs, gets shape {tuple(shape)} "
                             "(a flatten op may be missing)")
        return (out_f,)


@dataclass(frozen=True)
class Conv(LayerOp):
    """2-D cross-correlation (PyTorch's conv2d, groups 1, dilation 1, zero padding) plus bias."""

    name: ClassVar[str] = "conv"
    kind: ClassVar[str] = "conv"
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)

    @classmethod
    def build(cls, args, where):
        args = dict(args)
        args["stride"] = _pair(args.get("stride", 1), "stride", where, 1)
        args["padding"] = _pair(args.get("padding", 0), "padding", where, 0)
        return super().build(args, where)

    def emit(self) -> dict:
        return {**super().emit(), "stride": list(self.stride), "padding": list(self.padding)}

    def out_shape(self, shape, layers, where):
        out_c, in_c, kh, kw = self.weight(layers, where).shape
        (sh, sw), (ph, pw) = self.stride, self.padding
        if len(shape) != 3 or shape[0] != in_c or shape[1] + 2 * ph < kh or shape[2] + 2 * pw < kw:
            raise GraphError(f"{where}: layer {self.layer!r} needs ({in_c}, H, W) inputs of at least {kh}x{kw} "
                             f"after padding {list(self.padding)}, gets {tuple(shape)}")
        return out_c, _window(shape[1], kh, sh, ph), _window(shape[2], kw, sw, pw)


@dataclass(frozen=True)
class Relu(Op):
    """max(x, 0), element-wise."""

    name: ClassVar[str] = "relu"


@dataclass(frozen=True)
class Flatten(Op):
    """(C, H, W) -> (C*H*W,) in C order (channel slowest), as torch.flatten(x, 1)."""

    name: ClassVar[str] = "flatten"

    def out_shape(self, shape, layers, where):
        return (math.prod(shape),)


@dataclass(frozen=True)
class MaxPool(Op):
    """2-D max pooling over (C, H, W): windows `kernel`, step `stride` (default: the kernel), no padding,
    floor mode."""

    name: ClassVar[str] = "maxpool"
    aliases: ClassVar[dict] = {"k": "kernel"}
    kernel: tuple = (1, 1)
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)

    @classmethod
    def build(cls, args, where):
        if "kernel" not in args:
            raise GraphError(f"{where}: a maxpool op needs a kernel (an integer >= 1 or a pair)")
        kernel = _pair(args["kernel"], "kernel", where, 1)
        stride = _pair(args["stride"], "stride", where, 1) if args.get("stride") is not None else kernel
        padding = _pair(args.get("padding", 0), "padding", where, 0)
        if padding != (0, 0):
            raise GraphError(f"{where}: padded max pooling is not supported")
        return cls(kernel, stride, padding)

    def emit(self) -> dict:
        def compact(pair):
            return pair[0] if pair[0] == pair[1] else list(pair)
        return {"op": self.name, "kernel": compact(self.kernel), "stride": compact(self.stride)}

    def out_shape(self, shape, layers, where):
        (kh, kw), (sh, sw) = self.kernel, self.stride
        if len(shape) != 3 or shape[1] < kh or shape[2] < kw:
            raise GraphError(f"{where}: needs a (C, H, W) input of at least {kh}x{kw}, gets {tuple(shape)}")
        return shape[0], _window(shape[1], kh, sh, 0), _window(shape[2], kw, sw, 0)


OPS = {cls.name: cls for cls in (Fc, Conv, Relu, MaxPool, Flatten)}


def parse_op(obj, index: int) -> Op:
    """The typed record of the JSON object at position `index` of meta["ops"]."""
    where = f"op {index}"
    if not isinstance(obj, dict) or not isinstance(obj.get("op"), str):
        raise GraphError(f"{where}: expected an object with an 'op' name, got {obj!r}")
    cls = OPS.get(obj["op"])
    if cls is None:
        raise GraphError(f"{where}: unsupported op {obj['op']!r}; the format defines {', '.join(OPS)}")
    return cls.parse(obj, f"{where} ({obj['op']})")


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
    """A file's forward pass: the per-sample input shape, the op records in order, and the per-sample
    shape entering each op (shapes[i] for ops[i]; shapes[-1] is the output)."""

    input_shape: tuple
    ops: tuple
    shapes: tuple

    @property
    def output_shape(self) -> tuple:
        """Per-sample shape of the result."""
        return self.shapes[-1]


def parse_forward(meta: dict, layers: dict) -> ForwardPass:
    """The forward pass in meta ("input_shape", "ops"), checked against `layers` (name -> anything with
    .kind and .shape, e.g. QuantizedLayer): GraphError naming the op when it cannot run."""
    ops = meta.get("ops") if isinstance(meta, dict) else None
    if not isinstance(ops, list) or not ops:
        raise GraphError("the file describes no forward pass (meta 'ops' is missing or empty): it stores "
                         "weights only")
    shape = parse_input_shape(meta)
    records, shapes = [], [shape]
    for index, obj in enumerate(ops):
        op = parse_op(obj, index)
        shape = op.out_shape(shape, layers, f"op {index} ({op.name})")
        records.append(op)
        shapes.append(tuple(shape))
    return ForwardPass(shapes[0], tuple(records), tuple(shapes))


def emit_ops(ops) -> list[dict]:
    """meta["ops"] for a sequence of op records."""
    return [op.emit() for op in ops]
