"""Per-layer pruning sensitivity of a trained word LSTM, and the kept fractions it suggests (Han et al.,
"Learning both Weights and Connections", section 4: each layer pruned alone, by magnitude, without retraining,
on held-out data; the rates then chosen from those curves).

The dense checkpoint of an any_model record (its baseline-train.pt) is loaded; each of its matrices in turn
is cut to each kept fraction while every other matrix stays dense, and the perplexity on the validation
novel (Northanger Abbey: neither the training nor the test text) is recorded. `allocate` then picks one
fraction per matrix so that the whole model keeps at most `--budget` of its pruned weights and the summed
loss increase is smallest (a knapsack over the measured points; summing one-layer increases assumes they add
up, which is what the retraining afterwards has to make true).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/lstm_sensitivity.py \
        --checkpoint runs/any_model/full/austen-words-lstm-650/baseline-train.pt   # about 10 minutes

The matrices measured are those the record's recipe prunes (a tied embedding and output layer: one table).

Results go to benchmarks/results/lstm_sensitivity.json; a table is printed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

import any_model
import any_model_specs
from deepcompress import atomic
from deepcompress.data_text import austen_corpus_named, lm_dataset
from deepcompress.models_text import LSTM_MATRICES, sequence_loss
from deepcompress.train import load_weights

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "lstm_sensitivity.json"
KEPT = (0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3)
LAYERS = ("embed", "out", *LSTM_MATRICES)


def validation(spec, windows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `windows` windows of the validation novel, as the record's data set cuts them."""
    corpus = austen_corpus_named(spec.dataset, spec.notes["vocab"])
    data = lm_dataset(corpus, spec.notes["sequence_length"], spec.dataset)
    return torch.from_numpy(data.valid_x[:windows]), torch.from_numpy(data.valid_y[:windows])


@torch.no_grad()
def mean_loss(model, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> float:
    """Mean cross-entropy per token of the model (eval mode) on (x, y)."""
    model.eval()
    total = sum(float(sequence_loss(model(x[i:i + batch]), y[i:i + batch])) * len(x[i:i + batch])
                for i in range(0, len(x), batch))
    return total / len(x)


def magnitude_cut(weight: torch.Tensor, kept: float) -> torch.Tensor:
    """A copy of `weight` keeping its round(kept * size) largest magnitudes (ties: the first ones)."""
    flat = weight.detach().flatten()
    keep = torch.topk(flat.abs(), max(1, round(kept * flat.numel()))).indices
    out = torch.zeros_like(flat)
    out[keep] = flat[keep]
    return out.view_as(weight)


def sensitivity(model, x, y, layers=LAYERS, fractions=KEPT) -> dict[str, dict[float, float]]:
    """For each layer and kept fraction, the validation loss with that layer alone cut to the fraction."""
    curves = {}
    for name in layers:
        weight = any_model_specs.layer_weight(model, name)
        saved = weight.detach().clone()
        curves[name] = {}
        for kept in fractions:
            with torch.no_grad():
                weight.copy_(magnitude_cut(saved, kept))
            curves[name][kept] = mean_loss(model, x, y)
            print(f"  {name:<20} kept {kept:>5.2f}: perplexity {math.exp(curves[name][kept]):8.2f}", flush=True)
        with torch.no_grad():
            weight.copy_(saved)
    return curves


def allocate(curves: dict[str, dict[float, float]], sizes: dict[str, int], budget: float) -> dict[str, float]:
    """One measured kept fraction per layer, keeping at most `budget` of all the layers' weights, with the
    smallest summed loss (exact: a knapsack over weights kept, in units of 0.1% of the total)."""
    total = sum(sizes.values())
    unit = total / 1000
    cap = int(budget * total / unit + 1e-9)
    best = {0: (0.0, {})}  # units used -> (summed loss, choice)
    for name, curve in curves.items():
        step = {}
        for used, (loss, choice) in best.items():
            for kept, value in curve.items():
                u = used + math.ceil(kept * sizes[name] / unit)
                if u <= cap and (u not in step or loss + value < step[u][0]):
                    step[u] = (loss + value, {**choice, name: kept})
        best = step
    if not best:
        raise ValueError(f"no choice of the measured fractions keeps at most {budget:.1%} of the weights")
    return min(best.values(), key=lambda pair: pair[0])[1]


def main(argv: list[str] | None = None) -> int:
    """Measure the sensitivity curves, print them and the allocation, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="austen-words-lstm-650", choices=sorted(any_model.LSTM_MODELS))
    parser.add_argument("--checkpoint", type=Path, required=True, help="the record's dense baseline-train.pt")
    parser.add_argument("--windows", type=int, default=800, help="validation windows to score (default 800)")
    parser.add_argument("--budget", type=float, default=0.1, help="kept fraction of all pruned weights")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    spec = any_model.SPECS[args.model]
    t0 = time.perf_counter()
    x, y = validation(spec, args.windows)
    _, info = any_model.load_data(spec, quick=True)
    model = spec.build(info)
    load_weights(model, args.checkpoint, args.model)
    dense = mean_loss(model, x, y)
    print(f"{args.model}: dense validation perplexity {math.exp(dense):.2f} ({len(x)} windows)", flush=True)
    layers = tuple(spec.recipe["prune"]["layers"])  # a tied model's one table is one layer
    curves = sensitivity(model, x, y, layers)
    sizes = {n: any_model_specs.layer_weight(model, n).numel() for n in layers}
    choice = allocate(curves, sizes, args.budget)
    kept = sum(choice[n] * sizes[n] for n in layers) / sum(sizes.values())
    print(f"allocation for {args.budget:.0%} kept: " + ", ".join(f"{n} {choice[n]:.2f}" for n in layers)
          + f" ({kept:.2%} of {sum(sizes.values()):,} weights kept)")
    atomic.write_json(args.out, {
        "model": args.model, "checkpoint": str(args.checkpoint), "validation_windows": len(x),
        "dense_perplexity": math.exp(dense), "sizes": sizes, "budget": args.budget,
        "perplexity": {n: {str(k): math.exp(v) for k, v in c.items()} for n, c in curves.items()},
        "allocation": choice, "kept": kept, "wall_s": round(time.perf_counter() - t0, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
