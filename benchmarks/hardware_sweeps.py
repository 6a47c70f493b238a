"""Hardware sweeps and plots: EIE load balance vs FIFO depth, speedup vs PEs, energy breakdown; frames/J by
platform; DianNao vs DRAM bandwidth; this machine's roofline against measured GEMV times.

    python benchmarks/hardware_sweeps.py            # everything (about a minute on 2 cores)
    python benchmarks/hardware_sweeps.py --no-probe # skip measuring this machine (reuse hardware_machine.json)
    python benchmarks/hardware_sweeps.py --real-layer /tmp/runs/c300/model.dcz:ip1   # add a real pruned layer

Load-balance efficiency is the paper's: 1 - starvation bubbles / PE-cycles, i.e. the PE-cycles spent on a
column (its entries, padding zeros included, or the pointer read of an empty column) over cycles x PEs
(EIEResult.load_balance_efficiency). The sweep also records MAC utilisation (real multiplies over cycles x
PEs), which is what the authors' C++ simulator prints as "Efficiency". --real-layer runs the FIFO sweep on a
pruned FC layer of a .dcz file beside a uniform random layer of the same shape and density, both with the
same input vector (all inputs nonzero, and 35% nonzero), at 64 and 16 PEs.

Writes benchmarks/results/hardware_sweeps.json, hardware_machine.json and hardware_*.png.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: one BLAS thread, stable timings

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import matplotlib  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from deepcompress.hardware import probe  # noqa: E402
from deepcompress.hardware.diannao import DianNaoConfig, simulate_layer  # noqa: E402
from deepcompress.hardware.eie import EIEConfig, simulate  # noqa: E402
from deepcompress.hardware.eie_tables import BENCHMARKS  # noqa: E402
from deepcompress.hardware.layers import LayerSpec, random_layer  # noqa: E402
from deepcompress.hardware.netspecs import ALEXNET, VGG16  # noqa: E402
from deepcompress.hardware.platforms import table_v_comparison  # noqa: E402
from deepcompress.hardware.roofline import benchmark_shapes, from_probe, roofline_time, traffic  # noqa: E402
from deepcompress.hardware.training import network_table  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
FIFO_DEPTHS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
PE_COUNTS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def eie_sweeps(layers) -> dict:
    """Load-balance efficiency and MAC utilisation by FIFO depth (64 PEs) and speedup over 1 PE by PE count
    (FIFO 8)."""
    fifo, mac, pes, energy = {}, {}, {}, {}
    for name, (w, a) in layers.items():
        runs = {d: simulate(w, a, EIEConfig(fifo_depth=d), name) for d in FIFO_DEPTHS}
        fifo[name] = {d: r.load_balance_efficiency for d, r in runs.items()}
        mac[name] = {d: r.mac_utilization for d, r in runs.items()}
        cycles = {n: simulate(w, a, EIEConfig(num_pes=n), name).cycles for n in PE_COUNTS}
        pes[name] = {n: cycles[1] / cycles[n] for n in PE_COUNTS}
        energy[name] = simulate(w, a, EIEConfig(), name).energy_pj
    return {"fifo_load_balance": fifo, "fifo_mac_utilization": mac, "pe_speedup": pes, "energy_pj": energy}


def _spread(m) -> dict:
    """Coefficient of variation of nonzeros per row (output) and per column (input)."""
    m = sp.csc_matrix(m)
    rows, cols = np.diff(m.tocsr().indptr), np.diff(m.indptr)
    return {"row_nnz_cv": float(rows.std() / rows.mean()), "col_nnz_cv": float(cols.std() / cols.mean())}


def real_layer_sweep(specs: list[str]) -> dict:
    """FIFO sweep of real pruned layers ('file.dcz:layer') beside uniform random ones of the same shape and
    density, with the same input vectors."""
    from deepcompress.hardware.model_file import load_model

    out = {}
    for spec in specs:
        path, _, name = spec.rpartition(":")
        file_layers = load_model(path).layers
        found = [fl for fl in file_layers if fl.name == name and fl.kind == "fc"]
        if not found:
            print(f"--real-layer {spec}: no FC layer {name!r} in {path}; skipped")
            continue
        real = sp.csc_matrix((found[0].layer.values(), found[0].layer.rows_cols()),
                             shape=found[0].layer.matrix_shape)
        outputs, inputs = real.shape
        density = real.nnz / (outputs * inputs)
        uniform, _ = random_layer(LayerSpec(inputs, outputs, density, 1.0, 0))
        rec = {"file": path, "layer": name, "shape": [inputs, outputs], "weight_density": density,
               "real": _spread(real), "uniform": _spread(uniform), "runs": []}
        for act_density in (1.0, 0.35):
            acts = np.zeros(inputs, dtype=np.float32)
            chosen = np.random.default_rng(1).choice(inputs, int(round(act_density * inputs)), replace=False)
            acts[chosen] = 1.0
            for pes in (64, 16):
                for kind, m in (("real", real), ("uniform", uniform)):
                    res = {d: simulate(m, acts, EIEConfig(num_pes=pes, fifo_depth=d)) for d in FIFO_DEPTHS}
                    rec["runs"].append({"weights": kind, "act_density": act_density, "num_pes": pes,
                                        "load_balance": {d: r.load_balance_efficiency for d, r in res.items()},
                                        "mac_utilization": {d: r.mac_utilization for d, r in res.items()}})
        out[f"{Path(path).parent.name}/{name}"] = rec
    return out


def plot_sweeps(s: dict) -> None:
    real = s.get("fifo_real_vs_uniform") or {}
    fig, axes = plt.subplots(1, 2 if real else 1, figsize=(11 if real else 6, 4), squeeze=False)
    ax = axes[0][0]
    for name, by_depth in s["fifo_load_balance"].items():
        ax.plot(list(by_depth), list(by_depth.values()), marker="o", label=name)
    ax.set(xscale="log", xlabel="activation FIFO depth", ylabel="load-balance efficiency", ylim=(0, 1),
           title="EIE, 64 PEs: uniform random layers (Table III)")
    ax.set_xticks(FIFO_DEPTHS, [str(d) for d in FIFO_DEPTHS])
    ax.legend(fontsize=7, ncol=3)
    if real:
        ax = axes[0][1]
        for key, rec in real.items():
            for run in rec["runs"]:
                if run["act_density"] == 1.0 and run["num_pes"] == 64:
                    lb = run["load_balance"]
                    ax.plot(list(lb), list(lb.values()), marker="o", ls="-" if run["weights"] == "real" else "--",
                            label=f"{key} {run['weights']}")
        ax.set(xscale="log", xlabel="activation FIFO depth", ylabel="load-balance efficiency", ylim=(0, 1),
               title="64 PEs: real pruned vs uniform random, same shape")
        ax.set_xticks(FIFO_DEPTHS, [str(d) for d in FIFO_DEPTHS])
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "hardware_fifo.png", dpi=120)

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, by_n in s["pe_speedup"].items():
        ax.plot(list(by_n), list(by_n.values()), marker="o", label=name)
    ax.plot(PE_COUNTS, PE_COUNTS, "k--", lw=0.8, label="linear")
    ax.set(xscale="log", yscale="log", xlabel="PEs", ylabel="speedup over 1 PE", title="EIE, FIFO 8: scaling")
    ax.set_xticks(PE_COUNTS, [str(n) for n in PE_COUNTS])
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(RESULTS / "hardware_pes.png", dpi=120)

    fig, ax = plt.subplots(figsize=(7, 4))
    names = list(s["energy_pj"])
    parts = list(next(iter(s["energy_pj"].values())))
    bottom = [0.0] * len(names)
    for part in parts:
        share = [s["energy_pj"][n][part] / sum(s["energy_pj"][n].values()) for n in names]
        ax.bar(names, share, bottom=bottom, label=part)
        bottom = [b + v for b, v in zip(bottom, share)]
    ax.set(ylabel="share of layer energy", title="EIE, 64 PEs: energy by component")
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(RESULTS / "hardware_energy.png", dpi=120)


def plot_frames_per_j(rows: list[dict]) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    labels = [f"{r['platform']}\n{r['model'].split()[0].rstrip(',')}" for r in rows if r["frames_per_j"]]
    ours = [0 if r["model"].startswith("paper") else r["frames_per_j"] for r in rows if r["frames_per_j"]]
    paper = [(r.get("paper") or {}).get("frames_per_j") or 0 for r in rows if r["frames_per_j"]]
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], ours, 0.4, label="model")
    ax.bar([i + 0.2 for i in x], paper, 0.4, label="paper (Table V)")
    ax.set(yscale="log", ylabel="frames/J", title="AlexNet FC7, batch 1: frames/J by platform")
    ax.set_xticks(list(x), labels, fontsize=6, rotation=45, ha="right")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "hardware_frames_per_j.png", dpi=120)


def diannao_bandwidth_sweep() -> dict:
    """AlexNet FC7 and conv3 on DianNao against DRAM bandwidth: where FC stops being memory-bound."""
    fc7, conv3 = ALEXNET[6], ALEXNET[2]
    out = {}
    for layer in (fc7, conv3):
        out[layer.name] = {gbps: {k: v for k, v in simulate_layer(layer, 1, DianNaoConfig(dram_gbps=gbps)).to_dict()
                                  .items() if k in ("time_us", "memory_bound", "utilization")}
                           for gbps in (25, 50, 100, 250, 500, 1000)}
    return out


def machine_check() -> dict:
    """Measure this machine and compare its roofline with measured dense GEMV times of the nine layers."""
    m = probe.measure_machine()
    plat = from_probe(m)
    rows = []
    for shape in benchmark_shapes():
        pred = roofline_time(plat, traffic(shape, 1, "dense"))
        meas = probe.gemv_seconds(shape.in_channels, shape.out_channels)
        rows.append({"layer": shape.name, "bytes": traffic(shape).bytes, "roofline_us": pred * 1e6,
                     "measured_us": meas * 1e6, "measured_over_roofline": meas / pred,
                     "fits_llc": bool(m["llc_bytes"] and traffic(shape).bytes <= m["llc_bytes"])})
    return {"probe": m, "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
            "load_average": os.getloadavg(), "gemv": rows}


def main(argv=None) -> int:
    """Entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-probe", action="store_true",
                    help="do not measure this machine; Table V's row for it comes from hardware_machine.json")
    ap.add_argument("--real-layer", action="append", default=[], metavar="FILE.dcz:LAYER",
                    help="also sweep the FIFO on this pruned FC layer beside a uniform random one")
    args = ap.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    layers = {b.name: random_layer(b.spec(0)) for b in BENCHMARKS}
    sweeps = eie_sweeps(layers)
    if args.real_layer:
        sweeps["fifo_real_vs_uniform"] = real_layer_sweep(args.real_layer)
    plot_sweeps(sweeps)
    machine = None
    if not args.no_probe:
        machine = machine_check()
        (RESULTS / "hardware_machine.json").write_text(json.dumps(machine, indent=1))
    elif (RESULTS / "hardware_machine.json").exists():
        machine = json.loads((RESULTS / "hardware_machine.json").read_text())
    rows = table_v_comparison(probe=machine["probe"] if machine else None)
    plot_frames_per_j(rows)
    out = {"eie": sweeps, "table_v": rows, "diannao_dram_sweep": diannao_bandwidth_sweep(),
           "subproblems": {"alexnet": network_table(ALEXNET), "vgg16": network_table(VGG16)},
           "wall_s": time.perf_counter() - t0}
    (RESULTS / "hardware_sweeps.json").write_text(json.dumps(out, indent=1, default=float))
    for name in sweeps["fifo_load_balance"]:
        f, m, p = sweeps["fifo_load_balance"][name], sweeps["fifo_mac_utilization"][name], sweeps["pe_speedup"][name]
        print(f"{name:<8} load balance FIFO 1 {f[1]:.2f}, 8 {f[8]:.2f}, 256 {f[256]:.2f} (MAC utilisation "
              f"{m[1]:.2f}, {m[8]:.2f}, {m[256]:.2f}); speedup 64 PEs {p[64]:.1f}x, 256 PEs {p[256]:.1f}x")
    for key, rec in sweeps.get("fifo_real_vs_uniform", {}).items():
        for run in rec["runs"]:
            lb = run["load_balance"]
            print(f"{key} {run['weights']:<8} acts {run['act_density']:.2f} {run['num_pes']:>3} PEs: load balance "
                  f"FIFO 1 {lb[1]:.2f}, 8 {lb[8]:.2f}, 256 {lb[256]:.2f}")
    if machine:
        for r in machine["gemv"]:
            print(f"this machine {r['layer']:<8} roofline {r['roofline_us']:9.1f} us  measured {r['measured_us']:9.1f} us"
                  f"  ratio {r['measured_over_roofline']:.2f}{'  (fits LLC)' if r['fits_llc'] else ''}")
    print(f"wrote {RESULTS}/hardware_*.png and hardware_sweeps.json in {out['wall_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
