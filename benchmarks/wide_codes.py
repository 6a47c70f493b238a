"""6-bit codes decoded with AVX-512 VBMI (the 'rows-packed' layout) against int8 weights and 4-bit codes.

Two measurements on the same shapes, one thread, this thread's CPU time:
- kernels: benchmarks/wide_codes.c, compiled here with Python's C compiler: the runtime's int8 row kernels
  (from the built extension) on stored weights, on 4-bit codes (vpshufb) and on packed 6-bit codes, and the
  first 6-bit design (a nibble plane plus a plane of high bit pairs, its kernel in that file), medians of
  21 calls, outputs checked against a scalar reference;
- runtime (the first four shapes): IntLinear on the 'vbmi' path, a random layer whose codebook has 32 values
  and the pruned weights' 0 (the built-in recipes' 5-bit FC layers), 70% of its weights kept (MiniLM's
  feed-forward layers), a dense signed input: rows-packed against every other int8 layout offered for it,
  and the cost model's pick;
  warm steady-state medians of interleaved rounds (runtime_methods.Timer); on Alex-6's shape, the layout
  IntLinear picks on its own (the cost model's shortlist, timed as the layer is built: inttune.py).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/wide_codes.py [--rounds 7]

Needs AVX-512 VBMI (says so and exits 0 without). Writes benchmarks/results/wide_codes.json; prints a table.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

from int_paths import cpu_flags
from runtime_methods import Timer, interleaved_medians

from deepcompress import atomic
from deepcompress.runtime import from_positions, intkernels
from deepcompress.runtime.int_fc import IntLinear
from deepcompress.runtime.intpolicy import choose_int_layout

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "wide_codes.json"
# (name, rows, cols): LeNet-300-100's first layer, MiniLM's feed-forward pair, an 8 MB layer, Alex-6 (38 MB
# as int8 weights, past a 32 MB L3; 28 MB as 6-bit codes, within it) and one twice Alex-6 (past it either way)
SHAPES = (("LeNet-ip1", 300, 784), ("MiniLM-up", 1536, 384), ("MiniLM-down", 384, 1536),
          ("2048x4096", 2048, 4096), ("Alex-6", 4096, 9216), ("8192x9216", 8192, 9216))
RUNTIME_SHAPES = SHAPES[:4]  # building every layout of Alex-6's 26 million weights takes minutes
TUNED_SHAPE = SHAPES[4]  # there only the layouts the tuner shortlists are built: what the runtime picks
VALUES, KEPT = 32, 0.7


def run_kernels(shapes) -> dict:
    """{shape name: {storage: {bytes, median_us, ns_per_weight}}} from wide_codes.c."""
    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "wide_codes"
        subprocess.run([*cc, "-O2", "-std=c11", "-o", str(exe), str(HERE / "wide_codes.c"), "-ldl"], check=True)
        out = {}
        for name, rows, cols in shapes:
            proc = subprocess.run([str(exe), intkernels.LIB._name, str(rows), str(cols), "21"], capture_output=True,
                                  text=True)
            if proc.returncode:
                raise SystemExit(f"wide_codes.c {rows}x{cols}: {proc.stdout}{proc.stderr}".strip())
            out[name] = {s: {"bytes": float(b), "median_us": float(us), "ns_per_weight": float(ns)}
                         for s, b, us, ns in (line.split() for line in proc.stdout.splitlines())}
    return out


def random_layer(rows: int, cols: int, seed: int = 0):
    """A QuantizedLayer with KEPT of its weights coded into VALUES centroids, and a dense signed input."""
    rng = np.random.default_rng(seed)
    positions = np.flatnonzero(rng.random(rows * cols) < KEPT)
    codebook = np.sort(rng.uniform(-1.0, 1.0, VALUES)).astype(np.float32)
    nz = from_positions((rows, cols), positions, rng.integers(0, VALUES, positions.size), codebook)
    return nz, rng.standard_normal(cols).astype(np.float32)


def run_runtime(shapes, rounds: int) -> dict:
    """{shape name: {"median_us": {layout: us}, "picked": the cost model's layout}} on the vbmi path."""
    out = {}
    timer = Timer(time.thread_time)
    for name, rows, cols in shapes:
        nz, x = random_layer(rows, cols)
        picked, predicted = choose_int_layout(nz, "int8", "vbmi", None)
        built = {lay: IntLinear(nz, None, "int8", lay, path="vbmi") for lay in predicted}
        ref = built["rows-packed"](x)
        if any(not np.array_equal(fc(x), ref) for fc in built.values()):
            raise SystemExit(f"{name}: the layouts disagree")
        med = interleaved_medians(timer, {lay: (lambda fc=fc: fc(x)) for lay, fc in built.items()}, rounds,
                                  caches=("warm",))
        out[name] = {"median_us": {lay: med[(lay, "warm")] for lay in built}, "picked": picked,
                     "predicted_ns": predicted}
        times = out[name]["median_us"]
        print(f"{name} ({rows}x{cols}): " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(times.items(),
                                                                                    key=lambda kv: kv[1]))
              + f" us; picked {picked}", flush=True)
    return out


def run_tuned(shape) -> dict:
    """The layout IntLinear picks on its own for `shape` on the vbmi path and the shortlist's timings."""
    name, rows, cols = shape
    nz, _ = random_layer(rows, cols)
    fc = IntLinear(nz, None, "int8", path="vbmi")
    print(f"{name} ({rows}x{cols}), picked on its own: {fc.layout.kind}; "
          + ", ".join(f"{k} {v:.0f} us" for k, v in fc.measured_us.items()), flush=True)
    return {"shape": name, "picked": fc.layout.kind, "measured_us": fc.measured_us, "why": fc.why}


def main(argv: list[str] | None = None) -> int:
    """Run both measurements; print and write them."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds of the runtime measurement")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error(f"--rounds must be at least 1, got {args.rounds}")
    if "vbmi" not in intkernels.available_paths():
        print("no AVX-512 VBMI path on this machine: nothing to measure")
        return 0
    t0 = time.perf_counter()
    kernels = run_kernels(SHAPES)
    for name, by in kernels.items():
        print(f"{name} kernels: " + ", ".join(f"{s} {v['median_us']:.1f} us ({v['ns_per_weight']:.4f} ns/w)"
                                               for s, v in by.items()), flush=True)
    runtime = run_runtime(RUNTIME_SHAPES, args.rounds)
    tuned = run_tuned(TUNED_SHAPE)
    doc = {"command": "benchmarks/wide_codes.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "cpu_flags": cpu_flags(), "shapes": {n: [r, c] for n, r, c in SHAPES}, "codebook_values": VALUES,
           "kept": KEPT, "kernels": kernels, "runtime": runtime, "tuned": tuned,
           "packed_over_stored_kernel": {n: by["stored"]["median_us"] / by["packed"]["median_us"]
                                         for n, by in kernels.items()},
           "packed_over_stored_runtime": {n: r["median_us"]["rows-stored"] / r["median_us"]["rows-packed"]
                                          for n, r in runtime.items()},
           "wall_s": round(time.perf_counter() - t0, 1)}
    atomic.write_json(RESULTS, doc)
    print("rows-stored / rows-packed time, runtime: " + ", ".join(
        f"{k} {v:.2f}x" for k, v in doc["packed_over_stored_runtime"].items()))
    print(json.dumps({"wrote": str(RESULTS.relative_to(HERE.parent))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
