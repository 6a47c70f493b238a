"""Data-parallel steps/s on this machine for 1, 2 and 4 processes beside the scaling model, and the model's
curve to 256 workers for LeNet-300-100 and an AlexNet-sized network.

    python benchmarks/parallel_scaling.py            # 40 timed steps per run
    python benchmarks/parallel_scaling.py --steps 20 # quicker

Measured: LeNet-300-100 on MNIST, DistributedDataParallel over gloo on 127.0.0.1, 1 thread per process,
batch 64 per process (weak scaling), after warm-up steps. Each run also times the same steps without
gradient exchange (DDP no_sync: compute only, with all processes competing for the cores) and gloo
all-reduces of several sizes. Predicted: StepModel with the 1-process step time as compute, this host's
core count (4 processes share 2 cores: compute and loopback transport both slow), and a link fitted to
the 2-process all-reduce times; so the 2- and 4-process step times are predictions, not fits. The host
is shared with other jobs, so the timings carry their noise (medians of 8 alternating windows); the
second prediction (pred.2) adds the modelled exchange to each run's own measured compute time, which
separates the communication model from the outside load, and the 1-minute load average is recorded.

Curves to 256 workers use assumed clusters (Titan X compute from deepcompress.hardware's roofline,
10 Gb Ethernet or 56 Gb/s InfiniBand links); the assumptions are written into the JSON.
Writes benchmarks/results/parallel_scaling.json and parallel_scaling.png; prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from deepcompress.data_torch import load_dataset
from deepcompress.hardware.netspecs import ALEXNET, fc
from deepcompress.hardware.training import training_cost
from deepcompress.models import build_model, count_parameters
from deepcompress.parallel.launch import spawn
from deepcompress.parallel.scaling import Link, StepModel, fit_ring_link, parameter_server_time
from deepcompress.parallel.spatial import plan_tiles

RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 64
WARMUP = 5
ALLREDUCE_BYTES = (4, 65_536, 1_066_440, 4_194_304)  # 1,066,440 = LeNet-300-100's fp32 gradients
LENET = (fc("ip1", 784, 300), fc("ip2", 300, 100), fc("ip3", 100, 10))
CLUSTER_BATCH = {"LeNet-300-100": 64, "AlexNet": 128}
LINKS = (Link(1.25e9, 50e-6, "10 Gb Ethernet"), Link(7e9, 2e-6, "InfiniBand FDR 56 Gb/s"))
CURVE_WORKERS = [2**i for i in range(9)]


def _timed(fns, steps: int, windows: int = 8) -> list[float]:
    """Per function, the median over `windows` windows of the mean time per call. The functions' windows
    alternate, so each sees the same outside load (the host is shared)."""
    per_window = max(1, steps // windows)
    times = [[] for _ in fns]
    for _ in range(windows):
        for fn, ts in zip(fns, times):
            dist.barrier()
            start = time.perf_counter()
            for _ in range(per_window):
                fn()
            dist.barrier()
            ts.append((time.perf_counter() - start) / per_window)
    return [sorted(ts)[len(ts) // 2] for ts in times]


def _bench_worker(rank, world, x, y, steps, out_path):
    torch.manual_seed(0)
    model = DistributedDataParallel(build_model("lenet-300-100"))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    counter = iter(range(10**9))

    def step():
        i = next(counter) % (len(y) // (BATCH * world))
        idx = slice((i * world + rank) * BATCH, (i * world + rank + 1) * BATCH)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()

    def local_step():
        with model.no_sync():
            step()

    for _ in range(WARMUP):
        step()
    step_s, compute_s = _timed([step, local_step], steps)
    record = {"workers": world, "step_s": step_s, "compute_s": compute_s, "loadavg_1min": os.getloadavg()[0]}
    if world > 1:
        record["allreduce_s"] = {}
        for n in ALLREDUCE_BYTES:
            buf = torch.zeros(n // 4)
            record["allreduce_s"][n] = _timed([lambda: dist.all_reduce(buf)], max(steps, 24))[0]
    if rank == 0:
        Path(out_path).write_text(json.dumps(record))


def measure(steps: int, workers_list=(1, 2, 4)) -> list[dict]:
    """Per process count: step time with DDP, compute-only time, all-reduce times."""
    data = load_dataset("mnist")
    n = BATCH * max(workers_list) * 16
    x, y = data.train_x[:n].clone(), data.train_y[:n].clone()
    records = []
    for workers in workers_list:
        out = RESULTS / f".parallel_scaling_{workers}.json"
        spawn(_bench_worker, (x, y, steps, str(out)), workers, timeout_s=300, threads=1)
        records.append(json.loads(out.read_text()))
        out.unlink()
    return records


def predict_local(records: list[dict], model_bytes: int) -> tuple[StepModel, dict]:
    """The scaling model calibrated on the 1-process step time and the 2-process all-reduce times."""
    one = next(r for r in records if r["workers"] == 1)
    two = next(r for r in records if r["workers"] == 2)
    sizes = [int(k) for k in two["allreduce_s"]]
    link = fit_ring_link(sizes, [two["allreduce_s"][k] for k in two["allreduce_s"]], 2, "loopback gloo (fitted)")
    model = StepModel(one["step_s"], model_bytes, link, cores_per_host=os.cpu_count() or 1)
    return model, {"bandwidth_B_per_s": link.bandwidth, "latency_s": link.latency}


def cluster_compute_s(layers, batch: int) -> float:
    """One worker's step time on a Titan X (sustained roofline of deepcompress.hardware)."""
    return sum(training_cost(layer, batch)["sustained_total_us"] for layer in layers) * 1e-6


def curves() -> dict:
    """Predicted weak-scaling speedup to 256 workers per network, link and scheme."""
    nets = {"LeNet-300-100": (LENET, sum(layer.weights + layer.out_channels for layer in LENET)),
            "AlexNet": (ALEXNET, sum(layer.weights + layer.out_channels for layer in ALEXNET))}
    out = {}
    for name, (layers, params) in nets.items():
        compute = cluster_compute_s(layers, CLUSTER_BATCH[name])
        out[name] = {"params": params, "compute_s": compute, "batch_per_worker": CLUSTER_BATCH[name], "series": {}}
        for link in LINKS:
            m = StepModel(compute, 4 * params, link)
            out[name]["series"][f"ring, {link.name}"] = [m.speedup(p) for p in CURVE_WORKERS]
            out[name]["series"][f"ring 50% overlap, {link.name}"] = [
                StepModel(compute, 4 * params, link, overlap=0.5).speedup(p) for p in CURVE_WORKERS]
            out[name]["series"][f"param. server 1 shard, {link.name}"] = [
                m.speedup(p, "ps", 1) for p in CURVE_WORKERS]
        out[name]["ps_8_workers_8_shards_s"] = parameter_server_time(4 * params, 8, LINKS[0], 8)
    return out


def halo_table() -> list[dict]:
    """Halo bytes per tile of AlexNet's conv layers cut into output regions (batch 128, fp32)."""
    rows = []
    for layer in ALEXNET:
        if layer.kind != "conv":
            continue
        for grid in ((2, 2), (4, 4)):
            plan = plan_tiles(layer.in_hw, layer.kernel, layer.stride, layer.padding, 1, grid)
            halos = [plan.halo_bytes(r, layer.in_channels, 128) for r in range(len(plan.tiles))]
            tile_input = 4 * 128 * layer.input_values / len(plan.tiles)
            rows.append({"layer": layer.name, "grid": list(grid), "max_halo_bytes": max(halos),
                         "mean_halo_bytes": sum(halos) / len(halos), "input_bytes": 4 * 128 * layer.input_values,
                         "mean_halo_over_tile_input": sum(halos) / len(halos) / tile_input})
    return rows


def plot(curve_data: dict, path: Path) -> None:
    """Speedup vs workers per network, with the ideal line and Deep Speech 2's reported range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    for ax, (name, d) in zip(axes, curve_data.items()):
        ax.plot(CURVE_WORKERS, CURVE_WORKERS, "k:", label="linear")
        for label, ys in d["series"].items():
            ax.plot(CURVE_WORKERS, ys, marker=".", label=label)
        ax.axvspan(8, 16, color="tab:green", alpha=0.12,
                   label="Deep Speech 2: near-linear to 8-16 GPUs\n(REFERENCE.md s.7; reported, not modelled)")
        ax.set(xscale="log", yscale="log", xlabel="workers (weak scaling)", title=(
            f"{name}: {d['params'] / 1e6:.2f}M params, {1e3 * d['compute_s']:.2f} ms/step "
            f"(Titan X, batch {d['batch_per_worker']})"))
        ax.set_xticks(CURVE_WORKERS, [str(p) for p in CURVE_WORKERS])
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("speedup over 1 worker (model)")
    axes[1].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="timed steps per run (default 40)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    model_bytes = 4 * count_parameters(build_model("lenet-300-100"))
    records = measure(args.steps)
    model, link = predict_local(records, model_bytes)
    rows = []
    print(f"LeNet-300-100, MNIST, batch {BATCH}/process, gloo on 127.0.0.1, {os.cpu_count()} cores")
    print(f"{'procs':>5} {'steps/s':>8} {'pred.':>8} {'pred.2':>8} {'samples/s':>10} {'step ms':>8} "
          f"{'compute ms':>10} {'allreduce 1MB ms':>16} {'load':>5}")
    for r in records:
        p = r["workers"]
        pred = model.step_time(p)
        # pred.2: this run's measured compute (the outside load included) plus the modelled exchange.
        pred2 = r["compute_s"] + model.communication_time(p)
        ar = r.get("allreduce_s", {}).get(str(ALLREDUCE_BYTES[2]))
        rows.append({**r, "steps_per_s": 1 / r["step_s"], "predicted_step_s": pred,
                     "predicted_steps_per_s": 1 / pred, "predicted_from_measured_compute_step_s": pred2,
                     "samples_per_s": p * BATCH / r["step_s"]})
        print(f"{p:>5} {1 / r['step_s']:>8.1f} {1 / pred:>8.1f} {1 / pred2:>8.1f} {p * BATCH / r['step_s']:>10.0f} "
              f"{1e3 * r['step_s']:>8.2f} {1e3 * r['compute_s']:>10.2f} "
              f"{'-' if ar is None else f'{1e3 * ar:.2f}':>16} {r['loadavg_1min']:>5.1f}")
    print(f"fitted loopback link: {link['bandwidth_B_per_s'] / 1e9:.2f} GB/s, {1e6 * link['latency_s']:.1f} us")
    curve_data = curves()
    halos = halo_table()
    plot(curve_data, RESULTS / "parallel_scaling.png")
    for name, d in curve_data.items():
        best = d["series"][f"ring, {LINKS[1].name}"]
        print(f"{name}: model speedup at 16 / 256 workers (ring, {LINKS[1].name}): "
              f"{best[4]:.1f} / {best[8]:.1f}")
    result = {
        "measured": rows, "batch_per_process": BATCH, "threads_per_process": 1, "cores": os.cpu_count(),
        "model_bytes": model_bytes, "fitted_link": link,
        "prediction": "StepModel(compute = 1-process step_s, cores_per_host = cores, link fitted to the "
                      "2-process all-reduce times, no overlap)",
        "cluster_curves": {"workers": CURVE_WORKERS, "networks": curve_data,
                           "links": [vars(link) for link in LINKS],
                           "assumptions": "compute: Titan X sustained roofline (deepcompress.hardware.training); "
                                          "links: typical 10 GbE and InfiniBand FDR figures, not measured"},
        "alexnet_halo_bytes": halos,
        "deep_speech_2": "near-linear weak scaling to 8-16 GPUs with synchronous SGD and its own all-reduce "
                         "(REFERENCE.md s.7)",
    }
    (RESULTS / "parallel_scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'parallel_scaling.json'} and parallel_scaling.png")


if __name__ == "__main__":
    main()
