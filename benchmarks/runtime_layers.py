"""Time deepcompress.runtime's sparse FC kernels on EIE's nine layers against dense and sparse baselines.

    python benchmarks/runtime_layers.py              # all layers, batch 1 and 64, warm and cold cache
    python benchmarks/runtime_layers.py --quick      # 3 rounds instead of 9 (about a third of the time)
    python benchmarks/runtime_layers.py --threads 2  # every method on 2 threads (ours: output rows split);
                                                     # writes runtime_threads2*.json instead
    python benchmarks/runtime_layers.py --sweep      # layouts vs input density -> runtime_sweep.json
    python benchmarks/runtime_layers.py --conv       # conv dense vs sparse path -> runtime_conv.json
    python benchmarks/runtime_layers.py --calibrate  # int layouts' ns per visited unit -> runtime_calibration.json
    python benchmarks/runtime_layers.py --refit      # the same fit again from that file's measured times
    python benchmarks/runtime_layers.py --calibrate-batched  # rowquads / panelquads ns per unit at batch 64
                                                     # -> runtime_calibration_batched.json
    python benchmarks/runtime_layers.py --cpu-time   # time with this thread's CPU time, not wall time

Layers: shapes, weight and activation densities of REFERENCE.md s.5 (from deepcompress.hardware),
uniform random sparsity, a 16-entry codebook, fixed seeds. Writes benchmarks/results/runtime.json, a list
of records {layer, batch, cache, method, median_us, ...}, and runtime_summary.json; prints a table.
'deepcompress' is the layout chosen automatically for that layer and batch (deepcompress.runtime.policy);
its time is the measured time of that layout's own record.
"""

from __future__ import annotations

import os
import sys

# thread counts must be fixed before numpy / torch load their thread pools
_THREADS = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "1"
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = _THREADS

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import runtime_calibration as calibration  # noqa: E402
import runtime_methods as rm  # noqa: E402
from runtime_methods import BATCH, BATCH_LAYOUTS, CODEBOOK_SIZE, PRECISIONS, batch_inputs, make_layer  # noqa: E402
from deepcompress.hardware.eie_tables import BENCHMARKS  # noqa: E402
from deepcompress.format import QuantizedLayer
from deepcompress.runtime import SparseConv2d, choose_fc_layout, from_positions  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
LOW_DENSITY = (0.04, 0.11)  # the "4-11% density layers" for the batch-64 target
SWEEP_LAYERS = ("Alex-7", "NT-LSTM")
SWEEP_DENSITIES = (0.1, 0.2, 0.35, 0.5, 0.6, 0.7, 0.8, 1.0)
# (name, (out_c, in_c, kh, kw), input H = W, padding): LeNet-5's two convolutions and AlexNet's conv3
CONV_LAYERS = (("LeNet5-conv1", (20, 1, 5, 5), 28, 0), ("LeNet5-conv2", (50, 20, 5, 5), 12, 0),
               ("Alex-conv3", (384, 256, 3, 3), 13, 1))
CONV_DENSITIES = (0.05, 0.12, 0.35, 0.66)
LAYOUT_METHODS = {"csc": "deepcompress-csc", "panel": "deepcompress-panel", "grouped": "deepcompress-grouped"}
from deepcompress.runtime.intkernels import best_path  # noqa: E402
from deepcompress.runtime.intpolicy import INT_LAYOUTS, LAYOUTS_FOR, runs_on  # noqa: E402
# relative error of the integer modes against torch dense fp32 that stops the run (quantization, not bugs)
INT_TOLERANCE = {"int8": 3e-2, "int16": 1e-3}


def contenders(nz: QuantizedLayer, dense: np.ndarray, x: np.ndarray, threads: int, act_density: float):
    """{method: callable} for one layer and input, and {layout: built SparseLinear}."""
    methods, built = {}, {}
    for layout, method in LAYOUT_METHODS.items():
        if layout == "grouped" and nz.matrix_shape[1] > 0xFFFF:
            continue
        methods[method], built[layout] = rm.ours(nz, x, layout, threads)
    methods["torch-dense-fp32"] = rm.torch_dense(dense, x)
    methods["numpy-dense-fp32"] = rm.numpy_dense(dense, x)
    methods["torch-csr-int32"] = rm.torch_csr(nz, x)
    methods["scipy-csr"] = rm.scipy_csr(nz, x)
    for precision in PRECISIONS:
        # the automatic pick (built once: it times candidates, so a second build may pick another), then
        # every int layout at batch 1 (the cost model is checked against them) or the batched ones at batch N
        every = [lay for lay in LAYOUTS_FOR[precision] if runs_on(lay, best_path())]  # rows-packed: VBMI only
        layouts = ("auto",) + (tuple(every) if x.ndim == 1 else BATCH_LAYOUTS.get(precision, ()))
        for layout in layouts:
            fn, layer = rm.ours_int(nz, x, precision, layout, act_density, 1 if x.ndim == 1 else x.shape[0])
            if layout == "auto":
                built[f"{precision}-auto"] = layer
            methods.setdefault(f"deepcompress-{precision}-{layer.layout.kind}", fn)
            built.setdefault(f"{precision}-{layer.layout.kind}", layer)
    ort = rm.onnxruntime_dense(dense, x, threads)
    if ort is not None:
        methods["onnxruntime-dense-fp32"] = ort
    nbits = rm.onnxruntime_matmulnbits(dense, x, threads)
    if nbits is not None:
        methods["onnxruntime-matmulnbits-4bit"] = nbits
    return methods, built


def check_outputs(methods: dict, reference) -> None:
    """Stop if any of our layouts disagrees with torch dense fp32 beyond float32 summation noise (fp32)
    or quantization error (INT_TOLERANCE)."""
    ref = np.asarray(reference)
    for method, fn in methods.items():
        precision = method.split("-")[1]
        if precision in INT_TOLERANCE:
            err = np.linalg.norm(fn() - ref) / max(np.linalg.norm(ref), 1e-30)
            if err > INT_TOLERANCE[precision]:
                raise SystemExit(f"{method}: relative error {err:.2e} against torch dense")
    for layout, method in LAYOUT_METHODS.items():
        if method in methods:
            err = np.linalg.norm(methods[method]() - ref) / max(np.linalg.norm(ref), 1e-30)
            if err > 1e-4:
                raise SystemExit(f"{method}: relative error {err:.2e} against torch dense")


def run_layer(layer, timer: rm.Timer, rounds: int, threads: int) -> list[dict]:
    """Records for one layer at batch 1 and BATCH, warm and cold."""
    nz, x1 = make_layer(layer)
    dense = nz.to_dense()
    records = []
    for batch, x in ((1, x1), (BATCH, batch_inputs(layer, layer.act_density, BATCH))):
        methods, built = contenders(nz, dense, x, threads, layer.act_density)
        check_outputs(methods, methods["torch-dense-fp32"]())
        medians = rm.interleaved_medians(timer, methods, rounds)
        auto = choose_fc_layout(nz, layer.act_density, batch)
        int_auto = {p: built[f"{p}-auto"] for p in PRECISIONS}
        visited = visited_nonzeros(nz, x)
        common = {"layer": layer.name, "batch": batch, "in": layer.inputs, "out": layer.outputs,
                  "weight_density": layer.weight_density, "act_density": layer.act_density,
                  "threads": threads, "rounds": rounds}
        for (method, cache), us in medians.items():
            rec = dict(common, cache=cache, method=method, median_us=us,
                       ns_per_weight=1e3 * us / (batch * layer.inputs * layer.outputs),
                       ns_per_visited_nonzero=1e3 * us / max(visited, 1))
            for p, chosen in int_auto.items():
                if method == f"deepcompress-{p}-{chosen.layout.kind}":
                    records.append(dict(rec, method=f"deepcompress-{p}", layout=chosen.layout.kind,
                                        why=chosen.why, predicted_ns=chosen.predicted_ns,
                                        tuned_us=chosen.measured_us,
                                        bytes_per_nonzero=chosen.nbytes().per_nonzero()))
            layout = next((k for k, v in LAYOUT_METHODS.items() if v == method), None)
            if layout is not None:
                rec.update(layout=layout, bytes_per_nonzero=built[layout].nbytes().per_nonzero())
            records.append(rec)
            if layout == auto:
                records.append(dict(rec, method="deepcompress", ours_threads=built[layout].threads))
                records.append(dict(rec, method="deepcompress-fp32", ours_threads=built[layout].threads))
        del methods, built
    return records


def visited_nonzeros(nz: QuantizedLayer, x: np.ndarray) -> int:
    """Nonzero weights in the columns of nonzero inputs, summed over the samples of x."""
    per_col = np.bincount(nz.rows_cols()[1], minlength=nz.matrix_shape[1])
    return int(((np.atleast_2d(x) != 0) @ per_col).sum())


def _time(records, layer, batch, cache, method):
    for r in records:
        if (r["layer"], r["batch"], r["cache"], r["method"]) == (layer, batch, cache, method):
            return r["median_us"]
    return None


def summarize(records: list[dict]) -> dict:
    """The issue's target figures, computed from the records."""
    names = [b.name for b in BENCHMARKS if _time(records, b.name, 1, "warm", "deepcompress")]
    out = {}
    for cache in ("warm", "cold"):
        vs_dense = [_time(records, n, 1, cache, "torch-dense-fp32") / _time(records, n, 1, cache, "deepcompress")
                    for n in names]
        vs_csr = [_time(records, n, 1, cache, "torch-csr-int32") / _time(records, n, 1, cache, "deepcompress")
                  for n in names]
        out[f"batch1_{cache}"] = {
            "geomean_speedup_vs_torch_dense": rm.geomean(vs_dense),
            "geomean_speedup_vs_torch_csr_int32": rm.geomean(vs_csr),
            "worst_ratio_vs_torch_csr_int32": min(vs_csr),
            "worst_layer_vs_torch_csr_int32": names[int(np.argmin(vs_csr))],
            "per_layer_vs_torch_dense": dict(zip(names, vs_dense)),
            "per_layer_vs_torch_csr_int32": dict(zip(names, vs_csr)),
        }
        low = [b.name for b in BENCHMARKS if b.name in names
               and LOW_DENSITY[0] <= b.weight_density <= LOW_DENSITY[1]]
        b64 = {n: _time(records, n, BATCH, cache, "torch-dense-fp32") / _time(records, n, BATCH, cache, "deepcompress")
               for n in low}
        out[f"batch{BATCH}_{cache}"] = {"speedup_vs_torch_dense_on_4_11pct_layers": b64,
                                        "min": min(b64.values()), "geomean": rm.geomean(b64.values())}
    out["issue12"] = summarize_modes(records)
    w = out["batch1_warm"]
    out["targets"] = {
        "batch1_warm_geomean_vs_torch_dense>=10": w["geomean_speedup_vs_torch_dense"] >= 10,
        "batch1_warm_geomean_vs_torch_csr>=1.5": w["geomean_speedup_vs_torch_csr_int32"] >= 1.5,
        "batch1_warm_no_layer_below_0.8x_torch_csr": w["worst_ratio_vs_torch_csr_int32"] >= 0.8,
        f"batch{BATCH}_warm_>=2x_torch_dense_on_4_11pct": out[f"batch{BATCH}_warm"]["min"] >= 2,
    }
    return out


MODES = ("deepcompress-fp32", "deepcompress-int16", "deepcompress-int8")


def summarize_modes(records: list[dict]) -> dict:
    """Issue 12's targets per precision mode and for the best mode per layer (batch 1 and BATCH, warm),
    and the int cost model's pick against the fastest int layout measured on each layer (batch 1)."""
    names = [b.name for b in BENCHMARKS if _time(records, b.name, 1, "warm", MODES[0])]
    out = {}
    for mode in MODES + ("best",):
        def t(n, batch):
            if mode != "best":
                return _time(records, n, batch, "warm", mode)
            return min(v for m in MODES if (v := _time(records, n, batch, "warm", m)) is not None)
        vs_dense = {n: _time(records, n, 1, "warm", "torch-dense-fp32") / t(n, 1) for n in names}
        vs_csr = {n: _time(records, n, 1, "warm", "torch-csr-int32") / t(n, 1) for n in names}
        b64 = {n: _time(records, n, BATCH, "warm", "torch-dense-fp32") / t(n, BATCH) for n in names}
        out[mode] = {"batch1_vs_torch_dense": vs_dense, "batch1_vs_torch_csr_int32": vs_csr,
                     f"batch{BATCH}_vs_torch_dense": b64,
                     "batch1_geomean_vs_torch_dense": rm.geomean(vs_dense.values()),
                     "batch1_geomean_vs_torch_csr_int32": rm.geomean(vs_csr.values()),
                     "batch1_worst_vs_torch_csr_int32": min(vs_csr.values()),
                     f"batch{BATCH}_min_vs_torch_dense": min(b64.values()),
                     "targets": {"batch1_geomean_vs_torch_dense>=10": rm.geomean(vs_dense.values()) >= 10,
                                 "batch1_geomean_vs_torch_csr>=2": rm.geomean(vs_csr.values()) >= 2,
                                 "batch1_no_layer_below_1.2x_torch_csr": min(vs_csr.values()) >= 1.2,
                                 f"batch{BATCH}_>=4x_torch_dense_every_layer": min(b64.values()) >= 4}}
    policy = {}
    for n in names:
        for p in PRECISIONS:
            measured = {lay: t for lay in INT_LAYOUTS if (t := _time(records, n, 1, "warm", f"deepcompress-{p}-{lay}"))}
            best = min(measured, key=measured.get)
            picked = next(r["layout"] for r in records if (r["layer"], r["batch"], r["method"])
                          == (n, 1, f"deepcompress-{p}"))
            policy[f"{n} {p}"] = {"picked": picked, "fastest": best,
                                  "picked_over_fastest": measured[picked] / measured[best]}
        fp32 = {lay: _time(records, n, 1, "warm", m) for lay, m in LAYOUT_METHODS.items()
                if _time(records, n, 1, "warm", m)}
        auto = _time(records, n, 1, "warm", "deepcompress")
        policy[f"{n} fp32"] = {"fastest": min(fp32, key=fp32.get), "picked_over_fastest": auto / min(fp32.values())}
    out["policy_vs_measurement"] = policy
    return out


def print_table(records: list[dict]) -> None:
    """One block per (batch, cache): layers down, methods across, microseconds."""
    methods = list(dict.fromkeys(["deepcompress"] + [r["method"] for r in records]))
    short = {m: m.replace("deepcompress", "dc").replace("-fp32", "").replace("onnxruntime", "ort") for m in methods}
    for batch in (1, BATCH):
        for cache in ("warm", "cold"):
            print(f"\nbatch {batch}, {cache} cache, median microseconds")
            print(f"{'layer':<9}" + "".join(f"{short[m]:>17}" for m in methods) + f"{'auto':>8}")
            for b in BENCHMARKS:
                row = [_time(records, b.name, batch, cache, m) for m in methods]
                if all(v is None for v in row):
                    continue
                auto = next((r.get("layout") for r in records if (r["layer"], r["batch"], r["method"])
                             == (b.name, batch, "deepcompress")), "")
                print(f"{b.name:<9}" + "".join(f"{v:>17.0f}" if v else f"{'-':>17}" for v in row) + f"{auto:>8}")


def sweep(timer: rm.Timer, rounds: int) -> list[dict]:
    """Batch-1 warm time of each layout against input density, on SWEEP_LAYERS."""
    records = []
    for layer in (b for b in BENCHMARKS if b.name in SWEEP_LAYERS):
        nz, _ = make_layer(layer)
        for density in SWEEP_DENSITIES:
            x = batch_inputs(layer, density, 1)[0]
            methods = {m: rm.ours(nz, x, layout)[0] for layout, m in LAYOUT_METHODS.items()}
            for (method, _), us in rm.interleaved_medians(timer, methods, rounds, ("warm",)).items():
                records.append({"layer": layer.name, "act_density": density, "method": method, "median_us": us})
            row = {r["method"]: r["median_us"] for r in records[-len(methods):]}
            print(f"{layer.name:<9}a={density:<5}" + "".join(f"{m}={v:8.0f}  " for m, v in row.items()))
    return records


def conv_paths(timer: rm.Timer, rounds: int) -> list[dict]:
    """Warm time of the dense and sparse conv paths against weight density, at batch 1 and BATCH."""
    records = []
    for name, shape, size, padding in CONV_LAYERS:
        for density in CONV_DENSITIES:
            rng = np.random.default_rng(0)
            cols = int(np.prod(shape[1:]))
            pos = np.flatnonzero(rng.random(shape[0] * cols) < density)
            nz = from_positions((shape[0], cols), pos, rng.integers(0, CODEBOOK_SIZE, pos.size),
                                rng.uniform(-1, 1, CODEBOOK_SIZE).astype(np.float32))
            for batch in (1, BATCH):
                x = np.maximum(rng.standard_normal((batch, shape[1], size, size)), 0).astype(np.float32)
                convs = {p: SparseConv2d(nz, shape, padding=padding, path=p) for p in ("dense", "sparse")}
                methods = {f"conv-{p}": (lambda c=c: c(x)) for p, c in convs.items()}
                meds = rm.interleaved_medians(timer, methods, rounds, ("warm",))
                for (method, _), us in meds.items():
                    records.append({"layer": name, "weight_density": density, "batch": batch,
                                    "method": method, "median_us": us})
                print(f"{name:<13}w={density:<5}batch={batch:<3}"
                      + "".join(f"{m}={us:9.0f}  " for (m, _), us in meds.items()), flush=True)
    return records


def main(argv=None) -> None:
    """Run the benchmark and write the JSON results."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 rounds instead of 9")
    ap.add_argument("--threads", type=int, default=1, help="threads for every method (ours, torch, BLAS, onnxruntime)")
    ap.add_argument("--layers", default="", help="comma-separated subset of the nine layers")
    ap.add_argument("--sweep", action="store_true", help="only the layout / input-density sweep")
    ap.add_argument("--conv", action="store_true", help="only the conv dense / sparse path comparison")
    ap.add_argument("--refit", action="store_true",
                    help="only fit the int cost model again from runtime_calibration.json's measured times")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time with this thread's CPU time instead of wall time (a loaded machine's time slices "
                         "given to other jobs do not count)")
    ap.add_argument("--calibrate-batched", action="store_true",
                    help="only the batched row-quad layouts' ns per unit at batch 64 -> runtime_calibration_batched.json")
    ap.add_argument("--calibrate", action="store_true",
                    help="only the int layouts' ns per visited unit -> runtime_calibration.json (intpolicy.COST)")
    ap.add_argument("--calibrate-layouts", default="",
                    help="with --calibrate: only these comma-separated int layouts, merged into "
                         "runtime_calibration.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rounds = 3 if args.quick else 9
    timer = rm.Timer(time.thread_time if args.cpu_time else time.perf_counter)
    RESULTS.mkdir(parents=True, exist_ok=True)
    start = time.time()
    if args.sweep:
        (RESULTS / "runtime_sweep.json").write_text(json.dumps(sweep(timer, rounds), indent=1) + "\n")
        return
    if args.calibrate_batched or args.calibrate or args.refit:
        calibration.main(args, timer, rounds, start)
        return
    if args.conv:
        (RESULTS / "runtime_conv.json").write_text(json.dumps(conv_paths(timer, rounds), indent=1) + "\n")
        return
    wanted = {s.strip().lower() for s in args.layers.split(",") if s.strip()}
    records = []
    for layer in BENCHMARKS:
        if wanted and layer.name.lower() not in wanted:
            continue
        records += run_layer(layer, timer, rounds, args.threads)
        print(f"{layer.name} done at {time.time() - start:.0f} s", flush=True)
    print_table(records)
    if wanted:  # a subset is for looking, not for the results files
        return
    summary = summarize(records)
    summary["setup"] = {"threads_baselines": args.threads, "threads_ours": args.threads, "rounds": rounds,
                        "clock": "thread CPU time" if args.cpu_time else "wall", "load_average_end": os.getloadavg(),
                        "torch": torch.__version__, "numpy": np.__version__,
                        "onnxruntime": rm.onnxruntime_version(), "wall_s": time.time() - start}
    stem = "runtime" if args.threads == 1 else f"runtime_threads{args.threads}"
    path = RESULTS / f"{stem}.json"
    # records of other layers (runtime_models.py's end-to-end models) stay
    ours = {b.name for b in BENCHMARKS}
    kept = [r for r in json.loads(path.read_text()) if r.get("layer") not in ours] if path.is_file() else []
    path.write_text(json.dumps(records + kept, indent=1) + "\n")
    (RESULTS / f"{stem}_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
