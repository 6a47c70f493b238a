"""The int8 kernels that have a VNNI version, on each dispatch path this machine has (portable numba, AVX2,
AVX-512 VNNI; 'vbmi' runs the same kernels as 'vnni' and is left out), on EIE's nine layers at batch 1:
the `rows` layout (4-bit codes, every weight visited), `blocks` and `quads` (64-row blocks skipping zero
inputs), whose VNNI kernels use `vpdpbusd` in place of AVX2's `vpmaddubsw` + `vpmaddwd`, so this isolates
what VNNI gives. The portable path runs `rows` only, on the smaller layers. Outputs are checked equal
across paths before timing. Warm steady-state medians of interleaved rounds (runtime_methods.Timer),
this thread's CPU time, one thread.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/int_paths.py [--rounds 5] [--layers Alex-8,NT-We]

Results of all nine layers go to benchmarks/results/int_paths.json (with the CPU's AVX-512 flags; a --layers
subset is only printed); a table is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from runtime_methods import Timer, geomean, interleaved_medians, make_layer

from deepcompress import atomic
from deepcompress.hardware.eie_tables import BENCHMARKS
from deepcompress.runtime import intkernels
from deepcompress.runtime.int_fc import IntLinear

RESULTS = Path(__file__).resolve().parent / "results" / "int_paths.json"
PORTABLE_MAX_WEIGHTS = 3_000_000  # the scalar loop takes tens of ms above this: timed on the small layers only
LAYOUTS = ("rows", "blocks", "quads")  # the int8 layouts with a VNNI kernel


def cpu_flags() -> list[str]:
    """The AVX-512 and AVX2 flags /proc/cpuinfo lists (empty where there is no such file)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(f for f in flags if f.startswith(("avx512", "avx2")))


def layer_paths(layer) -> tuple[dict, int]:
    """({(layout, path): zero-argument call} of LAYOUTS on each available path, the layer's weight count);
    ValueError if two paths give different outputs."""
    nz, x = make_layer(layer)
    small = layer.outputs * layer.inputs <= PORTABLE_MAX_WEIGHTS
    keys = [(lay, p) for lay in LAYOUTS for p in intkernels.available_paths()
            if p != "vbmi" and (p != "portable" or lay == "rows" and small)]
    built = {k: IntLinear(nz, None, "int8", k[0], path=k[1]) for k in keys}
    outs = {k: f(x) for k, f in built.items()}
    first = next(iter(outs.values()))
    if any(not np.array_equal(first, o) for o in outs.values()):
        raise ValueError(f"{layer.name}: the dispatch paths disagree")
    return {k: (lambda f=f: f(x)) for k, f in built.items()}, layer.outputs * layer.inputs


def main(argv: list[str] | None = None) -> int:
    """Time every path on every layer; print and write the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    ap.add_argument("--layers", default="", help="comma-separated subset of the nine layers")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error(f"--rounds must be at least 1, got {args.rounds}")
    wanted = [s for s in args.layers.split(",") if s]
    unknown = sorted(set(wanted) - {b.name for b in BENCHMARKS})
    if unknown:
        ap.error(f"unknown layer {', '.join(unknown)}; choose from {', '.join(b.name for b in BENCHMARKS)}")
    timer, rows, t0 = Timer(time.thread_time), [], time.perf_counter()
    for layer in BENCHMARKS:
        if wanted and layer.name not in wanted:
            continue
        methods, weights = layer_paths(layer)
        med = interleaved_medians(timer, methods, args.rounds, caches=("warm",))
        for (lay, path) in methods:
            us = med[((lay, path), "warm")]
            rows.append({"layer": layer.name, "layout": lay, "path": path, "median_us": us,
                         "ns_per_weight": 1e3 * us / weights})
        print("  ".join(f"{r['layer']} {r['layout']} {r['path']} {r['median_us']:.1f} us"
                        for r in rows[-len(methods):]), flush=True)
    ratios = vnni_ratios(rows)
    doc = {"command": "benchmarks/int_paths.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "cpu_flags": cpu_flags(), "paths": list(intkernels.available_paths()), "rounds": args.rounds,
           "records": rows, "vnni_speedup_over_avx2": ratios,
           "vnni_geomean_speedup": {lay: geomean(r.values()) for lay, r in ratios.items() if r},
           "wall_s": round(time.perf_counter() - t0, 1)}
    if not wanted:  # a subset never replaces the nine-layer result
        atomic.write_json(RESULTS, doc)
    if not any(ratios.values()):
        print("no VNNI path on this machine: nothing to compare")
    for lay, r in ratios.items():
        if r:
            print(f"VNNI over AVX2, {lay}: " + ", ".join(f"{k} {v:.2f}x" for k, v in r.items())
                  + f"; geomean {doc['vnni_geomean_speedup'][lay]:.2f}x")
    return 0


def vnni_ratios(rows: list[dict]) -> dict:
    """{layout: {layer: AVX2 time / VNNI time}} from the records."""
    time_of = {(r["layer"], r["layout"], r["path"]): r["median_us"] for r in rows}
    return {lay: {layer: time_of[layer, lay2, "avx2"] / us for (layer, lay2, path), us in time_of.items()
                  if lay2 == lay and path == "vnni"} for lay in LAYOUTS}


if __name__ == "__main__":
    sys.exit(main())
