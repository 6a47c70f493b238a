"""activation-density: the fraction of nonzero input activations of each layer over the test set (the talk's
"VGG-16 activation density" slide) for the compressed LeNets on MNIST and Fashion-MNIST, and what skipping the
zeros saves on EIE: the cycle-level simulator run on real input vectors against the same layer with every
input nonzero."""

from __future__ import annotations

import numpy as np
import torch

from ..hardware.eie import simulate
from ..hardware.eie_tables import BENCHMARKS
from ..hardware.model_file import load_model
from .casting import layers
from .common import pct, pyplot

TITLE = "Activation density per layer, and what skipping zeros saves on EIE"
MODELS = ("lenet-5", "lenet-300-100")
DATASETS = {True: ("mnist",), False: ("mnist", "fashion-mnist")}
EIE_IMAGES = {True: 3, False: 20}  # test images whose real activation vectors run through the EIE simulator
TALK_SAVING = 3.0  # "exploit dynamic sparsity of activations (3x reduction in ops)"


@torch.no_grad()
def layer_inputs(model, x: torch.Tensor, batch: int = 1000) -> dict[str, list[torch.Tensor]]:
    """Each Linear/Conv2d layer's input for the images `x`, in batches of `batch` (a list per layer)."""
    seen, handles = {}, []
    for name, m in layers(model).items():
        handles.append(m.register_forward_pre_hook(lambda _m, inp, name=name: seen.setdefault(name, []).append(inp[0])))
    try:
        model.eval()
        for i in range(0, len(x), batch):
            model(x[i:i + batch])
    finally:
        for h in handles:
            h.remove()
    return seen


def densities(model, x: torch.Tensor) -> dict[str, float]:
    """Fraction of nonzero entries in each layer's input over the images `x`."""
    return {n: sum(int(torch.count_nonzero(t)) for t in ts) / sum(t.numel() for t in ts)
            for n, ts in layer_inputs(model, x).items()}


def eie_saving(path, model, x: torch.Tensor) -> dict[str, dict]:
    """Per FC layer of the file: mean EIE cycles and energy on the real input vectors of images `x`, and with
    every input nonzero (no zeros to skip)."""
    file_layers = {fl.name: fl.layer for fl in load_model(path)[0] if fl.kind == "fc"}
    inputs = layer_inputs(model, x, batch=len(x))
    out = {}
    for name, layer in file_layers.items():
        vecs = inputs[name][0].flatten(1).numpy()
        real = [simulate(layer, v, label=name) for v in vecs]
        full = simulate(layer, np.ones(vecs.shape[1], np.float32), label=name)
        cycles, energy = np.mean([r.cycles for r in real]), np.mean([r.energy_j for r in real])
        out[name] = {"density": float(np.count_nonzero(vecs) / vecs.size), "cycles": float(cycles),
                     "time_s": float(np.mean([r.time_s for r in real])),
                     "cycles_dense_input": full.cycles, "energy_j": float(energy), "energy_j_dense_input": full.energy_j,
                     "speedup": full.cycles / cycles, "energy_saving": full.energy_j / energy}
    return out


def measure(bench) -> dict:
    """{(model, dataset): {"densities", "eie", "file", "error"}} for every model and data set of this mode."""
    out = {}
    for dataset in DATASETS[bench.quick]:
        for name in MODELS:
            path = bench.compressed(name, dataset)
            model = bench.file_model(name, dataset)
            test_x = bench.data(dataset).test_x
            out[f"{name} / {dataset}"] = {
                "file": str(path), "error": bench.error(model, dataset), "densities": densities(model, test_x),
                "eie": eie_saving(path, model, test_x[:EIE_IMAGES[bench.quick]])}
    return out


def run(bench, study) -> None:
    """Densities per layer and data set, EIE savings, two figures and the claims."""
    results = measure(bench)
    study.data["results"] = results
    rows = [[key, n, pct(d, 1), "yes" if n in r["eie"] else "-"] for key, r in results.items()
            for n, d in r["densities"].items()]
    study.table("Fraction of nonzero input activations per layer over the test set (compressed models)",
                ["model / data", "layer", "input density", "FC (run on EIE)"], rows)
    study.table("EIE cycle-level simulator: real input vectors against all-nonzero inputs (per image)",
                ["model / data", "layer", "input density", "cycles", "cycles, no zeros", "speed-up", "energy saving"],
                [[key, n, pct(e["density"], 1), round(e["cycles"]), e["cycles_dense_input"], f"{e['speedup']:.2f}x",
                  f"{e['energy_saving']:.2f}x"] for key, r in results.items() for n, e in r["eie"].items()])
    _plot(study, results)
    _claims(study, results)


def _plot(study, results) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    keys = list(results)
    width = 0.8 / len(keys)
    for i, key in enumerate(keys):
        d = results[key]["densities"]
        ax.bar([j + i * width for j in range(len(d))], [100 * v for v in d.values()], width, label=key)
        for j, n in enumerate(d):
            ax.text(j + i * width, 2, n, rotation=90, ha="center", va="bottom", fontsize=7, color="white")
    ax.set_xticks([])
    ax.set_xlabel("layers in forward order (names on the bars)")
    ax.set_ylabel("nonzero input activations (%)")
    ax.set_title("Activation density per layer (test set)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    study.figure(fig, "activation_density.png", "Fraction of each layer's inputs that are nonzero over the test "
                 "set. FC inputs after a ReLU are sparse; LeNet-5's conv inputs are dense (its Caffe definition has "
                 "no ReLU after the convolutions) except the image itself.")


def _relu_fed(results) -> list[float]:
    """Densities of FC layers fed by a ReLU (every FC input but LeNet-5's ip1, fed by a max-pool, and the
    first layer of LeNet-300-100, fed by the image)."""
    skip = {"lenet-5": {"ip1"}, "lenet-300-100": {"ip1"}}
    return [e["density"] for key, r in results.items() for n, e in r["eie"].items()
            if n not in skip[key.split(" / ")[0]]]


def _claims(study, results) -> None:
    relu = _relu_fed(results)
    paper = [b.act_density for b in BENCHMARKS if b.act_density < 1]
    mean = float(np.mean(relu))
    study.claim("FC inputs after a ReLU are sparse: a fifth to two fifths nonzero",
                f"VGG-16 activation density slide; EIE Table III: AlexNet/VGG FC inputs {pct(min(paper), 0)}-"
                f"{pct(max(paper), 0)} nonzero",
                f"ReLU-fed FC inputs {pct(min(relu), 0)}-{pct(max(relu), 0)} nonzero (mean {pct(mean, 0)})",
                min(paper) <= mean <= max(paper),
                "agrees when our mean lies in the paper's range; these are small MNIST networks, not VGG on ImageNet")
    all_fc = [e for r in results.values() for e in r["eie"].values()]
    cycles = sum(e["cycles_dense_input"] for e in all_fc) / sum(e["cycles"] for e in all_fc)
    energy = sum(e["energy_j_dense_input"] for e in all_fc) / sum(e["energy_j"] for e in all_fc)
    study.claim("skipping zero activations cuts the work about 3x",
                "exploit dynamic sparsity of activations (3x reduction in ops)",
                f"EIE on our FC layers: {cycles:.2f}x fewer cycles, {energy:.2f}x less energy (all FC layers, "
                f"all models); per layer {min(e['speedup'] for e in all_fc):.2f}x-{max(e['speedup'] for e in all_fc):.2f}x",
                TALK_SAVING / 1.5 <= cycles <= TALK_SAVING * 1.5,
                "agrees within 1.5x of 3x; the first FC layer of each LeNet dominates the cycles, and its input is "
                "the image (LeNet-300-100, ~19% nonzero) or a max-pool output without ReLU (LeNet-5, dense)")
