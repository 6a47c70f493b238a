"""bits-per-weight: LeNet-5's test error against bits per weight (1-8) with only the conv layers or only the
FC layers weight-shared, k-means against linear (uniform) levels, with and without centroid fine-tuning (the
talk's "2-6 bits/weight sufficient", Deep Compression Fig. 8); and LeNet-5 with and without batch
normalisation when every layer's input activations share one low-precision fixed-point format (the talk's
"batch normalization important to 'center' dynamic range")."""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import torch
from torch import nn

from ..compress import Masks
from . import steps
from .casting import cast, cast_activations, input_stats, layers
from .common import pct, pyplot

TITLE = "Bits per weight (conv against FC), k-means against linear, and batch normalisation at low precision"
MODEL = "lenet-5"
BITS = {True: (2, 4), False: (1, 2, 3, 4, 5, 6, 7, 8)}
ACT_BITS = {True: (3, 6), False: (2, 3, 4, 5, 6, 8)}
FINETUNE_IMAGES = {True: 256, False: 10_000}  # one fine-tuning epoch over this many training images
BN_EPOCHS, BN_IMAGES = {True: 1, False: 3}, {True: 500, False: None}
METHODS = (("k-means", "kmeans", False), ("k-means + fine-tuning", "kmeans", True),
           ("linear", "uniform", False), ("linear + fine-tuning", "uniform", True))
NO_LOSS_POINTS = 0.2
CALIBRATION_IMAGES = 1000


class LeNet5BN(nn.Module):
    """LeNet-5 (Caffe) with batch normalisation after both convolutions and the first FC layer."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 20, 5), nn.BatchNorm2d(20)
        self.conv2, self.bn2 = nn.Conv2d(20, 50, 5), nn.BatchNorm2d(50)
        self.ip1, self.bn3 = nn.Linear(800, 500), nn.BatchNorm1d(500)
        self.ip2 = nn.Linear(500, 10)
        self.pool, self.relu = nn.MaxPool2d(2, 2), nn.ReLU()

    def forward(self, x):
        """Logits for a batch of (N, 1, 28, 28) images."""
        x = self.pool(self.bn1(self.conv1(x)))
        x = self.pool(self.bn2(self.conv2(x)))
        x = self.relu(self.bn3(self.ip1(x.flatten(1))))
        return self.ip2(x)


def quantized_error(bench, base, kind: str, bits: int, method: str, tune: bool) -> float:
    """Test error of `base` with its `kind` ('conv' or 'fc') layers shared at `bits` (pruned weights stay zero)."""
    model = copy.deepcopy(base)
    names = [n for n, m in layers(model).items() if isinstance(m, nn.Conv2d) == (kind == "conv")]
    masks = Masks(model, names)
    masks.masks = {n: masks.modules[n].weight.detach() != 0 for n in names}
    shared = steps.quantize(model, masks, bits, method)
    epochs = 1 if tune else 0
    return steps.finetune(bench, MODEL, model, masks, shared, epochs, train_images=FINETUNE_IMAGES[bench.quick])


def weight_sweep(bench) -> dict:
    """{kind: {method label: [error per bits]}} over BITS for the conv and the FC layers."""
    base = bench.baseline(MODEL)
    return {kind: {label: [quantized_error(bench, base, kind, b, method, tune) for b in BITS[bench.quick]]
                   for label, method, tune in METHODS} for kind in ("conv", "fc")}


def shared_format_error(bench, model, bits: int, stats: dict) -> float:
    """Test error with every layer's input rounded to one `bits`-bit fixed-point format, its binary point
    chosen once for the whole network so that the largest activation of any layer fits."""
    largest = max(s["max_abs"] for s in stats.values())
    step = 2.0 ** math.ceil(math.log2(largest)) / 2 ** (bits - 1)
    fmt = f"Q{bits - 1}.0"
    with cast_activations(model, {n: (lambda a: cast(a, fmt, step)) for n in layers(model)}):
        return bench.error(model)


def bn_sweep(bench) -> dict:
    """Error per activation bits for LeNet-5 trained without and with batch normalisation (same settings)."""
    from ..models import build_model

    cfg = replace(bench.train_config(MODEL), epochs=BN_EPOCHS[bench.quick])
    out = {}
    for label, build in (("without batch norm", lambda: build_model(MODEL)), ("with batch norm", LeNet5BN)):
        key = f"{MODEL}-{'bn' if build is LeNet5BN else 'plain'}-{cfg.epochs}ep"
        model = _variant(bench, key, build, cfg)
        model.eval()
        stats = input_stats(model, bench.data().train_x[:CALIBRATION_IMAGES])
        out[label] = {"fp32": bench.error(model), "ranges": {n: s["max_abs"] for n, s in stats.items()},
                      "errors": [shared_format_error(bench, model, b, stats) for b in ACT_BITS[bench.quick]]}
    return out


def _variant(bench, key, build, cfg):
    if bench.quick:  # a short training on the first BN_IMAGES images
        torch.manual_seed(cfg.seed)
        model = build()
        bench.fit(model, "mnist", cfg, train_images=BN_IMAGES[True])
        return model
    return bench.variant(key, build, "mnist", cfg)


def run(bench, study) -> None:
    """Both sweeps, their tables, figures and claims."""
    bits = BITS[bench.quick]
    base_err = bench.error(bench.baseline(MODEL))
    sweep = weight_sweep(bench)
    study.data.update(bits=list(bits), baseline_error=base_err, weights=sweep)
    for kind, curves in sweep.items():
        study.table(f"{MODEL} (MNIST): test error with only the {kind} layers weight-shared (float baseline "
                    f"{pct(base_err)})", ["bits per weight", *curves],
                    [[b, *(pct(c[i]) for c in curves.values())] for i, b in enumerate(bits)])
    bn = bn_sweep(bench)
    study.data["batch_norm"] = bn
    study.table("LeNet-5 with every layer input in one shared fixed-point format (no retraining)",
                ["activation bits", *bn], [[b, *(pct(v["errors"][i]) for v in bn.values())]
                                           for i, b in enumerate(ACT_BITS[bench.quick])]
                + [["fp32", *(pct(v["fp32"]) for v in bn.values())]])
    study.table("Largest |input| of each layer (calibration images)", ["model", *next(iter(bn.values()))["ranges"]],
                [[label, *(round(r, 2) for r in v["ranges"].values())] for label, v in bn.items()])
    _plot_bits(study, bits, sweep, base_err)
    _plot_bn(study, bench, bn)
    _claims(study, bits, sweep, base_err, bn, bench)


def _plot_bits(study, bits, sweep, base_err) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, (kind, curves) in zip(axes, sweep.items()):
        for label, errs in curves.items():
            ax.plot(bits, [100 * e for e in errs], marker="o", ls="-" if "k-means" in label else "--", label=label)
        ax.axhline(100 * base_err, color="gray", lw=0.8, label="float weights")
        ax.set_title(f"{kind} layers weight-shared")
        ax.set_xlabel("bits per weight")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("test error (%)")
    study.figure(fig, "bits_per_weight.png", "LeNet-5 test error against bits per weight with only the conv or "
                 "only the FC layers shared: k-means against linear levels, with and without centroid fine-tuning.")


def _plot_bn(study, bench, bn) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, v in bn.items():
        ax.plot(ACT_BITS[bench.quick], [100 * e for e in v["errors"]], marker="o", label=label)
    ax.set_xlabel("activation bits (one fixed-point format for every layer input)")
    ax.set_ylabel("test error (%)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    study.figure(fig, "batch_norm_activations.png", "LeNet-5 trained with and without batch normalisation, "
                 "every layer input rounded to one shared fixed-point format: batch normalisation keeps the layers' "
                 "ranges alike, so one format fits them all.")


def _smallest(bits, errs, base_err):
    """The fewest bits whose error is within NO_LOSS_POINTS of `base_err`, or None."""
    ok = [b for b, e in zip(bits, errs) if e - base_err <= NO_LOSS_POINTS / 100]
    return min(ok) if ok else None


def _say(bits) -> str:
    return "none tested" if bits is None else str(bits)


def _claims(study, bits, sweep, base_err, bn, bench) -> None:
    tuned = {k: _smallest(bits, c["k-means + fine-tuning"], base_err) for k, c in sweep.items()}
    study.claim("2-6 bits per weight are sufficient",
                "2-6 bits/weight sufficient (conv ~4 bits, FC ~2 bits in Deep Compression's AlexNet)",
                f"fewest bits within {NO_LOSS_POINTS} points of float, k-means + fine-tuning: conv {_say(tuned['conv'])}, "
                f"fc {_say(tuned['fc'])} (of {', '.join(map(str, bits))})",
                all(t is not None and t <= 6 for t in tuned.values()),
                "one fine-tuning epoch over " + f"{FINETUNE_IMAGES[bench.quick]:,} images; the other kind of layer stays float")
    study.claim("FC layers tolerate fewer bits than conv layers",
                "FC layers 2 bits, conv layers 4 bits without loss (Deep Compression Fig. 8)",
                f"conv {_say(tuned['conv'])} bits, fc {_say(tuned['fc'])} bits",
                None not in tuned.values() and tuned["fc"] < tuned["conv"],
                "agrees only when FC layers need strictly fewer bits (a tie shows no difference); LeNet-5's FC "
                "layers hold 93% of its weights, its conv layers 7%: the counts, not only the kinds, differ from "
                "AlexNet's")
    low = 0
    for kind, c in sweep.items():
        study.claim(f"{kind}: fine-tuning the centroids and k-means (over linear levels) help at {bits[low]} bits",
                    "trained quantization: centroids fine-tuned; k-means with linear init beats uniform levels",
                    f"k-means {pct(c['k-means'][low])}, + fine-tuning {pct(c['k-means + fine-tuning'][low])}; linear "
                    f"{pct(c['linear'][low])}, + fine-tuning {pct(c['linear + fine-tuning'][low])}",
                    c["k-means + fine-tuning"][low] <= c["k-means"][low] and c["k-means"][low] <= c["linear"][low],
                    "agrees when fine-tuning lowers k-means' error and k-means is no worse than linear levels")
    without, with_bn = bn["without batch norm"], bn["with batch norm"]
    need = {k: _smallest(ACT_BITS[bench.quick], v["errors"], v["fp32"]) for k, v in bn.items()}
    study.claim("batch normalisation centres the dynamic range: lower activation precision suffices",
                "batch normalization important to 'center' dynamic range (mixed precision slide)",
                f"fewest shared activation bits within {NO_LOSS_POINTS} points of fp32: {_say(need['without batch norm'])} "
                f"without, {_say(need['with batch norm'])} with batch norm; at {ACT_BITS[bench.quick][0]} bits "
                f"{pct(without['errors'][0])} against {pct(with_bn['errors'][0])}",
                with_bn["errors"][0] < without["errors"][0],
                f"both trained {BN_EPOCHS[bench.quick]} epoch(s) alike; largest layer input "
                f"{max(without['ranges'].values()):.1f} without, {max(with_bn['ranges'].values()):.1f} with batch norm")
