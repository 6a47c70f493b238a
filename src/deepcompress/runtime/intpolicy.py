"""Which int8/int16 layout a layer gets: the one with the least predicted time, from measured costs.

Predicted time (ns) = COST[precision][layout][path] x the units that layout visits:
- rows: every weight, padded to 32 columns: rows x padded cols (a fixed cost per row is folded in).
- cols: padded rows x the expected number of nonzero inputs (act_density x cols).
- csc: the nonzero weights of nonzero inputs, act_density x nnz.
act_density None (unknown) is taken as 1: the choice must be safe for dense inputs.

COST is ns per visited unit, 1 thread, fitted by `python benchmarks/runtime_layers.py --calibrate`
(the median over EIE's nine layers of time / units) on the development machine (AMD EPYC Zen 3,
AVX2, 2 shared cores); that run writes benchmarks/results/runtime_calibration.json.
"""

from __future__ import annotations

from ..format.layer import QuantizedLayer
from .intlayouts import padded

# ns per unit; filled from benchmarks/results/runtime_calibration.json
COST = {
    "int8": {"rows": {"portable": 0.60, "avx2": 0.020, "vnni": 0.020},
             "cols": {"portable": 0.50, "avx2": 0.030, "vnni": 0.030},
             "csc": {"portable": 1.0, "avx2": 1.0, "vnni": 1.0}},
    "int16": {"rows": {"portable": 0.60, "avx2": 0.060, "vnni": 0.060},
              "cols": {"portable": 0.50, "avx2": 0.50, "vnni": 0.50},
              "csc": {"portable": 1.0, "avx2": 1.0, "vnni": 1.0}},
}
INT_LAYOUTS = ("rows", "cols", "csc")


def units(nz: QuantizedLayer, layout: str, act_density: float | None) -> float:
    """What `layout` visits for one input vector (see the module docstring)."""
    n_rows, n_cols = nz.matrix_shape
    d = 1.0 if act_density is None else float(act_density)
    if layout == "rows":
        return float(n_rows * padded(n_cols))
    if layout == "cols":
        return float(padded(n_rows)) * d * n_cols
    if layout == "csc":
        return d * nz.nnz
    raise ValueError(f"unknown int layout {layout!r}; choose one of {', '.join(INT_LAYOUTS)}")


def predicted_ns(nz: QuantizedLayer, precision: str, path: str, act_density: float | None) -> dict:
    """{layout: predicted ns per input vector} for every int layout."""
    return {name: COST[precision][name][path] * units(nz, name, act_density) for name in INT_LAYOUTS}


def choose_int_layout(nz: QuantizedLayer, precision: str, path: str, act_density: float | None) -> tuple[str, dict]:
    """(layout name, predicted ns of each layout) for this layer, precision, dispatch path and input density."""
    pred = predicted_ns(nz, precision, path, act_density)
    return min(pred, key=pred.get), pred
