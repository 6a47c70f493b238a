"""Time the EIE cycle simulator on the paper's nine benchmark layers (Table III shapes and densities, 64 PEs,
FIFO 8), and the EIE authors' C++ simulator on the same layers when it is built on this machine.

    python benchmarks/eie_timing.py                       # ours; the reference too if /tmp/eie-ref is there
    python benchmarks/eie_timing.py --reference-dir DIR   # where the reference and its timing driver live
    python benchmarks/eie_timing.py --no-reference

Ours is timed in stages: importing the simulator, drawing the nine uniform random layers (seed 0), the first
pass over the nine (its first call compiles the numba kernels: this script points NUMBA_CACHE_DIR at an
empty folder, so the compilation is always measured), a first call in a fresh process that loads the
compiled kernels from that on-disk cache, and warm passes (best of --repeats). Each simulate() call encodes
the layer into EIE's interleaved CSC, runs the cycle model and the energy model.

The reference (github.com/RalphMao/EIE-simulator) is not part of this repository. It is run through a
driver outside it, DIR/time_reference.py, which converts each dumped layer to the reference's input files,
reuses the binary built for that layer (its sizes are compile-time constants; it rebuilds when they
differ, timed separately) and times the binary. Without DIR or the driver that part is skipped with a
message. Both simulators run single-threaded, one layer at a time; the reference runs at buffer size 9,
its equal-capacity setting for our FIFO depth 8 (see docs/EIE_VALIDATION.md).

Writes benchmarks/results/eie_timing.json.
"""

from __future__ import annotations

import os
import tempfile

_NUMBA_CACHE = tempfile.mkdtemp(prefix="eie-timing-numba-")
os.environ["NUMBA_CACHE_DIR"] = _NUMBA_CACHE  # before numba is imported: an empty cache, so compilation is timed

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_REFERENCE = Path("/tmp/eie-ref")
LIMIT_S = 10.0  # the requirement: all nine layers in under 10 s on 2 cores

_CHILD = """
import time
t0 = time.perf_counter()
from deepcompress.hardware.eie import simulate, EIEConfig
from deepcompress.hardware.eie_tables import BENCHMARKS
from deepcompress.hardware.layers import random_layer
t1 = time.perf_counter()
w, a = random_layer(BENCHMARKS[0].spec(0))
t2 = time.perf_counter()
simulate(w, a, EIEConfig())
t3 = time.perf_counter()
print(t1 - t0, t3 - t2)
"""


def time_ours(repeats: int) -> dict:
    """Stage times of our simulator over the nine layers (see the module docstring)."""
    t0 = time.perf_counter()
    from deepcompress.hardware.eie import EIEConfig, simulate
    from deepcompress.hardware.eie_tables import BENCHMARKS
    from deepcompress.hardware.layers import random_layer
    import_s = time.perf_counter() - t0

    layers, gen_s = {}, {}
    for b in BENCHMARKS:
        t0 = time.perf_counter()
        layers[b.name] = random_layer(b.spec(0))
        gen_s[b.name] = time.perf_counter() - t0

    config = EIEConfig()  # the paper's machine
    first_s, cycles = {}, {}
    for name, (w, a) in layers.items():
        t0 = time.perf_counter()
        res = simulate(w, a, config, name)
        first_s[name] = time.perf_counter() - t0
        cycles[name] = res.cycles

    warm_s = {name: float("inf") for name in layers}
    for _ in range(repeats):
        for name, (w, a) in layers.items():
            t0 = time.perf_counter()
            simulate(w, a, config, name)
            warm_s[name] = min(warm_s[name], time.perf_counter() - t0)

    env = dict(os.environ, NUMBA_CACHE_DIR=_NUMBA_CACHE)
    out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, check=True)
    child_import_s, child_first_s = (float(x) for x in out.stdout.split())

    first_name = next(iter(layers))
    return {
        "layers": layers, "config": {"num_pes": config.num_pes, "fifo_depth": config.fifo_depth},
        "cycles": cycles, "import_s": import_s, "generate_s": gen_s, "first_call_s": first_s,
        "warm_s": warm_s, "repeats": repeats,
        # the first call over the warm time of the same layer: numba compilation (plus first-touch costs)
        "compile_s": first_s[first_name] - warm_s[first_name],
        "cached_process": {"import_s": child_import_s, "first_call_s": child_first_s,
                           "layer": first_name, "note": "a fresh process, numba kernels loaded from the on-disk "
                                                        "cache the cold pass wrote"},
    }


def dump_layers(layers: dict, folder: Path) -> None:
    """Write each layer as the .npz the reference driver reads (CSC arrays, input vector, shape)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (w, a) in layers.items():
        np.savez(folder / f"{name}.npz", indptr=w.indptr, indices=w.indices, data=w.data, activations=a,
                 shape=np.array(w.shape))


def time_reference(layers: dict, ref_dir: Path, config: dict) -> dict | None:
    """The reference's times on the same layers at `config`'s PEs and equal FIFO capacity, or None (with a
    message) when it is not available."""
    driver = ref_dir / "time_reference.py"
    if not ref_dir.is_dir():
        print(f"reference simulator: {ref_dir} not found; skipping the C++ timing")
        return None
    if not driver.is_file() or not (ref_dir / "run_reference.py").is_file():
        print(f"reference simulator: no timing driver {driver}; skipping the C++ timing")
        return None
    pes, buffer = config["num_pes"], config["fifo_depth"] + 1
    if shutil.which("g++") is None and not any((ref_dir / "build").glob(f"*_{pes}_{buffer}/simulation")):
        print("reference simulator: no built binary and no g++; skipping the C++ timing")
        return None
    with tempfile.TemporaryDirectory(prefix="eie-timing-layers-") as tmp:
        dump_layers(layers, Path(tmp))
        out = Path(tmp) / "timing.json"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(driver), tmp, str(out), "--buffer", str(buffer),
                               "--pes", str(pes), "--layers", *layers], capture_output=True, text=True)
        total = time.perf_counter() - t0
        if proc.returncode != 0 or not out.exists():
            print(f"reference simulator: driver failed (rc {proc.returncode}); skipping\n{proc.stderr[-800:]}")
            return None
        ref = json.loads(out.read_text())
    ref["driver_wall_s"] = total
    return ref


def main(argv=None) -> int:
    """Entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="warm passes over the nine layers (best kept)")
    ap.add_argument("--reference-dir", type=Path, default=DEFAULT_REFERENCE)
    ap.add_argument("--no-reference", action="store_true")
    args = ap.parse_args(argv)

    ours = time_ours(max(1, args.repeats))
    layers, config = ours.pop("layers"), ours.pop("config")
    ref = None if args.no_reference else time_reference(layers, args.reference_dir, config)
    ref_runs = {r["layer"]: r for r in ref["runs"]} if ref else {}

    names = list(layers)
    head = (f"{'layer':<9}{'cycles':>8}{'generate s':>12}{'first call s':>14}{'warm s':>9}"
            f"{'ref cycles':>12}{'ref convert s':>15}{'ref build s':>13}{'ref run s':>11}")
    lines = [f"EIE simulators, nine layers of EIE Table III, {config['num_pes']} PEs, FIFO {config['fifo_depth']} "
             f"(reference: buffer {config['fifo_depth'] + 1}, equal capacity)",
             head, "-" * len(head)]
    for n in names:
        r = ref_runs.get(n, {})
        lines.append(f"{n:<9}{ours['cycles'][n]:>8}{ours['generate_s'][n]:>12.3f}{ours['first_call_s'][n]:>14.3f}"
                     f"{ours['warm_s'][n]:>9.4f}{r.get('cycles') or '-':>12}"
                     + (f"{r['convert_s']:>15.3f}{r['build_s']:>13.2f}{r['run_s']:>11.3f}" if r else ""))
    total = {
        "import_s": ours["import_s"],
        "generate_s": sum(ours["generate_s"].values()),
        "first_pass_s": sum(ours["first_call_s"].values()),
        "warm_pass_s": sum(ours["warm_s"].values()),
    }
    total["cold_total_s"] = total["import_s"] + total["generate_s"] + total["first_pass_s"]
    total["warm_total_with_generation_s"] = total["generate_s"] + total["warm_pass_s"]
    lines.append(f"ours: import {total['import_s']:.2f} s, layer generation {total['generate_s']:.2f} s, first pass "
                 f"{total['first_pass_s']:.2f} s (numba compilation {ours['compile_s']:.2f} s of it), warm pass "
                 f"{total['warm_pass_s']:.3f} s; cold total {total['cold_total_s']:.2f} s "
                 f"(limit {LIMIT_S:g} s: {'met' if total['cold_total_s'] < LIMIT_S else 'MISSED'})")
    cp = ours["cached_process"]
    lines.append(f"ours, fresh process with numba's on-disk cache: import {cp['import_s']:.2f} s, first call "
                 f"({cp['layer']}) {cp['first_call_s']:.3f} s")
    if ref:
        ok = [r for r in ref["runs"] if r["status"] == "ok"]
        ref_total = {k: sum(r[k] for r in ok) for k in ("convert_s", "build_s", "run_s")}
        lines.append(f"reference: binary runs {ref_total['run_s']:.2f} s, input conversion {ref_total['convert_s']:.2f} s, "
                     f"builds {ref_total['build_s']:.1f} s ({sum(r['build_s'] > 0 for r in ok)} rebuilt); "
                     f"warm ours is {ref_total['run_s'] / total['warm_pass_s']:.0f}x faster than the binary runs")
        mismatch = [n for n in names if ref_runs.get(n, {}).get("cycles") not in (None,) and
                    abs(ref_runs[n]["cycles"] - ours["cycles"][n]) > 0.002 * ours["cycles"][n]]
        if mismatch:
            lines.append(f"note: cycles differ by more than 0.2% on {', '.join(mismatch)}")
    text = "\n".join(lines)
    print(text)

    record = {
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None},
        "config": {**config, "seed": 0, "repeats": ours["repeats"]},
        "limit_s": LIMIT_S,
        "ours": {k: v for k, v in ours.items()},
        "ours_total": total,
        "reference": ref if ref else {"skipped": True},
    }
    if ref:
        record["reference_total"] = ref_total
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "eie_timing.json").write_text(json.dumps(record, indent=1))
    shutil.rmtree(_NUMBA_CACHE, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
