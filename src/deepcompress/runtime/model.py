"""A compressed network loaded from a .dcz file and run with the runtime's sparse layers, numpy only."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from deepcompress import format as dcz

from ..format.graph import INPUT, check_input_shape
from .errors import InputError, ModelError
from .ops import Conv, Fc, build_ops
from .quantize import check_precision

MAX_SHAPES = 16  # input shapes whose ops a model keeps built (inputs of variable length)


class CompressedModel:
    """The forward pass of a .dcz file: call it on one sample (input_shape) or a batch (N, *input_shape)."""

    def __init__(self, layers, meta: dict, batch: int = 1, source: str | None = None, threads: int = 1,
                 precision: str = "fp32"):
        """Build every op of meta['ops'] from the format's QuantizedLayers; `batch` tunes the FC layouts,
        `threads` is how many threads the sparse kernels use, `precision` the FC layers' arithmetic
        (fp32, int16 or int8: quantize.py)."""
        if not isinstance(meta, dict):
            raise ModelError(f"meta must be a dict, got {type(meta).__name__}")
        self.meta = meta
        self.source = source
        self.batch = int(batch)
        self.precision = check_precision(precision)
        self._layers = {l.name: l for l in layers}
        self._build = (self.batch, threads, precision)
        self.ops, self.forward = build_ops(meta, self._layers, *self._build)
        self.input_shape, self.output_shape = self.forward.input_shape, self.forward.output_shape
        self.variable_axes = self.forward.variable_axes
        self._done_after = _last_reads(self.forward)
        self.layers = {op.layer_name: op for op in self.ops if isinstance(op, (Fc, Conv))}
        self._by_shape = {self.input_shape: (self.ops, self.forward)}

    def __call__(self, x) -> np.ndarray:
        """float32 outputs (logits): shape output_shape for one sample, (N, *output_shape) for a batch
        (inputs of another length on the file's variable axes give outputs of the matching shape)."""
        batch, single = self.prepare(x)
        ops, forward = self._pass_for(batch.shape[1:])
        if batch.shape[0] == 0:
            return np.zeros((0, *forward.output_shape), np.float32)
        values = {INPUT: batch}
        for i, op in enumerate(ops):
            values[i] = op(*(values[j] for j in forward.inputs[i]))
            for j in self._done_after[i]:
                del values[j]  # no later op reads it
        out = values[len(ops) - 1]
        return out[0] if single else out

    def _pass_for(self, shape: tuple) -> tuple:
        """The runnable ops and parsed pass for per-sample inputs of `shape` (built once per shape; the
        weight layers are shared with the stored shape's ops)."""
        if shape not in self._by_shape:
            if len(self._by_shape) >= MAX_SHAPES:
                self._by_shape.pop(next(k for k in self._by_shape if k != self.input_shape))
            self._by_shape[shape] = build_ops(self.meta, self._layers, *self._build, input_shape=shape,
                                              weight_ops=self.ops)
        return self._by_shape[shape]

    def predict(self, x) -> np.ndarray:
        """Argmax class of each sample (an int64 array; a 0-d one for a single sample)."""
        return np.asarray(self(x).argmax(axis=-1))

    def prepare(self, x) -> tuple[np.ndarray, bool]:
        """x checked and copied to a float32 (or int64 token-id) batch (N, *shape), and whether it was one
        sample; `shape` is input_shape, or it with other lengths on the file's variable axes."""
        arr = np.asarray(x)
        tokens = self._check_dtype(arr)
        shape, single = self._sample_shape(arr)
        if tokens:
            return np.array(arr.reshape(-1, *shape), dtype=np.int64, order="C"), single
        batch = np.array(arr.reshape(-1, *shape), dtype=np.float32, order="C")
        # one reduction instead of an element-wise test: a float64 sum of float32 values cannot
        # overflow, so it is finite exactly when every value is
        if not math.isfinite(float(batch.sum(dtype=np.float64))):
            bad = "NaN" if np.isnan(batch).any() else "infinite"
            raise InputError(f"input has {bad} values")
        return batch, single

    def _check_dtype(self, arr: np.ndarray) -> bool:
        """InputError unless arr has the file's input type; whether it holds token ids."""
        if self.forward.input_dtype != "int64":
            if not np.issubdtype(arr.dtype, np.floating):
                raise InputError(f"input must be floating point (e.g. float32 images in [0, 1]), "
                                 f"got dtype {arr.dtype}")
            return False
        if not np.issubdtype(arr.dtype, np.integer):
            raise InputError(f"input must be integer token ids (the model starts with an embedding: meta "
                             f"input_dtype 'int64'), got dtype {arr.dtype}")
        if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise InputError("input holds token ids beyond int64")
        return True

    def _sample_shape(self, arr: np.ndarray) -> tuple[tuple, bool]:
        """The per-sample shape of arr (one sample or a batch) and whether it is one sample."""
        if self._fits(arr.shape):
            return arr.shape, True
        if arr.ndim == len(self.input_shape) + 1 and self._fits(arr.shape[1:]):
            return arr.shape[1:], False
        dims = self._dims()
        one = f"({dims[0]},)" if len(dims) == 1 else f"({', '.join(dims)})"
        raise InputError(f"input has shape {arr.shape}; the model takes {one} or (N, {', '.join(dims)})")

    def _fits(self, shape: tuple) -> bool:
        return check_input_shape(tuple(shape), self.input_shape, self.variable_axes) is None

    def _dims(self) -> list[str]:
        """The per-sample input shape's lengths as the user reads them ("T" on a variable axis)."""
        return ["T" if a in self.variable_axes else str(d) for a, d in enumerate(self.input_shape)]

    def summary(self) -> list[dict]:
        """Per weight layer: kind, shape, nonzeros, runtime layout or conv path and why it was picked,
        and its bytes (total and per nonzero; the bias is not counted)."""
        return [_layer_summary(name, op) for name, op in self.layers.items()]


def _last_reads(forward) -> list[list[int]]:
    """For each op i, the values (INPUT or op indices) that no op after i reads."""
    last = {}
    for i, sources in enumerate(forward.inputs):
        for j in sources:
            last[j] = i
    done = [[] for _ in forward.ops]
    for j, i in last.items():
        if j != len(forward.ops) - 1:
            done[i].append(j)
    return done


def _layer_summary(name: str, op) -> dict:
    if isinstance(op, Fc):
        kind, shape, layout, size = "fc", op.layer.layout.shape, op.layer.kind, op.layer.nbytes()
        why = getattr(op.layer, "why", "fp32 layout policy (policy.py)")
    else:
        kind, shape, layout, size = "conv", op.conv.kernel_shape, op.conv.kind, op.conv.nbytes()
        why = "conv path policy (policy.py); convolutions run in fp32"
    return {"name": name, "kind": kind, "shape": list(shape), "nonzeros": size.nnz,
            "density": size.nnz / max(math.prod(shape), 1), "layout": layout, "why": why,
            "bytes": {"entries": size.entries, "pointers": size.pointers, "codebook": size.codebook,
                      "total": size.total},
            "bytes_per_nonzero": size.per_nonzero()}


def load(path, batch: int = 1, threads: int = 1, precision: str = "fp32") -> CompressedModel:
    """The model stored in the .dcz file at `path`, its FC layouts chosen for inputs of `batch` samples
    (any batch size runs) and run on `threads` threads, its FC layers in `precision` ('fp32', exact;
    'int16' or 'int8', see runtime/quantize.py). FormatError for an unreadable file, ModelError
    for one without a runnable forward pass.

    Example: load("lenet.dcz", precision="int8")(images).argmax(-1)
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    layers, meta = dcz.read(path)
    try:
        return CompressedModel(layers, meta, batch, source=str(path), threads=threads, precision=precision)
    except ModelError as err:
        raise ModelError(f"{Path(path)}: {err}") from None
