"""A compressed network loaded from a .dcz file and run with the runtime's sparse layers, numpy only."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from deepcompress import format as dcz

from ..format.graph import INPUT
from .chain import build_chain
from .errors import InputError, ModelError
from .fused import all_finite, copy_finite
from .ops import Conv, Fc, build_ops
from .quantize import check_precision


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
        self.ops, self.forward = build_ops(meta, {l.name: l for l in layers}, self.batch, threads, precision)
        self.input_shape, self.output_shape = self.forward.input_shape, self.forward.output_shape
        self._done_after = _last_reads(self.forward)
        self._chain = build_chain(self.ops, self.forward)  # None for a DAG
        self.layers = {op.layer_name: op for op in self.ops if isinstance(op, (Fc, Conv))}

    def __call__(self, x) -> np.ndarray:
        """float32 outputs (logits): shape output_shape for one sample, (N, *output_shape) for a batch."""
        batch, single = self.prepare(x)
        if batch.shape[0] == 0:
            return np.zeros((0, *self.output_shape), np.float32)
        if self._chain is not None:
            out = self._chain(batch)
            return out[0] if single else out
        values = {INPUT: batch}
        for i, op in enumerate(self.ops):
            values[i] = op(*(values[j] for j in self.forward.inputs[i]))
            for j in self._done_after[i]:
                del values[j]  # no later op reads it
        out = values[len(self.ops) - 1]
        return out[0] if single else out

    def predict(self, x) -> np.ndarray:
        """Argmax class of each sample (an int64 array; a 0-d one for a single sample)."""
        return np.asarray(self(x).argmax(axis=-1))

    def prepare(self, x) -> tuple[np.ndarray, bool]:
        """x checked and copied to a float32 batch (N, *input_shape), and whether it was one sample."""
        arr = np.asarray(x)
        if self.forward.input_dtype == "int64":
            return _token_ids(arr, self.input_shape)
        if arr.dtype.kind != "f":  # np.issubdtype(dtype, np.floating), 1 us faster
            raise InputError(f"input must be floating point (e.g. float32 images in [0, 1]), "
                             f"got dtype {arr.dtype}")
        single = arr.shape == self.input_shape
        if not single and arr.shape[1:] != self.input_shape:
            raise InputError(f"input has shape {arr.shape}; the model takes {self.input_shape} or "
                             f"(N, {', '.join(map(str, self.input_shape))})")
        return _finite_copy(arr.reshape(-1, *self.input_shape)), single

    def summary(self) -> list[dict]:
        """Per weight layer: kind, shape, nonzeros, runtime layout or conv path and why it was picked,
        and its bytes (total and per nonzero; the bias is not counted)."""
        return [_layer_summary(name, op) for name, op in self.layers.items()]


def _finite_copy(arr: np.ndarray) -> np.ndarray:
    """arr copied to a C-contiguous float32 array; InputError if a value is NaN or infinite."""
    if arr.dtype == np.float32 and arr.flags.c_contiguous:
        batch = np.empty_like(arr)
        finite = copy_finite(arr, batch)  # one pass instead of a copy and a test
    else:
        batch = np.array(arr, dtype=np.float32, order="C")
        finite = all_finite(batch)
    if not finite:
        raise InputError(f"input has {'NaN' if np.isnan(batch).any() else 'infinite'} values")
    return batch


def _token_ids(arr: np.ndarray, input_shape: tuple) -> tuple[np.ndarray, bool]:
    """Integer token ids checked and copied to an int64 batch, and whether they were one sample."""
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"input must be integer token ids (the model starts with an embedding: meta "
                         f"input_dtype 'int64'), got dtype {arr.dtype}")
    single = arr.shape == input_shape
    if not single and arr.shape[1:] != input_shape:
        raise InputError(f"input has shape {arr.shape}; the model takes {input_shape} or "
                         f"(N, {', '.join(map(str, input_shape))})")
    if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise InputError("input holds token ids beyond int64")
    return np.array(arr.reshape(-1, *input_shape), dtype=np.int64, order="C"), single


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
