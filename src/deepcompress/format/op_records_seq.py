"""Op records for sequence models: `embedding` (integer token ids -> vectors), `parameter` (a value the
model holds, as a learned position table, read without an input), `lstm` and `gru` (PyTorch's
nn.LSTM / nn.GRU over a (T, I) sequence, zero initial state), `select` (one index of an axis, as x[:, -1])
and `slice` (a range of an axis, as x[:, 1:], or one part of a chunk / split).
What each computes is specified in docs/FORMAT.md section 4.1; they are registered in op_records.OPS.

A recurrent op names a prefix `layer`; its weights are the file's fc-kind layers named as PyTorch names
the parameters: `{layer}.weight_ih_l{k}` (G*H, I_k) and `{layer}.weight_hh_l{k}` (G*H, H), with suffix
`_reverse` for the backward direction, G = 4 (LSTM gates i, f, g, o) or 3 (GRU gates r, z, n) stacked in
that order, each layer's bias (if stored) the matching b_ih / b_hh.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from .op_records import GraphError, LayerOp, Op, _axis, _bool, _int

INPUT_DTYPES = ("float32", "int64")  # meta "input_dtype": what the model's input holds
OUTPUTS = ("sequence", "h_n", "c_n")


@dataclass(frozen=True)
class Embedding(LayerOp):
    """Row lookup: integer ids of any per-sample shape S -> S + (E,), the rows of a (V, E) fc-kind layer.
    `padding_idx` (training-only in PyTorch) is kept so a rebuilt module behaves alike when trained."""

    name: ClassVar[str] = "embedding"
    kind: ClassVar[str] = "fc"
    padding_idx: int | None = None

    @classmethod
    def build(cls, args, where):
        args = dict(args)
        if args.get("padding_idx") is not None:
            args["padding_idx"] = _int(args["padding_idx"], "padding_idx", where, 0)
        return super().build(args, where)

    def params(self) -> dict:
        out = super().params()
        if self.padding_idx is not None:
            out["padding_idx"] = self.padding_idx
        return out

    def out_shape(self, shape, layers, where):
        vocab, dim = self.weight(layers, where).shape
        if self.padding_idx is not None and self.padding_idx >= vocab:
            raise GraphError(f"{where}: padding_idx {self.padding_idx} is not a row of {self.layer!r} ({vocab} rows)")
        return (*shape, dim)


@dataclass(frozen=True)
class Parameter(LayerOp):
    """A value the model holds and its forward() uses directly (a learned position table, a layer-scale
    vector): the fc-kind layer's weights, row-major, as one sample of per-sample `shape`; with `rows`, the
    layer's first `rows` rows only (positions 0..t-1 of a longer table). It takes no input; its value has
    batch 1, which element-wise ops and concatenation broadcast over the other input's batch."""

    name: ClassVar[str] = "parameter"
    kind: ClassVar[str] = "fc"
    arity: ClassVar[int | None] = 0
    shape: tuple = ()
    rows: int | None = None

    @classmethod
    def build(cls, args, where):
        shape = args.get("shape", [])
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1
                                                  for d in shape):
            raise GraphError(f"{where}: shape must be a list of positive integers, got {shape!r}")
        args = {**args, "shape": tuple(shape), "inputs": args.get("inputs", ())}
        if args.get("rows") is not None:
            args["rows"] = _int(args["rows"], "rows", where, 1, "a positive integer (how many leading rows of "
                                f"layer {args.get('layer')!r} to read) or absent")
        return super().build(args, where)

    def params(self) -> dict:
        return {**super().params(), "shape": list(self.shape), **({} if self.rows is None else {"rows": self.rows})}

    def infer(self, shapes, layers, where):
        layer = self.weight(layers, where)
        if getattr(layer, "bias", None) is not None:
            raise GraphError(f"{where}: layer {self.layer!r} has a bias; a parameter's layer holds its values alone")
        rows, cols = layer.shape
        if self.rows is not None and self.rows > rows:
            raise GraphError(f"{where}: rows {self.rows} is more than the {rows} rows of layer {self.layer!r}")
        read = rows if self.rows is None else self.rows
        if math.prod(self.shape) != read * cols:
            what = f"its first {read} rows" if self.rows is not None else "its values"
            raise GraphError(f"{where}: shape {list(self.shape)} holds {math.prod(self.shape)} values; layer "
                             f"{self.layer!r} ({rows} x {cols}) gives {read * cols} ({what})")
        return self.shape


def weight_names(prefix: str, num_layers: int, bidirectional: bool) -> list[tuple[str, str]]:
    """(weight_ih, weight_hh) layer names of a recurrent op, layer by layer, forward direction first."""
    suffixes = ("", "_reverse") if bidirectional else ("",)
    return [(f"{prefix}.weight_ih_l{k}{s}", f"{prefix}.weight_hh_l{k}{s}")
            for k in range(num_layers) for s in suffixes]


@dataclass(frozen=True)
class Recurrent(Op):
    """A multi-layer LSTM or GRU over a per-sample (T, I) sequence from zero initial state; `output` is
    the sequence output (T, D*H), or the final h (or c, LSTM) of layer/direction `index` (H,)."""

    gates: ClassVar[int] = 0
    layer: str = ""
    num_layers: int = 1
    bidirectional: bool = False
    output: str = "sequence"
    index: int | None = None

    @classmethod
    def build(cls, args, where):
        if not isinstance(args.get("layer"), str) or not args["layer"]:
            raise GraphError(f"{where}: a {cls.name} op must name its layer prefix")
        num_layers = _int(args.get("num_layers", 1), "num_layers", where, 1)
        bidirectional = _bool(args.get("bidirectional", False), "bidirectional", where)
        output = args.get("output", "sequence")
        allowed = OUTPUTS if cls.gates == 4 else OUTPUTS[:2]
        if output not in allowed:
            raise GraphError(f"{where}: output must be one of {', '.join(allowed)}, got {output!r}")
        index = args.get("index")
        states = num_layers * (2 if bidirectional else 1)
        if output == "sequence" and index is not None:
            raise GraphError(f"{where}: index applies to output h_n or c_n only")
        if output != "sequence" and (isinstance(index, bool) or not isinstance(index, int)
                                     or not 0 <= index < states):
            raise GraphError(f"{where}: output {output} needs an index in 0..{states - 1} (layer * directions "
                             f"+ direction), got {index!r}")
        return cls(args["layer"], num_layers, bidirectional, output, index, inputs=args.get("inputs"))

    def params(self) -> dict:
        out = {"layer": self.layer, "num_layers": self.num_layers}
        if self.bidirectional:
            out["bidirectional"] = True
        if self.output != "sequence":
            out.update(output=self.output, index=self.index)
        return out

    @property
    def directions(self) -> int:
        """1, or 2 when bidirectional."""
        return 2 if self.bidirectional else 1

    def weights(self, layers: dict, where: str) -> list[tuple]:
        """(weight_ih, weight_hh) layers per layer and direction; GraphError if one is absent or does not fit."""
        found = []
        for names in weight_names(self.layer, self.num_layers, self.bidirectional):
            pair = tuple(layers.get(n) for n in names)
            for name, layer in zip(names, pair):
                if layer is None:
                    raise GraphError(f"{where}: layer {name!r} is not in the file (a {self.name} op reads "
                                     f"{self.layer}.weight_ih_l<k> and {self.layer}.weight_hh_l<k>)")
                if layer.kind != "fc":
                    raise GraphError(f"{where}: layer {name!r} is a {layer.kind} layer, not fc")
            found.append(pair)
        return found

    def sizes(self, layers: dict, where: str) -> tuple[int, int]:
        """(input size, hidden size), every layer's shape checked against them."""
        pairs = self.weights(layers, where)
        hidden = pairs[0][1].shape[1]
        in_size = pairs[0][0].shape[1]
        for j, (w_ih, w_hh) in enumerate(pairs):
            expect_in = in_size if j < self.directions else self.directions * hidden
            for layer, cols in ((w_ih, expect_in), (w_hh, hidden)):
                if tuple(layer.shape) != (self.gates * hidden, cols):
                    raise GraphError(f"{where}: layer {layer.name!r} has shape {tuple(layer.shape)}, expected "
                                     f"({self.gates * hidden}, {cols}) ({self.gates} gates of hidden size {hidden})")
        return in_size, hidden

    def out_shape(self, shape, layers, where):
        in_size, hidden = self.sizes(layers, where)
        if len(shape) != 2 or shape[1] != in_size:
            raise GraphError(f"{where}: takes a (T, {in_size}) sequence per sample, gets {tuple(shape)}")
        if self.output == "sequence":
            return (shape[0], self.directions * hidden)
        return (hidden,)


@dataclass(frozen=True)
class Lstm(Recurrent):
    """PyTorch's nn.LSTM (gates i, f, g, o)."""

    name: ClassVar[str] = "lstm"
    gates: ClassVar[int] = 4


@dataclass(frozen=True)
class Gru(Recurrent):
    """PyTorch's nn.GRU (gates r, z, n)."""

    name: ClassVar[str] = "gru"
    gates: ClassVar[int] = 3


@dataclass(frozen=True)
class Select(Op):
    """Index `index` of per-sample axis `dim`, the axis removed (x[:, -1] is dim 0, index -1 of a (T, H))."""

    name: ClassVar[str] = "select"
    dim: int = 0
    index: int = 0
    axis_size: int | None = field(default=None, kw_only=True)  # capture only, never stored: see Slice
    origin: str = field(default="index", kw_only=True)

    @classmethod
    def build(cls, args, where):
        dim, index = args.get("dim", 0), args.get("index")
        for key, value in (("dim", dim), ("index", index)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise GraphError(f"{where}: {key} must be an integer, got {value!r}")
        return cls(dim, index, inputs=args.get("inputs"))

    def params(self) -> dict:
        return {"dim": self.dim, "index": self.index}

    def out_shape(self, shape, layers, where):
        axis = _axis(self.dim, len(shape), where)
        if not -shape[axis] <= self.index < shape[axis]:
            raise GraphError(f"{where}: index {self.index} is out of range for axis {self.dim} of {tuple(shape)}")
        return tuple(shape[:axis]) + tuple(shape[axis + 1:])


@dataclass(frozen=True)
class Slice(Op):
    """Positions start .. stop - 1 of per-sample axis `dim`, the axis kept (Python's slice rules: negative
    counts from the end, `stop` None is the axis's end); at least one position."""

    name: ClassVar[str] = "slice"
    dim: int = 0
    start: int = 0
    stop: int | None = None
    # capture only, never stored, read by capture_length.length_free: the length of the axis indexed (two
    # captures at different lengths differ there when that axis holds the length), and where the bounds
    # came from: "index" (numbers in the code), "computed" (from sizes), "part" (of a chunk / split),
    # "narrow" and "list" (x[:, [0, 1]]), which PyTorch refuses on too short an axis, the last four refused
    # when the axis varies
    axis_size: int | None = field(default=None, kw_only=True)
    origin: str = field(default="index", kw_only=True)

    @classmethod
    def build(cls, args, where):
        dim, start, stop = args.get("dim", 0), args.get("start", 0), args.get("stop")
        for key, value in (("dim", dim), ("start", start), ("stop", 0 if stop is None else stop)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise GraphError(f"{where}: {key} must be an integer{' or null' if key == 'stop' else ''}, "
                                 f"got {value!r}")
        return cls(dim, start, stop, inputs=args.get("inputs"))

    def params(self) -> dict:
        return {"dim": self.dim, "start": self.start, "stop": self.stop}

    def out_shape(self, shape, layers, where):
        axis = _axis(self.dim, len(shape), where)
        size = len(range(*slice(self.start, self.stop).indices(shape[axis])))
        if size < 1:
            raise GraphError(f"{where}: positions {self.start}..{self.stop} of axis {self.dim} of "
                             f"{tuple(shape)} are empty")
        return tuple(shape[:axis]) + (size,) + tuple(shape[axis + 1:])


SEQ_OPS = {cls.name: cls for cls in (Embedding, Parameter, Lstm, Gru, Select, Slice)}


def parse_input_dtype(meta: dict) -> str:
    """meta["input_dtype"]: "float32" (the default) or "int64" (token ids)."""
    dtype = meta.get("input_dtype", "float32")
    if dtype not in INPUT_DTYPES:
        raise GraphError(f"meta 'input_dtype' must be one of {', '.join(map(repr, INPUT_DTYPES))}, got {dtype!r}")
    return dtype


def check_dtype(op: Op, sources: tuple, input_dtype: str, where: str) -> None:
    """An embedding reads the model's int64 input and every other op float32 values; GraphError otherwise."""
    ints = [j == -1 and input_dtype == "int64" for j in sources]
    if isinstance(op, Embedding) and not all(ints):
        raise GraphError(f"{where}: an embedding reads integer token ids: its input must be the model's "
                         "input with meta input_dtype 'int64'")
    if not isinstance(op, Embedding) and any(ints):
        raise GraphError(f"{where}: reads the model's int64 token ids; only an embedding op can")
