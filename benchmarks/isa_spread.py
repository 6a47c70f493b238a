"""Do the headline numbers depend on the machine's instruction set? One machine standing in for several.

Runs are deterministic for a given machine and thread count; across machines the floating-point kernels
differ (PyTorch's ATen, oneDNN and MKL, and numpy, each pick SIMD code at run time), so sums are rounded in
another order and training drifts. This trains and compresses the same baseline (LeNet-300-100, seed 0,
its built-in recipe, one thread) with those libraries held to each instruction-set level below, which
they allow through documented environment variables, and reports the spread of error, bytes and ratio:

- native: what this machine has (AVX2 and FMA here);
- sse4.2: every library held to SSE4.2, as on a machine without AVX (ATEN_CPU_CAPABILITY=default,
  DNNL_MAX_CPU_ISA=SSE41, MKL_ENABLE_INSTRUCTIONS=SSE4_2, NPY_DISABLE_CPU_FEATURES=X86_V3).

The deepcompress runtime's own kernels do not enter these numbers (training, compression and the test
error from the file run in PyTorch). A machine with AVX-512 cannot be imitated here.

    python benchmarks/isa_spread.py                    # both levels -> benchmarks/results/isa_spread.json

Runs go to runs/isa/LEVEL/ (a finished run is reused).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "src"))

from seeds import baseline, compress, spread  # noqa: E402

from deepcompress import atomic  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "isa_spread.json"
RUNS = ROOT / "runs" / "isa"
MODEL, SEED = "lenet-300-100", 0
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
LEVELS = {
    "native": {},
    "sse4.2": {"ATEN_CPU_CAPABILITY": "default", "DNNL_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
               "NPY_DISABLE_CPU_FEATURES": "X86_V3"},
}


def run_level(level: str) -> dict:
    """Train and compress at one instruction-set level; its record."""
    env = {**ONE_THREAD, **LEVELS[level]}
    runs = RUNS / level
    start = time.perf_counter()
    weights, trained = baseline(MODEL, SEED, runs, env)
    rec = compress(MODEL, SEED, "default", None, weights, runs, env)
    return {"level": level, "env": LEVELS[level], "baseline_error": trained["test_error"], "test_error": rec["test_error"],
            "file_bytes": rec["file_bytes"], "ratio": rec["ratio"], "wall_s": round(time.perf_counter() - start, 1)}


def main(argv: list[str]) -> int:
    """Run every level (or those named), write the records and their spread, print a table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("levels", nargs="*", default=list(LEVELS), help=f"levels to run (default: {', '.join(LEVELS)})")
    args = p.parse_args(argv)
    unknown = [lv for lv in args.levels if lv not in LEVELS]
    if unknown:
        p.error(f"unknown level {', '.join(unknown)}; choose from {', '.join(LEVELS)}")
    records = []
    for level in args.levels:
        records.append(run_level(level))
        r = records[-1]
        print(f"{level:<8} baseline {100 * r['baseline_error']:.2f}%  file {100 * r['test_error']:.2f}%  "
              f"{r['file_bytes']:,} B  {r['ratio']:.1f}x  ({r['wall_s']:.0f} s)", flush=True)
    summary = {k: spread([r[k] for r in records]) for k in ("baseline_error", "test_error", "file_bytes", "ratio")}
    atomic.write_json(RESULTS, {"command": "python benchmarks/isa_spread.py " + " ".join(argv), "model": MODEL,
                                "seed": SEED, "threads": 1, "cpu": os.uname().machine, "records": records,
                                "spread": summary})
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
