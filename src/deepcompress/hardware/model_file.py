"""A compressed model file (.dcz) as workloads for the hardware models: each layer's sparse weight matrix,
and its shape, with conv layers' spatial sizes traced through the file's forward pass (meta "ops" from
"input_shape"). The format package is numpy + stdlib, so this keeps the hardware package torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import UserError
from .netspecs import LayerShape


@dataclass(frozen=True)
class FileLayer:
    """One layer of a file: its weights as CSC (rows = outputs, columns = inputs, a conv's columns being
    in x kh x kw), its shape (None for a conv whose input size is unknown), and the codebook index width."""

    name: str
    kind: str
    matrix: sp.csc_matrix
    shape: LayerShape | None
    index_bits: int
    note: str = ""


def weight_matrix(layer) -> sp.csc_matrix:
    """The CSC matrix of a QuantizedLayer's 2-D view, built from its positions (already in CSC order)."""
    rows, cols = int(layer.shape[0]), int(np.prod(layer.shape[1:]))
    col, row = np.divmod(np.asarray(layer.positions, dtype=np.int64), rows)
    indptr = np.zeros(cols + 1, dtype=np.int64)
    np.cumsum(np.bincount(col, minlength=cols), out=indptr[1:])
    data = np.asarray(layer.codebook, dtype=np.float32)[np.asarray(layer.indices, dtype=np.int64)]
    return sp.csc_matrix((data, row.astype(np.int32), indptr), shape=(rows, cols))


def _pair(v) -> int:
    if isinstance(v, (list, tuple)):
        if len(set(v)) != 1:
            raise ValueError(f"non-square {v}")
        return int(v[0])
    return int(v)


def trace_conv_inputs(meta: dict, weight_shapes: dict[str, tuple]) -> tuple[dict[str, dict], str]:
    """Input size, stride and padding of each conv layer in meta["ops"], walking from meta["input_shape"]
    ([C, H, W]) with the conv weight shapes (out, in, kh, kw); and a note saying why tracing stopped early."""
    ops, shape = meta.get("ops"), meta.get("input_shape")
    if not ops or not shape or len(shape) != 3:
        return {}, "the file has no forward pass with a [C, H, W] input_shape"
    h, w = int(shape[1]), int(shape[2])
    found: dict[str, dict] = {}
    try:
        for op in ops:
            kind = op.get("op")
            if kind == "conv":
                if h is None:
                    return found, f"conv {op['layer']} comes after flatten"
                _, _, kh, kw = weight_shapes[op["layer"]]
                s, p = _pair(op.get("stride", 1)), _pair(op.get("padding", 0))
                found[op["layer"]] = {"in_hw": (h, w), "stride": s, "padding": p}
                h, w = (h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1
            elif kind == "maxpool":
                k = _pair(op["kernel"])
                s = _pair(op.get("stride") or k)
                h, w = (h - k) // s + 1, (w - k) // s + 1
            elif kind == "flatten":
                h = w = None
            elif kind not in ("relu", "fc", "identity"):
                return found, f"unknown op {kind!r}"
    except (KeyError, TypeError, ValueError) as exc:
        return found, f"cannot read the forward pass ({exc})"
    return found, ""


def load_model(path) -> tuple[list[FileLayer], dict, str]:
    """The layers of the .dcz file at `path` as workloads, its meta, and a note on conv shape tracing."""
    from .. import format as dcz

    try:
        layers, meta = dcz.read(path)
    except (OSError, ValueError, dcz.FormatError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    conv_shapes = {q.name: q.shape for q in layers if q.kind == "conv"}
    traced, note = trace_conv_inputs(meta, conv_shapes) if conv_shapes else ({}, "")
    out = []
    for q in layers:
        matrix = weight_matrix(q)
        density = q.nnz / q.size
        if q.kind == "fc":
            shape = LayerShape(q.name, "fc", q.shape[1], q.shape[0], weight_density=density)
            out.append(FileLayer(q.name, "fc", matrix, shape, q.index_bits))
        elif q.name in traced:
            t = traced[q.name]
            shape = LayerShape(q.name, "conv", q.shape[1], q.shape[0], t["in_hw"], tuple(q.shape[2:]),
                               t["stride"], t["padding"], 1, density)
            out.append(FileLayer(q.name, "conv", matrix, shape, q.index_bits))
        else:
            out.append(FileLayer(q.name, "conv", matrix, None, q.index_bits,
                                 f"input size unknown: {note or 'layer not in the forward pass'}"))
    return out, meta, note
