"""Time an FC layer's batched sparse panel kernel against sgemm on its decoded dense matrix, by row count.

    python benchmarks/fc_rows.py            # writes benchmarks/results/fc_rows.json, prints the fit
    python benchmarks/fc_rows.py --quick    # fewer shapes and rounds (a check that it runs)
    python benchmarks/fc_rows.py --refit    # the fit again from the results file's times

An FC layer that sees many rows at once (tokens x batch: a transformer's sequence) is a matrix product.
For each (shape, weight density, rows) this measures, one thread, medians of ROUNDS calls:
- 'panel': SparseLinear with the panel layout for batched inputs (the runtime's many-row kernel);
- 'gemm': numpy's matmul (BLAS sgemm) of the rows with the layer's decoded float32 matrix, plus the bias.
and fits the cost model of deepcompress.runtime.policy (nanoseconds):
    panel: c * nonzeros + lanes * (a * nonzeros + b * rows_out * panels), lanes = rows rounded up to 8 (the
           kernel's vectors; c: reading each entry once per call)
    gemm:  rows_out * cols * (g0 + g1 * rows)          (g0: streaming the float32 matrix once per call)
by least squares on relative error. The fitted numbers are what policy.py's GEMM_NS / PANEL_NS hold.
Shapes: all-MiniLM-L6-v2's three FC shapes and two others; uniform random sparsity, 32 centroids.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from deepcompress import atomic  # noqa: E402
from deepcompress.runtime import SparseLinear, from_positions  # noqa: E402
from deepcompress.runtime.policy import panel_width  # noqa: E402
from deepcompress.runtime.layouts import predicted_panels  # noqa: E402
from deepcompress.runtime.simd import LANES  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "fc_rows.json"
SHAPES = ((384, 384), (1536, 384), (384, 1536), (300, 784), (1024, 1024))
DENSITIES = (0.05, 0.1, 0.3, 0.8)
ROWS = (2, 4, 8, 16, 32, 64, 128, 256)
ROUNDS = 7


def median_s(fn, rounds: int) -> float:
    """Median seconds of fn() over `rounds` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(shape, density: float, rows_list, rounds: int, rng) -> list[dict]:
    """Records {shape, density, nnz, panels, rows, panel_us, gemm_us} for one random layer."""
    out_f, in_f = shape
    nnz = max(1, int(round(out_f * in_f * density)))
    positions = np.sort(rng.choice(out_f * in_f, nnz, replace=False))
    nz = from_positions(shape, positions, rng.integers(0, 32, nnz), rng.standard_normal(32).astype(np.float32))
    bias = rng.standard_normal(out_f).astype(np.float32)
    layer = SparseLinear.from_layer(nz, bias, layout="panel", batch=64)  # 'panel': never sgemm
    dense_t = np.ascontiguousarray(nz.to_dense().T)
    records = []
    for rows in rows_list:
        x = rng.standard_normal((rows, in_f)).astype(np.float32)
        sparse = median_s(lambda: layer(x), rounds)
        gemm = median_s(lambda: np.add(x @ dense_t, bias), rounds)
        records.append({"shape": list(shape), "density": density, "nnz": nnz,
                        "panels": predicted_panels(nz, panel_width(rows)),
                        "rows": rows, "panel_us": 1e6 * sparse, "gemm_us": 1e6 * gemm})
    return records


def fit(records: list[dict]) -> dict:
    """Least-squares (relative error) coefficients of the panel and gemm cost models, in ns."""
    t_panel = np.array([r["panel_us"] * 1e3 for r in records])
    t_gemm = np.array([r["gemm_us"] * 1e3 for r in records])
    lanes = np.array([-(-r["rows"] // LANES) * LANES for r in records], float)
    nnz = np.array([r["nnz"] for r in records], float)
    out_panels = np.array([r["shape"][0] * r["panels"] for r in records], float)
    weights = np.array([r["shape"][0] * r["shape"][1] for r in records], float)
    rows = np.array([r["rows"] for r in records], float)
    a_p = np.stack([nnz, lanes * nnz, lanes * out_panels], 1) / t_panel[:, None]
    a_g = np.stack([weights, weights * rows], 1) / t_gemm[:, None]
    panel, *_ = np.linalg.lstsq(a_p, np.ones(len(records)), rcond=None)
    gemm, *_ = np.linalg.lstsq(a_g, np.ones(len(records)), rcond=None)
    err_p = a_p @ panel - 1
    err_g = a_g @ gemm - 1
    return {"panel_ns": {"per_nonzero": float(panel[0]), "per_nonzero_lane": float(panel[1]),
                         "per_row_panel_lane": float(panel[2])},
            "gemm_ns": {"per_weight": float(gemm[0]), "per_weight_row": float(gemm[1])},
            "median_abs_rel_error": {"panel": float(np.median(np.abs(err_p))),
                                     "gemm": float(np.median(np.abs(err_g)))}}


def refit(path: Path) -> dict:
    """The fit again from the records of a results file (no timing)."""
    import json

    result = json.loads(path.read_text())
    result["fit"] = fit(result["records"])
    return result


def main(argv=None) -> dict:
    """Measure, fit, write the results file; returns its content."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two shapes, three row counts, 3 rounds")
    parser.add_argument("--out", type=Path, help=f"results file (default {RESULTS.relative_to(ROOT)}; "
                                                  "--quick writes only with --out)")
    parser.add_argument("--refit", action="store_true", help="refit the results file's records, no timing")
    args = parser.parse_args(argv)
    if args.refit:
        result = refit(args.out or RESULTS)
        atomic.write_json(args.out or RESULTS, result)
        print(result["fit"])
        return result
    rng = np.random.default_rng(0)
    shapes, rows, rounds = (SHAPES[:2], (2, 16, 128), 3) if args.quick else (SHAPES, ROWS, ROUNDS)
    records = [r for shape in shapes for d in DENSITIES for r in measure(shape, d, rows, rounds, rng)]
    result = {"threads": 1, "rounds": rounds, "records": records, "fit": fit(records)}
    out = args.out or (None if args.quick else RESULTS)
    if out:
        atomic.write_json(out, result)
    print(result["fit"])
    return result


if __name__ == "__main__":
    main()
