"""End to end: LeNet-300-100 and LeNet-5 from their compressed .dcz files with deepcompress.runtime,
against the dense PyTorch models holding the same decoded weights.

    python benchmarks/runtime_models.py            # both files, batch 1 and 64, 25 interleaved rounds
    python benchmarks/runtime_models.py --quick    # 5 rounds
    python benchmarks/runtime_models.py --lenet-5 other.dcz
    python benchmarks/runtime_models.py --cpu-time # this thread's CPU time, not wall time (a loaded machine)

Inputs are MNIST test images (batch 1 cycles through 256 of them, batch 64 through 8 batches), so the
input sparsity the column layout skips is the real one. torch runs with 1 thread and autograd off;
ours is single-threaded. Outputs are checked against torch before timing. Records
{layer: model name, batch, cache: 'warm', method, median_us, ...} replace this script's earlier ones in
benchmarks/results/runtime.json (the nine EIE layers' records there are kept).
"""

from __future__ import annotations

import os

# thread counts must be fixed before numpy / torch load their thread pools
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import runtime_methods as rm  # noqa: E402
from deepcompress import format as dcz  # noqa: E402
from deepcompress.compress.export import load_into  # noqa: E402
from deepcompress.data import load_arrays  # noqa: E402
from deepcompress.models import build_model  # noqa: E402
from deepcompress.runtime import load  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "runtime.json"
MODELS = {"LeNet-300-100": ROOT / "runs/compress-lenet-300-100-mnist/model.dcz",
          "LeNet-5": ROOT / "runs/compress-lenet-5-mnist/model.dcz"}
BATCHES = (1, 64)
CYCLE_IMAGES = 256
CYCLE_BATCHES = 8


def cycling(fn, inputs: list):
    """A zero-argument callable applying fn to the next of `inputs` on every call."""
    state = {"i": 0}

    def call():
        state["i"] = (state["i"] + 1) % len(inputs)
        return fn(inputs[state["i"]])
    return call


# relative error of the integer modes' logits against torch that stops the run (quantization, not bugs)
INT_TOLERANCE = {"int16": 1e-3, "int8": 5e-2}


def contenders(path: Path, images: np.ndarray, batch: int) -> tuple[dict, object]:
    """{method: callable} for one file at one batch size (fp32 as 'deepcompress', and one method per
    integer mode, 'deepcompress-int8'...), and our loaded fp32 model."""
    ours = load(path, batch=batch)
    dense = build_model(ours.meta["model"])
    load_into(dense, path)
    dense.eval()
    count = CYCLE_IMAGES if batch == 1 else CYCLE_BATCHES * batch
    xs = [images[i:i + batch] for i in range(0, count, batch)]
    ts = [torch.from_numpy(x) for x in xs]
    ref = dense(ts[0]).numpy()
    err = np.linalg.norm(ours(xs[0]) - ref) / np.linalg.norm(ref)
    if err > 1e-5:
        raise SystemExit(f"{path}: relative error {err:.2e} against the torch model")
    methods = {"deepcompress": cycling(ours, xs), "torch-dense-fp32": cycling(dense, ts)}
    for precision, tol in INT_TOLERANCE.items():
        model = load(path, batch=batch, precision=precision)
        err = np.linalg.norm(model(xs[0]) - ref) / np.linalg.norm(ref)
        if err > tol:
            raise SystemExit(f"{path}: {precision} relative error {err:.2e} against the torch model")
        methods[f"deepcompress-{precision}"] = cycling(model, xs)
    return methods, ours


def run_model(name: str, path: Path, images: np.ndarray, timer: rm.Timer, rounds: int, clock: str) -> list[dict]:
    """Records for one compressed file at every batch size."""
    records = []
    for batch in BATCHES:
        methods, ours = contenders(path, images, batch)
        medians = rm.interleaved_medians(timer, methods, rounds, ("warm",))
        layouts = {r["name"]: r["layout"] for r in ours.summary()}
        bpn = {r["name"]: round(r["bytes_per_nonzero"]["total"], 3) for r in ours.summary() if r["kind"] == "fc"}
        for (method, cache), us in medians.items():
            rec = {"layer": name, "batch": batch, "cache": cache, "method": method, "median_us": us,
                   "file": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
                   "file_bytes": path.stat().st_size, "inputs": "mnist test images", "threads": 1,
                   "rounds": rounds, "clock": clock, "load_average_end": os.getloadavg()}
            if method == "deepcompress":
                rec.update(layouts=layouts, fc_bytes_per_nonzero=bpn)
            records.append(rec)
        t = medians[("torch-dense-fp32", "warm")]
        for method in ("deepcompress", "deepcompress-int16", "deepcompress-int8"):
            d = medians[(method, "warm")]
            print(f"{name:<14} batch {batch:<3} {method:<19} {d:9.1f} us  torch dense {t:9.1f} us  "
                  f"speed-up {t / d:5.2f}x", flush=True)
        print(f"  fp32 layouts {layouts}")
    return records


def merge(records: list[dict], names) -> list[dict]:
    """runtime.json's records with those of `names` replaced by `records`."""
    old = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    return [r for r in old if r.get("layer") not in set(names)] + records


def main(argv=None) -> None:
    """Time both models and update benchmarks/results/runtime.json."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="5 rounds instead of 25")
    ap.add_argument("--lenet-300-100", dest="l300", type=Path, default=MODELS["LeNet-300-100"])
    ap.add_argument("--lenet-5", dest="l5", type=Path, default=MODELS["LeNet-5"])
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 25, 5 with --quick)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time with this thread's CPU time (time slices given to other jobs do not count)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    rounds = args.rounds or (5 if args.quick else 25)
    images = load_arrays("mnist").test_x
    timer = rm.Timer(time.thread_time if args.cpu_time else time.perf_counter)
    clock = "thread CPU time" if args.cpu_time else "wall"
    records, done, start = [], [], time.time()
    for name, path in (("LeNet-300-100", args.l300), ("LeNet-5", args.l5)):
        if not path.is_file():
            print(f"{name}: {path} not found, skipped (make it with `deepcompress compress`)")
            continue
        dcz.read(path)  # a clear error for a bad file before any timing
        records += run_model(name, path.resolve(), images, timer, rounds, clock)
        done.append(name)
    print(f"{time.time() - start:.0f} s")
    if done and not args.no_write:
        RESULTS.write_text(json.dumps(merge(records, done), indent=1) + "\n")
        print(f"updated {RESULTS.relative_to(ROOT)} ({', '.join(done)})")


if __name__ == "__main__":
    main()
