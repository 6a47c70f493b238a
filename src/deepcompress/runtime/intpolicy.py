"""Which int8/int16 layout a layer gets: the one with the least predicted time, from measured costs.

Predicted time (ns) = a x units + b x bytes, with (a, b) = COST[precision][layout][dispatch path]:
- units, what the layout visits for one input vector: rows (and rows-stored): rows x padded cols
  (every weight); cols (and cols-stored): padded rows x the expected nonzero inputs (act_density x
  cols); blocks: the same with rows padded to 64; quads: padded rows x the columns of the quads with
  a nonzero input (1 - (1 - act_density)^4 of them); rowquads: nonzeros plus the padding of the rows
  to quads; panelquads: nonzeros plus, per row and 256-column panel, the padding to quads and
  PANEL_VISIT_UNITS for loading and storing the row's sums; csc and csc-abs: act_density x nnz.
- bytes, what the visited units read from beyond the cache: units x the bytes a unit reads (its
  storage's bytes per weight, intcodes.bytes_per_weight; 2 per csc entry, 3 per rowquads and
  panelquads weight)
  x the fraction of the whole layout that does not fit in CACHE_BYTES. Layers that fit pay per unit
  only; layers too large (Alex-6 and VGG-6 hold 10-100 MB) pay for memory traffic.
act_density None (unknown) is taken as 1, so the choice is safe for dense inputs. At batch > 1 the
layouts with batched kernels read their weights once per batch (predicted_ns).

COST is fitted by `python benchmarks/runtime_layers.py --calibrate --cpu-time` (nonnegative least
squares of relative error over EIE's nine layers at batch 1, warm, 1 thread, this thread's CPU time,
on the development machine: AMD EPYC Zen 3, AVX2, 2 cores shared with other work, load average 13-15
during the run) and copied from benchmarks/results/runtime_calibration.json; `--refit` fits again
from that file's measured times after a change to this model. CACHE_BYTES is the value of 0.5-16 MB
whose fit picked the measured-fastest layout most often (16 of 18 layer x precision pairs within 5%).
rowquads and panelquads have batched kernels only and are not in the batch-1 calibration: their
per-unit costs (ns per unit and sample) are the medians over the nine layers of one batch-64 run,
`python benchmarks/runtime_layers.py --calibrate-batched --cpu-time` (9 interleaved rounds, load
average 7-7.5; benchmarks/results/runtime_calibration_batched.json: rowquads 0.043-0.069, panelquads
0.033-0.054 across the layers), their per-byte term cols-stored's. With them the model picks the
faster of the two on all 9 layers of that run.
PANEL_VISIT_UNITS (4: a row visit's 8 loads and 8 stores of sums, about one quad step's work) is an
estimate, not fitted. csc-abs was fitted later on its own (`--calibrate --calibrate-layouts csc-abs
--cpu-time`, load average 4-5; the other layouts' fits kept): 0.58-2.0 ns per visited nonzero on the
AVX2 path, least for the dense-input NT layers (entries read in one stream), most for VGG-6 (8 MB of
entries, 18% of its columns visited).

rows-packed (6-bit codes, the 'vbmi' path only, offered for codebooks of 17-64 values, which the other
row layouts store as int8) is not fitted: its per-unit cost is rows-stored's times 1.38 (its kernel's time
over the stored-weight kernel's on four shapes that fit the caches, 1.37-1.42x in a first run) and its
per-byte cost rows-stored's (`python benchmarks/wide_codes.py` on a Zen 4; benchmarks/results/wide_codes.json).
Its kernel beat the stored one only past the caches (Alex-6's shape, 1.16-1.40x in four runs; twice
Alex-6, 0.99-1.19x in three), an effect this additive model does not express: it predicts the stored layout
there, 1.18x faster, which keeps rows-packed in inttune's shortlist, and the timing picks it.

The model's error is up to about 2x on a layer, so where layouts are predicted close together the
layer times them (inttune.py) instead of trusting the ranking.
"""

from __future__ import annotations

from ..format.layer import QuantizedLayer
from .intcodes import bytes_per_weight, packed6_zero, storage_for
from .intpack import padded
from .introwquads import PANEL_COLS
from .quantize import quantize_codebook

INT_LAYOUTS = ("rows", "rows-stored", "cols", "cols-stored", "csc", "blocks", "quads", "rowquads", "panelquads",
               "csc-abs", "rows-packed")
# the layouts each precision has (blocks, quads, rowquads, panelquads, csc-abs, rows-packed: int8 only)
LAYOUTS_FOR = {"int8": INT_LAYOUTS, "int16": INT_LAYOUTS[:5]}
# units a panelquads row visit (a row's 64 sums loaded and stored per panel) is charged: about one quad step
PANEL_VISIT_UNITS = 4.0
CACHE_BYTES = 8 << 20  # what one core keeps of Zen 3's shared 32 MB L3 on a busy machine (best fit of 0.5-16 MB)
# the dispatch paths a layout runs on where not every path (the others: intkernels.PATHS)
LAYOUT_PATHS = {"rows-packed": ("portable", "vbmi")}
# (ns per unit, ns per byte); runtime_calibration.json. 'vnni' and 'vbmi' (not measured here) reuse 'avx2',
# except rows-packed (module docstring); there rows, blocks and quads run 1.12-1.25x faster than on 'avx2'
# (benchmarks/results/int_paths.json), which the model leaves to inttune's timing of close candidates.
COST = {
    "int8": {"rows": {"portable": (2.2076, 0.0), "avx2": (0.1059, 0.0)},
             "rows-stored": {"portable": (0.4556, 0.0), "avx2": (0.0619, 0.0315)},
             "cols": {"portable": (2.1477, 0.0), "avx2": (0.1549, 0.1191)},
             "cols-stored": {"portable": (0.4566, 0.1383), "avx2": (0.1347, 0.0678)},
             "csc": {"portable": (2.3964, 0.0), "avx2": (2.6466, 0.0)},
             "blocks": {"portable": (0.1469, 0.5541), "avx2": (0.0592, 0.2655)},
             "quads": {"portable": (0.5787, 0.1429), "avx2": (0.0629, 0.1263)},
             "rowquads": {"portable": (2.2, 0.0), "avx2": (0.0545, 0.0678)},
             "panelquads": {"portable": (2.2, 0.0), "avx2": (0.039, 0.0678)},
             "csc-abs": {"portable": (2.2505, 0.0), "avx2": (0.8425, 0.0)},
             "rows-packed": {"portable": (2.2076, 0.0), "vbmi": (0.0854, 0.0315)}},
    "int16": {"rows": {"portable": (2.1862, 0.0), "avx2": (0.1587, 0.0)},
             "rows-stored": {"portable": (0.5548, 0.0), "avx2": (0.205, 0.007)},
             "cols": {"portable": (2.2393, 0.0), "avx2": (2.2669, 0.0)},
             "cols-stored": {"portable": (0.6226, 0.0387), "avx2": (0.5343, 0.0783)},
             "csc": {"portable": (2.4118, 0.0), "avx2": (2.356, 0.0)}},
}


def panel_count(n_cols: int) -> int:
    """Column panels of the panelquads layout."""
    return max(1, -(-n_cols // PANEL_COLS))


def layout_bytes(nz: QuantizedLayer, layout: str, precision: str) -> tuple[float, float]:
    """(bytes of the whole layout, bytes it reads per visited unit) of `layout` for `nz`."""
    n_rows, n_cols = nz.matrix_shape
    if layout == "csc":
        return 2.0 * nz.nnz, 2.0
    if layout == "csc-abs":  # 2 B per entry, a 4 B pointer per row block and column
        return 2.0 * nz.nnz + 4.0 * -(-n_rows // 4096) * (n_cols + 1), 2.0
    if layout == "rowquads":
        return 3.0 * (nz.nnz + 1.5 * n_rows), 3.0
    if layout == "panelquads":  # 2 B offset + 1 B weight per slot, a 4 B pointer per row and panel
        row_panels = n_rows * panel_count(n_cols)
        return 3.0 * (nz.nnz + 1.5 * row_panels) + 4.0 * row_panels, 3.0
    if layout in ("blocks", "quads"):
        return float(-(-n_rows // 64) * 64 * n_cols), 1.0
    if layout == "rows-packed":
        storage = "packed6"
    elif layout.endswith("-stored"):
        storage = "stored"
    else:
        storage = storage_for(quantize_codebook(nz.codebook, precision)[0])[0]
    per_weight = bytes_per_weight(storage, precision)
    if layout.startswith("rows"):
        return float(n_rows * padded(n_cols)) * per_weight, per_weight
    if layout.startswith("cols"):
        return float(padded(n_rows) * n_cols) * per_weight, per_weight
    raise ValueError(f"unknown int layout {layout!r}; choose one of {', '.join(INT_LAYOUTS)}")


def units_and_bytes(nz: QuantizedLayer, layout: str, precision: str, act_density: float | None) -> tuple[float, float]:
    """(units, bytes) `layout` visits for one input vector (see the module docstring)."""
    n_rows, n_cols = nz.matrix_shape
    d = 1.0 if act_density is None else float(act_density)
    kind = layout.removesuffix("-stored").removesuffix("-packed")
    if kind == "rows":
        u = float(n_rows * padded(n_cols))
    elif kind == "cols":
        u = float(padded(n_rows)) * d * n_cols
    elif kind == "blocks":
        u = float(-(-n_rows // 64) * 64) * d * n_cols
    elif kind == "quads":  # a quad of four inputs is skipped only when all four are zero
        u = float(-(-n_rows // 64) * 64) * (1.0 - (1.0 - d) ** 4) * 4 * -(-n_cols // 4)
    elif kind == "rowquads":  # every nonzero, rows padded to quads (1.5 zero weights a row on average)
        u = float(nz.nnz) + 1.5 * n_rows
    elif kind == "panelquads":  # the same per row and panel, and the row's 64 sums loaded and stored
        u = float(nz.nnz) + (1.5 + PANEL_VISIT_UNITS) * n_rows * panel_count(n_cols)
    elif kind in ("csc", "csc-abs"):
        u = d * nz.nnz
    else:
        raise ValueError(f"unknown int layout {layout!r}; choose one of {', '.join(INT_LAYOUTS)}")
    total, per_unit = layout_bytes(nz, layout, precision)
    return u, u * per_unit * max(0.0, 1.0 - CACHE_BYTES / max(total, 1.0))


def runs_on(layout: str, path: str) -> bool:
    """Whether `layout` has kernels on dispatch `path`."""
    return path in LAYOUT_PATHS.get(layout, (path,))


def offered(nz: QuantizedLayer, layout: str, precision: str, path: str) -> bool:
    """Whether the cost model considers `layout` for `nz` on `path`: it runs there and fits the layer
    (rowquads: at most 2^16 columns; rows-packed: the vbmi path, codebooks of 17-64 values with 0)."""
    if layout == "rowquads" and nz.matrix_shape[1] > 1 << 16:
        return False
    if layout == "rows-packed":
        q_c = quantize_codebook(nz.codebook, precision)[0]
        return path == "vbmi" and q_c.size > 16 and packed6_zero(q_c) is not None
    return runs_on(layout, path)


def predicted_ns(nz: QuantizedLayer, precision: str, path: str, act_density: float | None,
                 batch: int = 1) -> dict:
    """{layout: predicted ns per input vector} for every int layout of `precision` at this batch size.
    The layouts with batched kernels (blocks, quads, rowquads, panelquads; not on the portable path)
    stream their weights once per batch, so their byte term is divided by the batch; rowquads and
    panelquads run lanes in tiles of 32 samples (a single vector costs a whole tile)."""
    out = {}
    b = max(int(batch), 1)
    for name in LAYOUTS_FOR[precision]:
        if not offered(nz, name, precision, path):
            continue
        costs = COST[precision][name]
        per_unit, per_byte = costs.get(path, costs.get("avx2"))
        u, nbytes = units_and_bytes(nz, name, precision, act_density)
        simd = path != "portable"
        if name in ("rowquads", "panelquads") and simd:  # lanes in tiles of 32 samples; weights once per batch
            out[name] = per_unit * u * (-(-b // 32) * 32) / b + per_byte * nbytes / b
        elif name in ("blocks", "quads") and simd:  # weights read once per batch
            out[name] = per_unit * u + per_byte * nbytes / b
        else:
            out[name] = per_unit * u + per_byte * nbytes
    return out


def choose_int_layout(nz: QuantizedLayer, precision: str, path: str, act_density: float | None,
                      batch: int = 1) -> tuple[str, dict]:
    """(layout name, predicted ns of each layout) for this layer, precision, dispatch path, input density
    and batch size."""
    pred = predicted_ns(nz, precision, path, act_density, batch)
    return min(pred, key=pred.get), pred
