"""Which int8/int16 layout a layer gets: the one with the least predicted time, from measured costs.

Predicted time (ns) = a x units + b x bytes, with (a, b) = COST[precision][layout][dispatch path]:
- units, what the layout visits for one input vector: rows (and rows-stored): rows x padded cols
  (every weight); cols (and cols-stored):
  padded rows x the expected nonzero inputs (act_density x cols); blocks: the same with rows padded
  to 64; csc: act_density x nnz.
- bytes, what it streams beyond CACHE_BYTES: units x bytes per weight of its storage
  (intlayouts.bytes_per_weight) for rows and cols, 2 B per visited nonzero for csc, less CACHE_BYTES.
  This term carries what the unit term cannot: layers too large for the caches (Alex-6 and VGG-6
  stream 10-60 MB) pay for memory traffic; small ones stay in L2 and pay per unit only.
act_density None (unknown) is taken as 1, so the choice is safe for dense inputs.

COST is fitted by `python benchmarks/runtime_layers.py --calibrate` (a least-squares fit of relative
error over EIE's nine layers at batch 1, warm, 1 thread, on the development machine: AMD EPYC Zen 3,
AVX2, 2 cores shared with other work) and copied from benchmarks/results/runtime_calibration.json.
The blocks layout came later: a --calibrate --quick run at load average 14 gave fits with 10-100x
outliers (kept out of runtime_calibration.json), so its avx2 constants are cols-stored's per-unit cost
times 0.6 (blocks over cols-stored, same run, thread CPU time: 0.43 on Alex-8, 0.72 on NT-Wd) and cols'
byte term; the benchmark's policy_vs_measurement checks the picks against measured times.
"""

from __future__ import annotations

from ..format.layer import QuantizedLayer
from .intlayouts import bytes_per_weight, padded, storage_for
from .quantize import quantize_codebook

INT_LAYOUTS = ("rows", "rows-stored", "cols", "cols-stored", "csc", "blocks", "quads")
# the layouts each precision has (blocks, quads: int8 only)
LAYOUTS_FOR = {"int8": INT_LAYOUTS, "int16": INT_LAYOUTS[:-2]}
CACHE_BYTES = 1 << 20  # about Zen 3's 512 KB L2 plus what one core keeps of a shared, busy L3
# (ns per unit, ns per byte); runtime_calibration.json. 'vnni' (not measured here) reuses 'avx2'.
COST = {
    "int8": {"rows": {"portable": (2.169, 0), "avx2": (0.1202, 0)},
             "rows-stored": {"portable": (0.5037, 0), "avx2": (0.07079, 0)},
             "cols": {"portable": (2.174, 0), "avx2": (0.1512, 0.06705)},
             "cols-stored": {"portable": (0.437, 0.07819), "avx2": (0.1486, 0)},
             "csc": {"portable": (2.39, 0.2111), "avx2": (2.303, 0.2616)},
             # blocks: not from a fit (below); cols-stored's per-unit cost x 0.6 and cols' byte term
             "blocks": {"portable": (2.2, 0), "avx2": (0.09, 0.067)},
             "quads": {"portable": (2.2, 0), "avx2": (0.06, 0.067)}},
    "int16": {"rows": {"portable": (2.199, 0), "avx2": (0.1553, 0)},
             "rows-stored": {"portable": (0.5984, 0), "avx2": (0.1782, 0.03707)},
             "cols": {"portable": (2.279, 0), "avx2": (2.547, 0)},
             "cols-stored": {"portable": (0.7396, 0), "avx2": (0.643, 0.03967)},
             "csc": {"portable": (2.243, 0.8515), "avx2": (2.229, 0.9033)}},
}


def units_and_bytes(nz: QuantizedLayer, layout: str, precision: str, act_density: float | None) -> tuple[float, float]:
    """(units, bytes) `layout` visits for one input vector (see the module docstring)."""
    n_rows, n_cols = nz.matrix_shape
    d = 1.0 if act_density is None else float(act_density)
    storage = "stored" if layout.endswith("-stored") else storage_for(quantize_codebook(nz.codebook, precision)[0])[0]
    per_weight = bytes_per_weight(storage, precision)
    layout = layout.removesuffix("-stored")
    if layout == "rows":
        u = float(n_rows * padded(n_cols))
        streamed = u * per_weight
    elif layout == "cols":
        u = float(padded(n_rows)) * d * n_cols
        streamed = u * per_weight
    elif layout == "blocks":
        u = float(-(-n_rows // 64) * 64) * d * n_cols
        streamed = u
    elif layout == "quads":  # a quad of four inputs is skipped only when all four are zero
        u = float(-(-n_rows // 64) * 64) * (1.0 - (1.0 - d) ** 4) * 4 * -(-n_cols // 4)
        streamed = u
    elif layout == "csc":
        u = d * nz.nnz
        streamed = 2.0 * u
    else:
        raise ValueError(f"unknown int layout {layout!r}; choose one of {', '.join(INT_LAYOUTS)}")
    return u, max(streamed - CACHE_BYTES, 0.0)


def predicted_ns(nz: QuantizedLayer, precision: str, path: str, act_density: float | None,
                 batch: int = 1) -> dict:
    """{layout: predicted ns per input vector} for every int layout of `precision`. At batch > 1 the
    blocks layout (with a batched kernel off the portable path) streams its weights once per batch,
    so its byte term is divided by the batch."""
    out = {}
    for name in LAYOUTS_FOR[precision]:
        a, b = COST[precision][name]["avx2" if path == "vnni" else path]
        u, nbytes = units_and_bytes(nz, name, precision, act_density)
        shared = name in ("blocks", "quads") and path != "portable"
        out[name] = a * u + b * nbytes / (max(int(batch), 1) if shared else 1)
    return out


def choose_int_layout(nz: QuantizedLayer, precision: str, path: str, act_density: float | None,
                      batch: int = 1) -> tuple[str, dict]:
    """(layout name, predicted ns of each layout) for this layer, precision, dispatch path, input density
    and batch size."""
    pred = predicted_ns(nz, precision, path, act_density, batch)
    return min(pred, key=pred.get), pred
