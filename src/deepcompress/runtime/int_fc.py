"""A weight-shared FC layer run in integer arithmetic (int8 or int16; quantize.py states the rules)."""

from __future__ import annotations

import numpy as np

from ..format.layer import QuantizedLayer
from . import intkernels as ik
from . import intportable as ip
from . import inttune
from .intlayouts import INT_BUILDERS
from .intpack import padded
from .intpolicy import LAYOUT_PATHS, LAYOUTS_FOR, choose_int_layout, runs_on
from .layouts import LayerSizes, LayoutBytes
from .quantize import MAX_COLS_INT8, QMAX, check_precision, int_dtype, quantize_codebook, quantize_into


class IntLinear(LayerSizes):
    """y = W x + b with W's codebook and each input vector quantized to integers; float32 in and out.

    Outputs equal quantize.reference_forward bit for bit on every layout and dispatch path. Runs on one
    thread and reuses its quantization buffers: one call at a time per layer object.
    """

    threads = 1

    def __init__(self, nz: QuantizedLayer, bias=None, precision: str = "int8", layout: str = "auto",
                 act_density: float | None = None, path: str | None = None, batch: int = 1, tune: bool = True):
        """Build `layout` run on dispatch `path` (None: the fastest this machine has,
        intkernels.available_paths()). 'auto': the cost model's pick for `act_density` and `batch`; with
        `tune`, the fastest of the layouts it predicts close to that pick, timed here (inttune.py)."""
        if check_precision(precision) == "fp32":
            raise ValueError("IntLinear runs int8 or int16; fp32 is SparseLinear")
        self.precision = precision
        self.path = ik.best_path() if path is None else path
        if self.path not in ik.available_paths():
            raise ValueError(f"dispatch path {self.path!r} is not available here; "
                             f"have {', '.join(ik.available_paths())}")
        n_rows, n_cols = nz.matrix_shape
        if precision == "int8" and n_cols > MAX_COLS_INT8:
            raise ValueError(f"int8 sums of {n_cols} inputs could overflow int32 (at most {MAX_COLS_INT8}); "
                             f"use int16")
        picked, self.predicted_ns = choose_int_layout(nz, precision, self.path, act_density, batch)
        name = picked if layout == "auto" else layout
        if name not in INT_BUILDERS:
            raise ValueError(f"unknown int layout {layout!r}; choose auto or one of {', '.join(INT_BUILDERS)}")
        if name not in LAYOUTS_FOR[precision]:
            raise ValueError(f"the {name} layout has no {precision} kernels; choose one of "
                             f"{', '.join(LAYOUTS_FOR[precision])}")
        if not runs_on(name, self.path):
            raise ValueError(f"the {name} layout runs on the {' and '.join(LAYOUT_PATHS[name])} paths, "
                             f"not {self.path!r}")
        predicted = "predicted ns: " + ", ".join(f"{k} {v:.0f}" for k, v in self.predicted_ns.items())
        self.why = f"cost model ({predicted})" if layout == "auto" else "asked for by name"
        self.measured_us = {}
        names = inttune.shortlist(self.predicted_ns) if layout == "auto" and tune else [name]
        if len(names) > 1:
            built = {n: IntLinear(nz, bias, precision, n, path=self.path, batch=batch) for n in names}
            name, self.measured_us = inttune.fastest(built, inttune.probe_input(n_cols, act_density, batch))
            self.why = ("timed the cost model's shortlist (" + ", ".join(f"{k} {v:.0f} us" for k, v in
                        self.measured_us.items()) + f"; {predicted})")
            self.layout = built[name].layout
        else:
            self.layout = INT_BUILDERS[name](nz, precision)
        _, self.weight_scale = quantize_codebook(nz.codebook, precision)
        self.bias = np.zeros(n_rows, np.float32) if bias is None else np.ascontiguousarray(bias, np.float32)
        if self.bias.shape != (n_rows,):
            raise ValueError(f"bias must have shape ({n_rows},), got {self.bias.shape}")
        self._xq = np.zeros(padded(n_cols), int_dtype(precision))
        self._acc = np.zeros(self.layout.acc_rows, np.int32 if precision == "int8" else np.int64)

    @property
    def kind(self) -> str:
        """Name of the layout in use, with the precision and dispatch path."""
        return f"{self.precision}-{self.layout.kind}-{self.path}"

    def nbytes(self) -> LayoutBytes:
        """Bytes of the weight layout; the bias is not counted."""
        return self.layout.nbytes()

    def matvec(self, x: np.ndarray, y: np.ndarray, relu: bool = False) -> None:
        """y = W x + b for one float32 vector x (y is overwritten); with `relu`, max(y, 0)."""
        if self.layout.run(x, self._xq, self._acc, self.weight_scale, self.bias, y, self.path, relu):
            return
        s_x = quantize_into(x, QMAX[self.precision], self._xq)
        self.layout.matvec(self._xq, self._acc, self.path)
        ip.finish(self._acc, self.weight_scale * s_x, self.bias, y, relu)

    def __call__(self, x) -> np.ndarray:
        """float32 output for x of shape (in,) or (N, in): shape (out,) or (N, out)."""
        arr = np.asarray(x)
        if not np.issubdtype(arr.dtype, np.floating):
            raise TypeError(f"input must be a floating-point array, got dtype {arr.dtype}")
        if arr.ndim not in (1, 2) or arr.shape[-1] != self.in_features:
            raise ValueError(f"input must have shape ({self.in_features},) or (N, {self.in_features}), got {arr.shape}")
        x2 = np.ascontiguousarray(np.atleast_2d(arr), dtype=np.float32)
        out = np.empty((x2.shape[0], self.out_features), np.float32)
        run_batch = getattr(self.layout, "run_batch", None)
        if x2.shape[0] > 1 and run_batch is not None and run_batch(x2, self.weight_scale, self.bias, out, self.path):
            return out if arr.ndim == 2 else out[0]
        for i in range(x2.shape[0]):
            self.matvec(x2[i], out[i])
        return out if arr.ndim == 2 else out[0]
