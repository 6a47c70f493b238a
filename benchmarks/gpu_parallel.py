"""Mixed-precision and data-parallel (NCCL) training step times on a GPU: the prepared device check of
the parallel-training issue. One short script, meant to run once on a lent GPU machine.

    python benchmarks/gpu_parallel.py                 # on a CUDA machine: writes results/gpu_parallel.json
    python benchmarks/gpu_parallel.py --dry-run-cpu   # same code paths on the CPU (gloo), few steps, no JSON

What it measures, with the card's name recorded:
- precision: one training step (forward, backward, SGD update) of LeNet-5 (batch 256) and an
  AlexNet-sized network (5 conv + 3 FC, 227x227 inputs, batch 128) in fp32, fp32 with TF32 matmuls,
  bf16 mixed precision and fp16 mixed precision with dynamic loss scaling (deepcompress.parallel.precision,
  the same hook the CPU training uses); medians of timed steps after warm-up, synchronised with the device.
- data parallel: DistributedDataParallel over NCCL for 1..G processes (G = GPUs visible, one per
  process), weak scaling at the same per-GPU batch, step time and images/s; with G >= 2 also NCCL
  all-reduce times for 4 MB to 256 MB, beside the ring all-reduce term of deepcompress.parallel.scaling.
Inputs are synthetic (random images, random labels): this times the machine, not learning.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from deepcompress.atomic import write_json
from deepcompress.models import build_model
from deepcompress.parallel.launch import free_port
from deepcompress.parallel.precision import mixed_precision
from deepcompress.parallel.scaling import ring_bytes_per_worker

RESULTS = Path(__file__).resolve().parent / "results"
ALLREDUCE_MB = (4, 16, 64, 256)
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")


def alexnet() -> nn.Module:
    """AlexNet (single tower, 61M parameters) for 3x227x227 inputs and 1000 classes."""
    return nn.Sequential(
        nn.Conv2d(3, 96, 11, 4), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Flatten(), nn.Linear(9216, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(),
        nn.Linear(4096, 1000))


# name -> (builder, input shape without batch, classes, batch on a GPU, batch on the CPU dry run)
NETWORKS = {
    "LeNet-5": (lambda: build_model("lenet-5"), (1, 28, 28), 10, 256, 32),
    "AlexNet": (alexnet, (3, 227, 227), 1000, 128, 2),
}


class Stepper:
    """One SGD training step of a network at a given precision, on synthetic data."""

    def __init__(self, net: str, precision: str, device: torch.device, batch: int, ddp_rank: int | None = None):
        build, shape, classes, _, _ = NETWORKS[net]
        torch.manual_seed(0)
        self.model = build().to(device)
        self.hook = None
        if precision in ("bf16", "fp16"):
            self.hook = mixed_precision(self.model, precision)
        if ddp_rank is not None:
            ids = [ddp_rank] if device.type == "cuda" else None
            self.model = DistributedDataParallel(self.model, device_ids=ids)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.x = torch.randn(batch, *shape, device=device)
        self.y = torch.randint(0, classes, (batch,), device=device)
        self.device = device

    def __call__(self) -> None:
        """Forward, backward (with the mixed-precision hook's unscaling) and update."""
        self.opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(self.x), self.y)
        loss.backward()
        if self.hook is not None:
            self.hook.after_backward(self.model)
        self.opt.step()


def sync(device: torch.device) -> None:
    """Wait for the device's queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn, device: torch.device, warmup: int, steps: int) -> float:
    """Median wall time of fn() in ms over `steps` calls after `warmup` calls, each synchronised."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def set_tf32(enabled: bool) -> None:
    """Allow (or forbid) TF32 tensor-core arithmetic for fp32 matmuls and convolutions."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def precision_records(device: torch.device, gpu: bool, warmup: int, steps: int) -> list[dict]:
    """Step time per network and precision on one device."""
    records = []
    for net, (_, _, _, gpu_batch, cpu_batch) in NETWORKS.items():
        batch = gpu_batch if gpu else cpu_batch
        for precision in PRECISIONS:
            if precision == "tf32" and not gpu:
                continue
            set_tf32(precision == "tf32")
            step = Stepper(net, precision, device, batch)
            ms = median_ms(step, device, warmup, steps)
            records.append({"part": "precision", "network": net, "precision": precision, "batch": batch,
                            "step_ms": ms, "images_per_s": batch / ms * 1e3,
                            "skipped_steps": getattr(step.hook, "skipped", 0)})
            print(f"{net:8s} {precision:5s} batch {batch:4d}: {ms:8.2f} ms/step  "
                  f"{batch / ms * 1e3:10.0f} images/s", flush=True)
        set_tf32(False)
    return records


def _ddp_worker(rank: int, world: int, port: int, gpu: bool, warmup: int, steps: int, out: str) -> None:
    """One data-parallel process: time DDP steps and (rank 0) write its records to `out`."""
    backend = "nccl" if gpu else "gloo"
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    device = torch.device("cuda", rank) if gpu else torch.device("cpu")
    if gpu:
        torch.cuda.set_device(device)
    records = []
    try:
        for net, (_, _, _, gpu_batch, cpu_batch) in NETWORKS.items():
            batch = gpu_batch if gpu else cpu_batch
            for precision in ("fp32", "bf16"):
                step = Stepper(net, precision, device, batch, ddp_rank=rank)
                ms = median_ms(step, device, warmup, steps)
                records.append({"part": "data_parallel", "backend": backend, "workers": world,
                                "network": net, "precision": precision, "batch_per_worker": batch,
                                "step_ms": ms, "images_per_s": world * batch / ms * 1e3})
        if world >= 2:
            records += _allreduce_records(device, backend, world, warmup, steps)
    finally:
        dist.destroy_process_group()
    if rank == 0:
        Path(out).write_text(json.dumps(records))


def _allreduce_records(device: torch.device, backend: str, world: int, warmup: int, steps: int) -> list[dict]:
    """Median all-reduce time of float32 buffers of ALLREDUCE_MB megabytes."""
    records = []
    for mb in ALLREDUCE_MB:
        buf = torch.ones(mb * (1 << 20) // 4, device=device)
        ms = median_ms(lambda: dist.all_reduce(buf), device, warmup, steps)
        moved = ring_bytes_per_worker(buf.numel() * 4, world)
        records.append({"part": "allreduce", "backend": backend, "workers": world, "megabytes": mb,
                        "ms": ms, "ring_bytes_per_worker": moved, "bus_gb_per_s": moved / ms / 1e6})
    return records


def data_parallel_records(gpu: bool, max_workers: int, warmup: int, steps: int) -> list[dict]:
    """DDP step times for 1..max_workers processes (one GPU each)."""
    records = []
    for world in range(1, max_workers + 1):
        port = free_port()
        out = Path(os.environ.get("TMPDIR", "/tmp")) / f"gpu_parallel_{os.getpid()}_{world}.json"
        mp.spawn(_ddp_worker, args=(world, port, gpu, warmup, steps, str(out)), nprocs=world, join=True)
        part = json.loads(out.read_text())
        out.unlink()
        for r in part:
            print(f"DDP {r.get('network', 'all-reduce'):8s} {r.get('precision', ''):5s} workers {world}: "
                  f"{r.get('step_ms', r.get('ms')):8.2f} ms", flush=True)
        records += part
    return records


def machine() -> dict:
    """What ran the measurements."""
    info = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info.update(device=torch.cuda.get_device_name(0), gpus=torch.cuda.device_count(),
                    cuda=torch.version.cuda, nccl=".".join(map(str, torch.cuda.nccl.version())))
    return info


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run-cpu", action="store_true", help="run every code path on the CPU (gloo), tiny")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--max-workers", type=int, default=None, help="largest DDP world (default: GPUs visible)")
    args = p.parse_args()
    gpu = torch.cuda.is_available() and not args.dry_run_cpu
    if not gpu and not args.dry_run_cpu:
        print("no CUDA device visible: nothing measured (use --dry-run-cpu to exercise the code paths)")
        return 0
    steps, warmup = (args.steps, args.warmup) if gpu else (2, 1)
    device = torch.device("cuda", 0) if gpu else torch.device("cpu")
    info = machine()
    print(f"device: {info.get('device', 'cpu (dry run)')}", flush=True)
    records = precision_records(device, gpu, warmup, steps)
    workers = args.max_workers or (torch.cuda.device_count() if gpu else 2)
    records += data_parallel_records(gpu, workers, warmup, steps)
    if gpu:
        write_json(RESULTS / "gpu_parallel.json", {"machine": info, "records": records})
        print(f"wrote {RESULTS / 'gpu_parallel.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
