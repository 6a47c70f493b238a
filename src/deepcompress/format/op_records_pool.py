"""Op records of 2-D window pooling (max and average, with padding and ceil mode), adaptive average
pooling and nearest-neighbour upsampling by whole factors, over per-sample (C, H, W) inputs; registered in op_records.OPS. What each computes is specified in
docs/FORMAT.md, section 4.1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .op_records import GraphError, Op, _bool, _named, _pair, pool_out


@dataclass(frozen=True)
class Pool(Op):
    """Base of the 2-D window pools over (C, H, W): kernel, stride (default: the kernel), symmetric
    zero/-inf padding of at most half the kernel, floor or ceil mode (PyTorch's rules)."""

    aliases: ClassVar[dict] = {"k": "kernel"}
    kernel: tuple = (1, 1)
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    ceil_mode: bool = False

    @classmethod
    def build(cls, args, where):
        if "kernel" not in args:
            raise GraphError(f"{where}: a {cls.name} op needs a kernel (an integer >= 1 or a pair)")
        args = dict(args)
        args["kernel"] = _pair(args["kernel"], "kernel", where, 1)
        stride = args.get("stride")
        args["stride"] = _pair(stride, "stride", where, 1) if stride is not None else args["kernel"]
        args["padding"] = _pair(args.get("padding", 0), "padding", where, 0)
        args["ceil_mode"] = _bool(args.get("ceil_mode", False), "ceil_mode", where)
        if any(2 * p > k for p, k in zip(args["padding"], args["kernel"])):
            raise GraphError(f"{where}: padding {list(args['padding'])} is more than half the kernel "
                             f"{list(args['kernel'])}")
        return super().build(args, where)

    def params(self) -> dict:
        def compact(pair):
            return pair[0] if pair[0] == pair[1] else list(pair)
        out = {"kernel": compact(self.kernel), "stride": compact(self.stride)}
        if self.padding != (0, 0):
            out["padding"] = compact(self.padding)
        if self.ceil_mode:
            out["ceil_mode"] = True
        return out

    def out_shape(self, shape, layers, where):
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        if len(shape) != 3 or shape[1] + 2 * ph < kh or shape[2] + 2 * pw < kw:
            raise GraphError(f"{where}: needs a (C, H, W) input of at least {kh}x{kw} after padding, "
                             f"gets {tuple(shape)}")
        return (shape[0], pool_out(shape[1], kh, sh, ph, ph, 1, self.ceil_mode),
                pool_out(shape[2], kw, sw, pw, pw, 1, self.ceil_mode))


MaxPool = _named("MaxPool", Pool, "maxpool", "Maximum over each window; padding counts as -infinity.")


@dataclass(frozen=True)
class AvgPool(Pool):
    """Mean over each window; with count_include_pad the divisor counts padding positions (not those of
    a ceil-mode window beyond the padding), without it only input positions."""

    name: ClassVar[str] = "avgpool"
    count_include_pad: bool = True

    @classmethod
    def build(cls, args, where):
        args = dict(args)
        args["count_include_pad"] = _bool(args.get("count_include_pad", True), "count_include_pad", where)
        return super().build(args, where)

    def params(self) -> dict:
        out = super().params()
        if not self.count_include_pad:
            out["count_include_pad"] = False
        return out


@dataclass(frozen=True)
class AdaptiveAvgPool(Op):
    """Mean over PyTorch's adaptive bins: output cell i of n over a length L spans floor(i L / n) ..
    ceil((i + 1) L / n) - 1."""

    name: ClassVar[str] = "adaptive_avgpool"
    output_size: tuple = (1, 1)

    @classmethod
    def build(cls, args, where):
        return cls(_pair(args.get("output_size", 1), "output_size", where, 1), inputs=args.get("inputs"))

    def params(self) -> dict:
        return {"output_size": list(self.output_size)}

    def out_shape(self, shape, layers, where):
        if len(shape) != 3:
            raise GraphError(f"{where}: needs a (C, H, W) input, gets {tuple(shape)}")
        return (shape[0], *self.output_size)


@dataclass(frozen=True)
class Upsample(Op):
    """Nearest-neighbour upsampling by whole factors: output (c, i, j) is input (c, i // sh, j // sw)."""

    name: ClassVar[str] = "upsample"
    scale: tuple = (2, 2)

    @classmethod
    def build(cls, args, where):
        return cls(_pair(args.get("scale", 2), "scale", where, 1), inputs=args.get("inputs"))

    def params(self) -> dict:
        return {"scale": list(self.scale)}

    def out_shape(self, shape, layers, where):
        if len(shape) != 3:
            raise GraphError(f"{where}: needs a (C, H, W) input, gets {tuple(shape)}")
        return (shape[0], shape[1] * self.scale[0], shape[2] * self.scale[1])
