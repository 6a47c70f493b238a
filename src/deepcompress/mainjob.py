"""The main job (`./run.sh`, `deepcompress main`): the whole chain on one model.

baseline (trained, or reused when its train.json records the same settings) -> Deep Compression to a .dcz
file -> the file's test error with the CPU runtime -> batch-1 latency against the dense PyTorch model, in
the same run -> the file on the EIE, DianNao, CPU and GPU models -> RESULTS/main/study.json with figures ->
the report. Each step prints a line when it starts, and the long ones show their own progress.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from . import atomic
from .errors import UserError

STEPS = 6
ROUNDS = 5  # interleaved latency rounds: ours and dense PyTorch take turns, so load hits both alike


@dataclass
class MainJob:
    """What the main job runs on and where it writes (see deepcompress.cli_main for the defaults)."""

    model: str
    data: object  # a deepcompress.data.Dataset of torch tensors
    recipe: object  # a checked deepcompress.compress.recipe.Recipe with [train], [prune], [quantize]
    recipe_name: str
    baseline_dir: Path
    compress_dir: Path
    results: Path
    command: str
    checkpoint: Path | None = None
    latency_images: int = 1000
    progress: bool = True
    step_s: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def step(self, number: int, total: int, text: str) -> None:
        """Announce step `number` of `total` (stderr, with the time since the job started)."""
        print(f"[{number}/{total}] {text} ({time.perf_counter() - self.started:.0f} s so far)", file=sys.stderr,
              flush=True)


def _same_settings(record: dict, job: MainJob, cfg) -> bool:
    return (record.get("model"), record.get("dataset")) == (job.model, job.data.name) and \
        record.get("config") == json.loads(json.dumps(vars(cfg)))


def baseline(job: MainJob) -> tuple[torch.nn.Module, str]:
    """The trained dense model and how it was had: from --checkpoint, reused from BASELINE_DIR/model.pt
    when BASELINE_DIR/train.json records the recipe's [train] settings, else trained now and saved there."""
    from .cli_compress import baseline as from_checkpoint
    from .models import build_model
    from .train import train

    cfg = job.recipe.train
    if job.checkpoint is not None:
        args = SimpleNamespace(model=job.model, checkpoint=str(job.checkpoint))
        return from_checkpoint(args, None, job.data, job.compress_dir), f"loaded from {job.checkpoint}"
    weights, record_path = job.baseline_dir / "model.pt", job.baseline_dir / "train.json"
    torch.manual_seed(cfg.seed)  # as `deepcompress train` does: the same seed gives the same initial weights
    model = build_model(job.model)
    if weights.is_file() and record_path.is_file():
        try:
            record = json.loads(record_path.read_text())
        except ValueError:
            record = {}
        if isinstance(record, dict) and _same_settings(record, job, cfg):
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            return model, f"reused {weights} (same [train] settings)"
    result = train(model, job.data, cfg, checkpoint=job.baseline_dir / "checkpoint.pt", progress=job.progress,
                   verbose=job.progress)
    with atomic.atomic_path(weights) as tmp:
        torch.save(model.state_dict(), tmp)
    atomic.write_json(record_path, {"model": job.model, "dataset": job.data.name, "test_error": result.test_error,
                                    "epochs": cfg.epochs, "wall_s": round(result.wall_s, 1), "config": vars(cfg),
                                    "command": job.command, "history": result.history})
    return model, f"trained {cfg.epochs} epochs into {weights}"


def compress(job: MainJob, model: torch.nn.Module) -> tuple[dict, Path]:
    """Deep Compression of `model` into COMPRESS_DIR/model.dcz; the run's results.json record and the file."""
    from .compress import compress_model

    meta = {"model": job.model, "dataset": job.data.name, "input_shape": list(job.data.test_x.shape[1:])}
    outcome = compress_model(model, job.data, job.recipe, job.compress_dir, meta=meta, progress=job.progress,
                             command=job.command, overwrite=True)  # each main job compresses afresh
    return outcome["record"], Path(outcome["file"])


def run_from_file(path: Path, x: np.ndarray, y: np.ndarray, batch: int = 64) -> dict:
    """The file's test error and throughput with the CPU runtime (batch `batch`), and its layers' layouts."""
    from .runtime import load
    from .runtime.measure import evaluate

    model = load(path, batch=batch)
    ev = evaluate(model, x, y, batch)
    ev.pop("predictions")
    return {**ev, "batch": batch, "layers": load(path).summary()}


def _time_each(fn, images: np.ndarray) -> np.ndarray:
    times = np.empty(len(images))
    for i, image in enumerate(images):
        start = time.perf_counter()
        fn(image)
        times[i] = time.perf_counter() - start
    return times * 1e6


def dense_torch(job: MainJob, path: Path) -> torch.nn.Module:
    """The dense PyTorch model holding the file's decoded weights (what the sparse runtime is timed against)."""
    from .compress.export import load_into
    from .models import build_model

    dense = build_model(job.model)
    with torch.no_grad():
        load_into(dense, path)
    return dense.eval()


def latency(job: MainJob, path: Path, x: np.ndarray, rounds: int = ROUNDS) -> dict:
    """Batch-1 time per image of the file with the CPU runtime and of the dense PyTorch model, both on one
    thread, in interleaved rounds over the same test images; medians, p10/p90 and the speed-up."""
    from .runtime import load

    ours, dense = load(path, batch=1), dense_torch(job, path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the runtime runs one thread; PyTorch gets the same
    try:
        with torch.no_grad():
            def run_dense(image):
                return dense(torch.from_numpy(image[None]))

            got, want = ours(x[0]), run_dense(x[0]).numpy()[0]
            err = float(np.linalg.norm(got - want) / max(float(np.linalg.norm(want)), 1e-30))
            if not err <= 1e-4:
                raise UserError(f"{path}: the CPU runtime and the dense PyTorch model disagree (relative error "
                                f"{err:.1e}); this is a deepcompress bug")
            per_round = max(1, job.latency_images // rounds)
            times = {"runtime": [], "torch": []}
            for r in range(rounds):
                images = x[(r * per_round) % len(x):][:per_round]
                for fn in (ours, run_dense):  # warm caches and kernels
                    _time_each(fn, images[:3])
                times["runtime"].append(_time_each(ours, images))
                times["torch"].append(_time_each(run_dense, images))
                print(f"  latency round {r + 1}/{rounds}: runtime {np.median(times['runtime'][-1]):.1f} us, "
                      f"dense PyTorch {np.median(times['torch'][-1]):.1f} us per image", file=sys.stderr, flush=True)
    finally:
        torch.set_num_threads(threads)
    stats = {k: _stats(np.concatenate(v)) for k, v in times.items()}
    return {**stats, "speedup": stats["torch"]["median_us"] / stats["runtime"]["median_us"], "rounds": rounds,
            "threads": 1, "load_average": os.getloadavg()[0],
            "samples_us": {k: np.concatenate(v).tolist() for k, v in times.items()}}


def _stats(us: np.ndarray) -> dict:
    return {"median_us": float(np.median(us)), "p10_us": float(np.percentile(us, 10)),
            "p90_us": float(np.percentile(us, 90)), "images": int(len(us))}


def hardware(path: Path) -> dict:
    """The file on every hardware model (EIE with input activations 50% nonzero): per-layer records and
    totals per architecture, plus the dense (uncompressed) model's time and energy on the CPU and GPU
    models, which is what the EIE paper compares against."""
    from .hardware.model_file import load_model
    from .hardware.model_sim import ARCHES, DEFAULT_ACT_DENSITY, simulate_model
    from .hardware.roofline import platform

    out = {"act_density": DEFAULT_ACT_DENSITY, "arches": {}}
    model = load_model(path)  # read and parsed once for every architecture
    for arch in ARCHES:
        start = time.perf_counter()
        out["arches"][arch] = simulate_model(model, arch)
        print(f"  {arch}: {out['arches'][arch][-1]['time_us']:.2f} us per frame "
              f"({time.perf_counter() - start:.1f} s to simulate)", file=sys.stderr, flush=True)
    for arch in ("cpu", "gpu"):
        layers = out["arches"][arch][:-1]
        plat = platform(arch)
        time_us = sum(r["dense_sustained_us"] for r in layers)
        out[f"{arch}_dense"] = {"platform": plat.name, "time_us": time_us, "power_w": plat.power_w,
                                "energy_j": plat.power_w * time_us * 1e-6, "layers": len(layers),
                                "per_call_overhead_us": plat.dense.overhead_s * 1e6, "llc_bytes": plat.llc_bytes}
        out[f"{arch}_dense"]["frames_per_j"] = 1.0 / out[f"{arch}_dense"]["energy_j"]
    return out


def run(job: MainJob) -> dict:
    """Run the chain; returns every measurement (also in RESULTS/main/study.json) and the report's path."""
    timer = time.perf_counter()
    job.step(1, STEPS, f"baseline: {job.model} on {job.data.name}")
    model, how = baseline(job)
    print(f"  baseline {how}", file=sys.stderr)
    job.step_s["baseline"] = time.perf_counter() - timer
    job.step(2, STEPS, f"Deep Compression with the {job.recipe_name} recipe into {job.compress_dir}")
    timer = time.perf_counter()
    record, path = compress(job, model)
    job.step_s["compress"] = time.perf_counter() - timer
    return measure_and_report(job, how, record, path)


def measure_and_report(job: MainJob, how: str, record: dict, path: Path) -> dict:
    """Steps 3-6 on the compressed file at `path` (`record`: its results.json): error and latency with the CPU
    runtime, the hardware models, the study and the report."""
    from .main_study import write_study
    from .report import build_report

    x, y = job.data.test_x.numpy(), job.data.test_y.numpy()
    job.step(3, STEPS, f"test error of {path} with the CPU runtime ({len(y):,} images)")
    timer = time.perf_counter()
    from_file = run_from_file(path, x, y)
    job.step_s["evaluate"] = time.perf_counter() - timer
    job.step(4, STEPS, f"batch-1 latency, CPU runtime vs dense PyTorch ({job.latency_images} images each)")
    timer = time.perf_counter()
    lat = latency(job, path, x)
    job.step_s["latency"] = time.perf_counter() - timer
    job.step(5, STEPS, "the file on the EIE, DianNao, CPU and GPU models")
    timer = time.perf_counter()
    hw = hardware(path)
    job.step_s["hardware"] = time.perf_counter() - timer
    job.step(6, STEPS, f"figures, {job.results / 'main' / 'study.json'} and the report")
    found = {"model": job.model, "dataset": job.data.name, "recipe": job.recipe_name, "baseline": how,
             "compression": record, "file": str(path), "runtime": from_file, "latency": lat, "hardware": hw,
             "step_s": job.step_s, "command": job.command, "wall_s": time.perf_counter() - job.started}
    write_study(job.results / "main", found)
    found["report"] = build_report(job.results)[0]
    return found
