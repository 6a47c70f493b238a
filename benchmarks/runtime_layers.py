"""Time deepcompress.runtime's sparse FC kernels on EIE's nine layers against dense and sparse baselines.

    python benchmarks/runtime_layers.py              # all layers, batch 1 and 64, warm and cold cache
    python benchmarks/runtime_layers.py --quick      # 3 rounds instead of 9 (about a third of the time)
    python benchmarks/runtime_layers.py --threads 2  # every method on 2 threads (ours: output rows split);
                                                     # writes runtime_threads2*.json instead
    python benchmarks/runtime_layers.py --sweep      # layouts vs input density -> runtime_sweep.json
    python benchmarks/runtime_layers.py --conv       # conv dense vs sparse path -> runtime_conv.json

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

import runtime_methods as rm  # noqa: E402
from deepcompress.hardware.eie_tables import BENCHMARKS  # noqa: E402
from deepcompress.hardware.layers import random_layer  # noqa: E402
from deepcompress.format import QuantizedLayer
from deepcompress.runtime import SparseConv2d, choose_fc_layout, from_positions  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CODEBOOK_SIZE = 16
BATCH = 64
LOW_DENSITY = (0.04, 0.11)  # the "4-11% density layers" for the batch-64 target
SWEEP_LAYERS = ("Alex-7", "NT-LSTM")
SWEEP_DENSITIES = (0.1, 0.2, 0.35, 0.5, 0.6, 0.7, 0.8, 1.0)
# (name, (out_c, in_c, kh, kw), input H = W, padding): LeNet-5's two convolutions and AlexNet's conv3
CONV_LAYERS = (("LeNet5-conv1", (20, 1, 5, 5), 28, 0), ("LeNet5-conv2", (50, 20, 5, 5), 12, 0),
               ("Alex-conv3", (384, 256, 3, 3), 13, 1))
CONV_DENSITIES = (0.05, 0.12, 0.35, 0.66)
LAYOUT_METHODS = {"csc": "deepcompress-csc", "panel": "deepcompress-panel", "grouped": "deepcompress-grouped"}


def make_layer(layer, seed: int = 0) -> tuple[QuantizedLayer, np.ndarray]:
    """The layer's weights as a QuantizedLayer with random codes into a 16-entry codebook, and its input vector."""
    weights, acts = random_layer(layer.spec(seed))
    cols = np.repeat(np.arange(layer.inputs), np.diff(weights.indptr))
    positions = weights.indices.astype(np.int64) * layer.inputs + cols
    rng = np.random.default_rng(seed + 1)
    codebook = np.sort(rng.uniform(-1.0, 1.0, CODEBOOK_SIZE)).astype(np.float32)
    codes = rng.integers(0, CODEBOOK_SIZE, positions.size)
    return from_positions((layer.outputs, layer.inputs), positions, codes, codebook), acts


def batch_inputs(layer, act_density: float, n: int, seed: int = 0) -> np.ndarray:
    """n input vectors, each with exactly round(act_density x inputs) positive entries, like random_layer."""
    rng = np.random.default_rng(seed + 2)
    k = int(round(act_density * layer.inputs))
    x = np.zeros((n, layer.inputs), np.float32)
    idx = np.argsort(rng.random((n, layer.inputs)), axis=1)[:, :k]
    np.put_along_axis(x, idx, rng.uniform(0.05, 1.0, (n, k)).astype(np.float32), axis=1)
    return x


def contenders(nz: QuantizedLayer, dense: np.ndarray, x: np.ndarray, threads: int):
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
    ort = rm.onnxruntime_dense(dense, x, threads)
    if ort is not None:
        methods["onnxruntime-dense-fp32"] = ort
    return methods, built


def check_outputs(methods: dict, reference) -> None:
    """Stop if any of our layouts disagrees with torch dense fp32 beyond float32 summation noise."""
    ref = np.asarray(reference)
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
        methods, built = contenders(nz, dense, x, threads)
        check_outputs(methods, methods["torch-dense-fp32"]())
        medians = rm.interleaved_medians(timer, methods, rounds)
        auto = choose_fc_layout(nz, layer.act_density, batch)
        common = {"layer": layer.name, "batch": batch, "in": layer.inputs, "out": layer.outputs,
                  "weight_density": layer.weight_density, "act_density": layer.act_density,
                  "threads": threads, "rounds": rounds}
        for (method, cache), us in medians.items():
            rec = dict(common, cache=cache, method=method, median_us=us)
            layout = next((k for k, v in LAYOUT_METHODS.items() if v == method), None)
            if layout is not None:
                rec.update(layout=layout, bytes_per_nonzero=built[layout].nbytes().per_nonzero())
            records.append(rec)
            if layout == auto:
                records.append(dict(rec, method="deepcompress", ours_threads=built[layout].threads))
        del methods, built
    return records


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
    w = out["batch1_warm"]
    out["targets"] = {
        "batch1_warm_geomean_vs_torch_dense>=10": w["geomean_speedup_vs_torch_dense"] >= 10,
        "batch1_warm_geomean_vs_torch_csr>=1.5": w["geomean_speedup_vs_torch_csr_int32"] >= 1.5,
        "batch1_warm_no_layer_below_0.8x_torch_csr": w["worst_ratio_vs_torch_csr_int32"] >= 0.8,
        f"batch{BATCH}_warm_>=2x_torch_dense_on_4_11pct": out[f"batch{BATCH}_warm"]["min"] >= 2,
    }
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
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rounds = 3 if args.quick else 9
    timer = rm.Timer()
    RESULTS.mkdir(parents=True, exist_ok=True)
    start = time.time()
    if args.sweep:
        (RESULTS / "runtime_sweep.json").write_text(json.dumps(sweep(timer, rounds), indent=1) + "\n")
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
