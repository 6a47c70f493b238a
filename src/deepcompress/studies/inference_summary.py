"""inference-summary: the talk's chain of factors measured on our compressed LeNets: pruning (size and ops),
dynamic activation sparsity (ops), reduced precision (size), total size reduction, and the energy of fetching
the weights from an SRAM that holds the compressed model instead of DRAM that holds the dense one."""

from __future__ import annotations

import numpy as np

from ..format import file_size_breakdown
from ..hardware import tech
from ..hardware.model_file import load_model
from .activation_density import densities, layer_inputs
from .common import pct, pyplot

TITLE = "Inference summary: the chain of factors, measured"
MODELS = ("lenet-300-100", "lenet-5")
DENSITY_IMAGES = {True: 500, False: 10_000}
# The slide's lines: (factor, its claim, low, high) and the running product it prints in brackets.
TALK = (
    ("pruning (size and ops)", "prune 70-95% of static weights: 3-20x", 3, 20, (3, 20)),
    ("dynamic activation sparsity (ops)", "3x reduction in ops", 3, 3, (10, 60)),
    ("reduced precision (size)", "~4 bits: 8x size reduction", 8, 8, (80, 480)),
    ("smaller RAM (energy of weight fetches)", "fits in smaller RAM: 100x less power", 100, 100, (8_000, 48_000)),
)
TOTAL_SIZE = (25, 150)  # "25-150x smaller"
SINGLE_TOLERANCE = 1.5  # a single-number claim agrees within this factor


def effective_macs(path, model, x) -> dict:
    """Dense, pruned and zero-skipping MACs per image for the file's layers. FC layers skip exactly the
    columns of zero inputs (measured per image); conv layers are scaled by their input density."""
    shapes = {fl.name: (fl.shape, fl.layer) for fl in load_model(path)[0]}
    dens = densities(model, x)
    inputs = layer_inputs(model, x)
    dense = pruned = skipping = 0.0
    for name, (shape, layer) in shapes.items():
        dense += shape.macs
        nnz_macs = layer.nnz * shape.positions
        pruned += nnz_macs
        if layer.kind == "fc":
            col_nnz = np.bincount(layer.rows_cols()[1], minlength=layer.matrix_shape[1])
            acts = np.concatenate([t.flatten(1).numpy() for t in inputs[name]])
            skipping += float(((acts != 0) @ col_nnz).mean())
        else:
            skipping += nnz_macs * dens[name]
    return {"dense": dense, "pruned": pruned, "skipping": skipping}


def memory_energy(path) -> dict:
    """pJ per image to fetch every weight once: dense float32 from DRAM against the file's bytes from an SRAM
    just big enough to hold them (64-bit accesses)."""
    report = file_size_breakdown(path)
    sram_bit = tech.sram_access_energy_pj(report.total, 64) / 64
    return {"dram_dense_pj": report.dense_fp32 * 8 * tech.DRAM_PJ_PER_BIT, "sram_file_pj": report.total * 8 * sram_bit,
            "dram_pj_per_bit": tech.DRAM_PJ_PER_BIT, "sram_pj_per_bit": sram_bit,
            "file_bytes": report.total, "dense_bytes": report.dense_fp32}


def factors(bench, name: str) -> dict:
    """The four factors and the total size reduction of `name`'s compressed file on MNIST."""
    path = bench.compressed(name)
    model = bench.file_model(name)
    macs = effective_macs(path, model, bench.data().test_x[:DENSITY_IMAGES[bench.quick]])
    layers = load_model(path)[0]
    nnz = sum(fl.layer.nnz for fl in layers)
    total = sum(fl.layer.size for fl in layers)
    bits = sum(fl.layer.nnz * fl.layer.index_bits for fl in layers) / nnz
    mem = memory_energy(path)
    return {"file": str(path), "kept": nnz / total, "size_pruning": total / nnz, "ops_pruning": macs["dense"] / macs["pruned"],
            "ops_activations": macs["pruned"] / macs["skipping"], "bits": bits, "size_precision": 32 / bits,
            "size_total": mem["dense_bytes"] / mem["file_bytes"],
            "energy_memory": mem["dram_pj_per_bit"] / mem["sram_pj_per_bit"],
            "macs": macs, "memory": mem}


def run(bench, study) -> None:
    """The chain per model against the slide, a figure and one claim per factor."""
    results = {m: factors(bench, m) for m in MODELS}
    study.data["results"] = results
    rows = []
    for m, f in results.items():
        chain = [f["ops_pruning"], f["ops_activations"], f["size_precision"], f["energy_memory"]]
        running = np.cumprod(chain)
        for (label, claim, _lo, _hi, cum), value, run_ in zip(TALK, chain, running):
            rows.append([m, label, claim, f"{value:.1f}x", f"{cum[0]:,}-{cum[1]:,}x", f"{run_:,.0f}x"])
        rows.append([m, "total size reduction (file)", "25-150x smaller", f"{f['size_total']:.1f}x", "-", "-"])
    study.table("The talk's inference summary, measured on the compressed LeNets (MNIST)",
                ["model", "factor", "talk", "measured", "talk, running product", "measured, running product"], rows)
    study.table("Details", ["model", "weights kept", "size from pruning", "ops from pruning", "mean index bits",
                            "file ratio", "weight fetches: DRAM dense (uJ)", "SRAM compressed (uJ)"],
                [[m, pct(f["kept"], 1), f"{f['size_pruning']:.1f}x", f"{f['ops_pruning']:.1f}x", f"{f['bits']:.2f}",
                  f"{f['size_total']:.1f}x", round(f["memory"]["dram_dense_pj"] / 1e6, 2),
                  round(f["memory"]["sram_file_pj"] / 1e6, 4)] for m, f in results.items()])
    _plot(study, results)
    _claims(study, results)


def _plot(study, results) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    labels = [t[0] for t in TALK]
    keys = ("ops_pruning", "ops_activations", "size_precision", "energy_memory")
    width = 0.8 / (len(results) + 1)
    xs = np.arange(len(labels))
    ax.bar(xs, [np.sqrt(t[2] * t[3]) for t in TALK], width, color="lightgray", label="talk (middle of its range)")
    for i, (m, f) in enumerate(results.items(), start=1):
        ax.bar(xs + i * width, [f[k] for k in keys], width, label=m)
    ax.set_xticks(xs + width * len(results) / 2, [label.replace(" (", "\n(") for label in labels], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("reduction factor (x)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    study.figure(fig, "inference_summary.png", "Each factor of the talk's inference summary: the talk's value "
                 "and ours for each compressed LeNet.")


def _claims(study, results) -> None:
    keys = ("ops_pruning", "ops_activations", "size_precision", "energy_memory")
    for (label, claim, lo, hi, _), key in zip(TALK, keys):
        extra = ("size_pruning",) if key == "ops_pruning" else ()
        vals = {m: [f[k] for k in (key, *extra)] for m, f in results.items()}
        lo_ok, hi_ok = (lo, hi) if lo != hi else (lo / SINGLE_TOLERANCE, hi * SINGLE_TOLERANCE)
        shown = ", ".join(f"{m} {' / '.join(f'{v:.1f}x' for v in vs)}" for m, vs in vals.items())
        study.claim(label, claim, shown + (" (ops / size)" if extra else ""),
                    all(lo_ok <= v <= hi_ok for vs in vals.values() for v in vs), _why(key, lo == hi))
    sizes = {m: f["size_total"] for m, f in results.items()}
    study.claim("total size reduction", "25-150x smaller", ", ".join(f"{m} {v:.1f}x" for m, v in sizes.items()),
                all(TOTAL_SIZE[0] <= v <= TOTAL_SIZE[1] for v in sizes.values()),
                "dense float32 bytes over the .dcz file's bytes (Huffman-coded indices and relative positions)")


def _why(key: str, single: bool) -> str:
    rule = f"agrees within {SINGLE_TOLERANCE}x of the talk's figure" if single else "agrees inside the talk's range"
    notes = {
        "ops_pruning": "dense MACs over MACs on nonzero weights (conv weights count once per output position)",
        "ops_activations": "MACs on nonzero weights over those that also have a nonzero input; FC exact per image, "
                           "conv scaled by input density; LeNet-5 has no ReLU after its convolutions, so its big "
                           "layers' inputs are dense",
        "size_precision": "32 bits over the files' mean codebook-index bits per stored weight",
        "energy_memory": "energy per bit: DRAM (20 pJ/bit) against an SRAM just big enough for the file (Horowitz's "
                         "64-bit SRAM energies by capacity); fetching every weight once costs the product of this "
                         "and the size reduction (Details table)",
    }
    return f"{rule}; {notes[key]}"
