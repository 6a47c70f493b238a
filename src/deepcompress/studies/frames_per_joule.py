"""frames-per-joule: the talk's question "what is frames/J and frames/s/mm^2 for training & inference?"
answered for each compressed LeNet: inference measured on this CPU with the runtime, and modelled on EIE
(cycle-level simulator with real activation vectors; conv layers on the DianNao model), DianNao and the
paper's CPU and GPU (rooflines); training measured on this CPU and modelled on the GPU and CPU rooflines."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from ..hardware.model_file import load_model
from ..hardware.model_sim import simulate_model
from ..hardware.roofline import I7_5930K, TITAN_X
from ..hardware.training import training_cost
from .activation_density import eie_saving
from .common import pyplot

TITLE = "Frames/s, frames/J and frames/s/mm^2 for inference and training"
MODELS = ("lenet-300-100", "lenet-5")
LATENCY_IMAGES = {True: 50, False: 1000}
EIE_IMAGES = {True: 3, False: 20}
TRAIN_STEPS = {True: 5, False: 100}
TRAIN_BATCH = 128
# This machine's power and die area are not measured: its rows use the paper's CPU (Table V) for both.
ASSUMED = I7_5930K


def _row(platform: str, how: str, fps: float, fpj: float | None, area: float | None) -> dict:
    return {"platform": platform, "how": how, "frames_per_s": fps, "frames_per_j": fpj,
            "frames_per_s_mm2": fps / area if area else None}


def cpu_measured(bench, path) -> dict:
    """Batch-1 frames/s of the CPU runtime on this machine (median over test images)."""
    from ..runtime import load
    from ..runtime.measure import latency

    model = load(path, batch=1, threads=1)
    lat = latency(model, bench.data().test_x[:LATENCY_IMAGES[bench.quick]].numpy(), LATENCY_IMAGES[bench.quick])
    fps = 1e6 / lat["median_us"]
    return _row("CPU (this machine)", "measured, runtime batch 1; power and area assumed (i7-5930K, Table V)",
                fps, fps / ASSUMED.power_w, ASSUMED.area_mm2)


def eie(bench, name: str, path) -> dict:
    """EIE with the FC layers' real input vectors; conv layers (if any) on the DianNao model, as `simulate` does."""
    fc = eie_saving(path, bench.file_model(name), bench.data().test_x[:EIE_IMAGES[bench.quick]])
    time_s = sum(e["time_s"] for e in fc.values())
    energy = sum(e["energy_j"] for e in fc.values())
    records = simulate_model(path, "eie")
    conv = [r for r in records[:-1] if r.get("arch") == "diannao"]
    time_s += sum(r["time_us"] for r in conv) * 1e-6
    energy += sum(r["energy_j"] for r in conv)
    area = records[-1]["area_mm2"]
    how = "cycle-level simulator, 64 PEs, real activations" + ("; conv layers on the DianNao model" if conv else "")
    return _row("EIE" + (" + DianNao" if conv else ""), how, 1 / time_s, 1 / energy, area)


def modelled(path, arch: str, label: str, how: str) -> dict:
    """The hardware model's total for the whole file on `arch`."""
    total = simulate_model(path, arch)[-1]
    return _row(label, how, total["frames_per_s"], total["frames_per_j"], total.get("area_mm2"))


def inference(bench, name: str) -> list[dict]:
    """Every inference row for `name`'s compressed file."""
    path = bench.compressed(name)
    return [cpu_measured(bench, path), eie(bench, name, path),
            modelled(path, "diannao", "DianNao", "analytical model, dense weights, chip + DRAM energy"),
            modelled(path, "cpu", "CPU (i7-5930K)", "roofline model, batch 1"),
            modelled(path, "gpu", "GPU (Titan X)", "roofline model, batch 1")]


def training(bench, name: str) -> list[dict]:
    """Training images/s, /J and /s/mm^2: measured on this CPU, modelled on the GPU and CPU (dense fp32)."""
    shapes = [replace(fl.shape, weight_density=1.0) for fl in load_model(bench.compressed(name))[0]]
    rows = []
    for plat in (TITAN_X, I7_5930K):
        step_s = sum(training_cost(s, TRAIN_BATCH, plat)["sustained_total_us"] for s in shapes) * 1e-6
        rows.append(_row(f"{plat.kind.upper()} ({plat.name})", f"roofline model, batch {TRAIN_BATCH}, fp32",
                         TRAIN_BATCH / step_s, TRAIN_BATCH / step_s / plat.power_w, plat.area_mm2))
    fps = _train_throughput(bench, name)
    rows.append(_row("CPU (this machine)", f"measured, {TRAIN_STEPS[bench.quick]} SGD steps of batch {TRAIN_BATCH}; "
                     "power and area assumed (i7-5930K)", fps, fps / ASSUMED.power_w, ASSUMED.area_mm2))
    return rows


def _train_throughput(bench, name: str) -> float:
    """Images per second of plain SGD training steps of the dense model on this machine."""
    import torch
    import torch.nn.functional as F

    model = bench.dense(name) if not bench.quick else bench.baseline(name)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    ds = bench.data()
    model.train()
    start = time.perf_counter()
    for step in range(TRAIN_STEPS[bench.quick]):
        i = step * TRAIN_BATCH % max(len(ds.train_y) - TRAIN_BATCH, 1)
        opt.zero_grad()
        F.cross_entropy(model(ds.train_x[i:i + TRAIN_BATCH]), ds.train_y[i:i + TRAIN_BATCH]).backward()
        opt.step()
    return TRAIN_STEPS[bench.quick] * TRAIN_BATCH / (time.perf_counter() - start)


def run(bench, study) -> None:
    """Inference and training rows per model, a figure and the claims."""
    results = {m: {"inference": inference(bench, m), "training": training(bench, m)} for m in MODELS}
    study.data["results"] = results
    for phase in ("inference", "training"):
        study.table(f"{phase.capitalize()}: frames/s, frames/J, frames/s/mm^2 (compressed LeNets, MNIST)",
                    ["model", "platform", "how", "frames/s", "frames/J", "frames/s/mm^2"],
                    [[m, r["platform"], r["how"], _num(r["frames_per_s"]), _num(r["frames_per_j"]),
                      _num(r["frames_per_s_mm2"])] for m, res in results.items() for r in res[phase]])
    _plot(study, results)
    _claims(study, results)


def _num(v) -> str:
    return "-" if v is None else f"{v:,.0f}" if v >= 10 else f"{v:.3g}"


def _plot(study, results) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, phase in zip(axes, ("inference", "training")):
        labels = [r["platform"] for r in next(iter(results.values()))[phase]]
        width = 0.8 / len(results)
        for i, (m, res) in enumerate(results.items()):
            ax.bar(np.arange(len(labels)) + i * width, [r["frames_per_j"] or 0 for r in res[phase]], width, label=m)
        ax.set_xticks(np.arange(len(labels)) + width * (len(results) - 1) / 2, labels, rotation=20, fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("frames per joule")
        ax.set_title(phase)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    study.figure(fig, "frames_per_joule.png", "Frames per joule of each compressed LeNet: inference and training, "
                 "measured on this CPU (power assumed) or modelled (EIE, DianNao, i7-5930K, Titan X).")


def _claims(study, results) -> None:
    gains = {}
    for m, res in results.items():
        by = {r["platform"]: r for r in res["inference"]}
        eie_row = next(r for k, r in by.items() if k.startswith("EIE"))
        gains[m] = (eie_row["frames_per_j"] / by["GPU (Titan X)"]["frames_per_j"],
                    eie_row["frames_per_j"] / by["CPU (i7-5930K)"]["frames_per_j"])
    study.claim("fixed-function hardware will dominate inference (100-10,000x gain)",
                "100-10,000x (summary slide)",
                "; ".join(f"{m}: EIE {g:,.0f}x the GPU's frames/J, {c:,.0f}x the CPU's" for m, (g, c) in gains.items()),
                all(100 <= v <= 10_000 for pair in gains.values() for v in pair),
                "models on both sides (EIE simulator, Titan X / i7 rooflines at Table V power); agrees when every ratio "
                "is inside the talk's range")
    train = {m: {r["platform"]: r["frames_per_j"] for r in res["training"]} for m, res in results.items()}
    study.claim("GPUs will dominate training", "GPUs ideal for training (4 sub-problems slide)",
                "; ".join(f"{m}: GPU {t['GPU (Titan X)']:,.0f} images/J, CPU model {t['CPU (Core i7-5930K)']:,.0f}, "
                          f"this CPU {t['CPU (this machine)']:,.0f}" for m, t in train.items()),
                all(t["GPU (Titan X)"] > max(t["CPU (Core i7-5930K)"], t["CPU (this machine)"]) for t in train.values()),
                "roofline models at Table V power, and this machine's measured training speed at the i7's power; "
                "LeNet layers are tiny, so the GPU model's fixed cost per call (25.6 us) weighs more than on "
                "ImageNet-sized layers")
