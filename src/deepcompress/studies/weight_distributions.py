"""weight-distributions: histograms of one layer's weights before pruning, after pruning and retraining, and
after trained quantization with the centroids marked (Deep Compression's weight-sharing figures)."""

from __future__ import annotations

import numpy as np

from ..compress import kmeans_1d
from . import steps
from .common import pct, pyplot

TITLE = "Weight distributions: before pruning, after pruning, after trained quantization"
MODEL, LAYER = "lenet-300-100", "ip1"
EPOCHS = {"retrain": (1, 3), "finetune": (1, 2)}  # (quick, full)
NO_LOSS_POINTS = 0.2


def _epochs(bench, what: str) -> int:
    return EPOCHS[what][0 if bench.quick else 1]


def _weights(model) -> np.ndarray:
    return dict(model.named_modules())[LAYER].weight.detach().numpy().ravel().copy()


def run(bench, study) -> None:
    """Prune the baseline with its recipe's sparsities, retrain, quantize and fine-tune; histograms per stage."""
    cfg = steps.recipe(MODEL)
    model = bench.dense(MODEL)
    stages = [("dense baseline", _weights(model), bench.error(model))]
    masks = steps.prune(model, dict(cfg.prune.layers))
    stages.append(("pruned, not retrained", _weights(model), bench.error(model)))
    err = steps.retrain(bench, MODEL, model, masks, _epochs(bench, "retrain"))
    stages.append(("pruned and retrained", _weights(model), err))
    bits = cfg.quantize.fc_bits
    shared = steps.quantize(model, masks, bits, cfg.quantize.method, cfg.quantize.init)
    stages.append((f"quantized ({bits} bits, k-means)", _weights(model), bench.error(model)))
    err = steps.finetune(bench, MODEL, model, masks, shared, _epochs(bench, "finetune"))
    stages.append(("centroids fine-tuned", _weights(model), err))
    centroids = shared.codes[LAYER].codebook.numpy()
    study.table(f"{MODEL} layer {LAYER} (MNIST) through Deep Compression",
                ["stage", "nonzero weights", "distinct nonzero values", "test error"],
                [[s, int(np.count_nonzero(w)), int(np.unique(w[w != 0]).size), pct(e)] for s, w, e in stages])
    study.data["centroids"] = centroids.tolist()
    study.data["sparsity"] = cfg.prune.layers[LAYER]
    _plot(study, stages, centroids)
    _claims(study, stages, centroids, bits, _epochs(bench, "retrain"))


def _plot(study, stages, centroids) -> None:
    plt = pyplot()
    shown = [stages[0], stages[2], stages[4]]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), sharex=True)
    lim = float(np.abs(stages[0][1]).max())
    bins = np.linspace(-lim, lim, 161)
    for ax, (label, w, err) in zip(axes, shown):
        ax.hist(w[w != 0], bins=bins, color="tab:blue")
        ax.set_title(f"{label}\n{np.count_nonzero(w):,} nonzero, error {pct(err)}", fontsize=9)
        ax.set_xlabel("weight value")
    for c in centroids:
        axes[2].axvline(c, color="tab:red", lw=0.8)
    axes[0].set_ylabel("count")
    fig.suptitle(f"{MODEL} {LAYER}: weight distribution (zeros left out; red lines: shared-weight centroids)", y=1.06)
    study.figure(fig, "weight_histograms.png", f"{LAYER} of {MODEL} before pruning, after pruning and retraining "
                 "(no weights near zero are left), and after k-means weight sharing and centroid fine-tuning, with "
                 "the centroids in red.")


def _claims(study, stages, centroids, bits: int, epochs: int) -> None:
    dense_err, pruned_err, retrained_err = stages[0][2], stages[1][2], stages[2][2]
    study.claim("retraining recovers the accuracy that pruning takes",
                "retrain to recover accuracy (the talk's pruning slides: no loss at 9-13x fewer weights)",
                f"{LAYER} pruned to {pct(np.count_nonzero(stages[2][1]) / stages[2][1].size, 0)} kept (recipe sparsities): "
                f"error {pct(dense_err)} dense, {pct(pruned_err)} pruned, {pct(retrained_err)} retrained",
                retrained_err - dense_err <= NO_LOSS_POINTS / 100 and retrained_err <= pruned_err,
                f"agrees when the retrained error is within {NO_LOSS_POINTS} points of the dense one; one-shot "
                f"pruning with {epochs} retraining epoch(s) (the recipe prunes in rounds)")
    quant_err = stages[4][2]
    study.claim(f"trained quantization: {2 ** bits} shared values per layer lose no accuracy",
                "store weights as 4-5 bits using trained quantization (mixed precision slide)",
                f"{len(centroids)} distinct values, error {pct(retrained_err)} -> {pct(quant_err)}",
                quant_err - retrained_err <= NO_LOSS_POINTS / 100,
                f"agrees when fine-tuned error is within {NO_LOSS_POINTS} points of the retrained float model")
    alive = stages[2][1][stages[2][1] != 0]
    reach = {init: float(np.abs(kmeans_1d(alive, 2 ** bits, init)[0]).max()) for init in ("linear", "density")}
    top = float(np.abs(alive).max())
    study.claim("linear centroid initialisation keeps the large weights",
                "Deep Compression 3.2: linear initialisation represents the few large weights that matter",
                f"outermost centroid at {reach['linear'] / top:.2f} of the largest |weight| with linear init, "
                f"{reach['density'] / top:.2f} with density init",
                reach["linear"] > reach["density"], "k-means on the retrained layer's surviving weights, both inits")
