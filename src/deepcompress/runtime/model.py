"""A compressed network loaded from a .dcz file and run with the runtime's sparse layers, numpy only."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from deepcompress import format as dcz

from ..format.graph import INPUT, Flatten, check_input_shape
from .chain import build_chain
from .compiled import FcRun
from .errors import InputError, ModelError
from .fused import all_finite, copy_finite
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
        self._chain = build_chain(self.ops, self.forward)  # the stored shape's ops as a chain; None for a DAG
        self.layers = {op.layer_name: op for op in self.ops if isinstance(op, (Fc, Conv))}
        self._by_shape = {self.input_shape: (self.ops, self.forward)}
        self._single = _single_call(self._chain, self.forward)

    def __call__(self, x) -> np.ndarray:
        """float32 outputs (logits): shape output_shape for one sample, (N, *output_shape) for a batch
        (inputs of another length on the file's variable axes give outputs of the matching shape)."""
        run = self._single
        if run is not None and type(x) is np.ndarray and x.dtype == np.float32 and x.flags.c_contiguous:
            one = x.shape == self.input_shape
            if one or x.shape == (1, *self.input_shape):
                y = run.single(x.reshape(1, -1))  # the input is read, never written: no private copy needed
                if y is not None:
                    return y[0] if one else y
        batch, single = self.prepare(x)
        out = self._run(batch)
        return out[0] if single else out

    def fc_inputs(self, x) -> dict[str, np.ndarray]:
        """The input vectors each FC layer reads on the batch `x`: layer name -> (N, P, in) float32, P the
        vectors per sample (1, or the positions of a sequence). What the hardware models cost on real data."""
        batch, _ = self.prepare(x)
        seen: dict[str, np.ndarray] = {}
        self._run(batch, seen)
        return seen

    def _run(self, batch: np.ndarray, fc_inputs: dict | None = None) -> np.ndarray:
        """The forward pass on a prepared batch; with `fc_inputs`, each FC layer's input is copied there."""
        ops, forward = self._pass_for(batch.shape[1:])
        if batch.shape[0] == 0:
            return np.zeros((0, *forward.output_shape), np.float32)
        if fc_inputs is None and ops is self.ops and self._chain is not None:
            return self._chain(batch)
        values = {INPUT: batch}
        for i, op in enumerate(ops):
            args = [values[j] for j in forward.inputs[i]]
            if fc_inputs is not None and isinstance(op, Fc):
                fc_inputs[op.layer_name] = args[0].reshape(len(batch), -1, args[0].shape[-1]).copy()
            values[i] = op(*args)
            for j in self._done_after[i]:
                del values[j]  # no later op reads it
        return values[len(ops) - 1]

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
        return _finite_copy(arr.reshape(-1, *shape)), single

    def _check_dtype(self, arr: np.ndarray) -> bool:
        """InputError unless arr has the file's input type; whether it holds token ids."""
        if self.forward.input_dtype != "int64":
            if arr.dtype.kind != "f":  # np.issubdtype(dtype, np.floating), 1 us faster
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
        return shape == self.input_shape or check_input_shape(tuple(shape), self.input_shape,
                                                              self.variable_axes) is None

    def _dims(self) -> list[str]:
        """The per-sample input shape's lengths as the user reads them ("T" on a variable axis)."""
        return ["T" if a in self.variable_axes else str(d) for a, d in enumerate(self.input_shape)]

    def summary(self) -> list[dict]:
        """Per weight layer: kind, shape, nonzeros, runtime layout or conv path and why it was picked,
        and its bytes (total and per nonzero; the bias is not counted). FC layers also say from how many
        input rows (tokens x batch) they run as sgemm on a decoded float32 matrix (`gemm_from_rows`, None:
        never; `rows`: what runs at which row count) and the bytes of that matrix held now
        (`decoded_bytes`: 0 until an input that many rows long has run; out x in x 4 after)."""
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


def _single_call(chain, forward):
    """The FcRun that is the whole pass (after a Flatten of a multi-axis input), or None: then one float32
    sample runs as one compiled call, straight from the caller's array (CompressedModel.__call__)."""
    if chain is None or forward.input_dtype == "int64":
        return None
    flattened = len(forward.input_shape) > 1
    if flattened and not isinstance(forward.ops[0], Flatten):
        return None
    if len(chain.steps) != 1 + flattened or not isinstance(chain.steps[-1], FcRun):
        return None
    return chain.steps[-1]


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
    extra = {}
    if isinstance(op, Fc):
        kind, shape, layout, size = "fc", op.layer.layout.shape, op.layer.kind, op.layer.nbytes()
        why = getattr(op.layer, "why", "fp32 layout policy (policy.py)")
        extra = _rows_policy(op.layer)
    else:
        kind, shape, layout, size = "conv", op.conv.kernel_shape, op.conv.kind, op.conv.nbytes()
        why = "conv path policy (policy.py); convolutions run in fp32"
    return {"name": name, "kind": kind, "shape": list(shape), "nonzeros": size.nnz,
            "density": size.nnz / max(math.prod(shape), 1), "layout": layout, "why": why,
            "bytes": {"entries": size.entries, "pointers": size.pointers, "codebook": size.codebook,
                      "total": size.total},
            "bytes_per_nonzero": size.per_nonzero(), **extra}


def _rows_policy(layer) -> dict:
    """What an FC layer runs at which input row count, and the decoded bytes it holds."""
    gemm = getattr(layer, "gemm_rows", None)
    if gemm is None:
        rows = {"1+": layer.kind}
    else:
        few = "1" if gemm == 2 else f"1-{gemm - 1}"
        rows = {few: layer.kind, f"{gemm}+": "sgemm on the decoded float32 matrix (policy.gemm_min_rows)"}
    return {"gemm_from_rows": gemm, "rows": rows, "decoded_bytes": getattr(layer, "decoded_bytes", 0)}


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
