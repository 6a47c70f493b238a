"""Sensitivity analysis: prune one layer at a time (no retraining) and measure error against sparsity;
or weight-share one layer at a time and measure error against bits.

The curves show which layers tolerate pruning (Han et al. 2015, Fig. 6) or fewer shared weights, and
suggest per-layer targets.
"""

from __future__ import annotations

import copy
from pathlib import Path

from torch import nn

from ..train import evaluate
from .prune import Masks, TargetSparsity, matrix_layers
from .quantize import SharedWeights

DEFAULT_GRID = (0.0, 0.3, 0.5, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99)
DEFAULT_BITS = (2, 3, 4, 5, 6)
UNQUANTIZED = 32  # the bits of the first point of a bits curve: the layer as it is


def sensitivity(model: nn.Module, x, y, grid=DEFAULT_GRID, error=evaluate) -> dict[str, list[tuple[float, float]]]:
    """For each Linear/Conv2d layer, [(sparsity, error)] with only that layer pruned to that sparsity;
    `error(model, x, y)` is the measure (default: top-1 classification error; a distillation run passes
    its distance to the teacher, e.g. deepcompress.minilm_distill.cosine_error)."""
    curves = {}
    for name in matrix_layers(model):
        points = []
        for sparsity in grid:
            trial = copy.deepcopy(model)
            Masks(trial, [name]).prune({name: TargetSparsity(sparsity)})
            points.append((sparsity, error(trial, x, y)))
        curves[name] = points
    return curves


def suggest_sparsity(curves: dict, tolerance: float) -> dict[str, float]:
    """Per layer, the largest sparsity whose error stays within `tolerance` of the unpruned error."""
    out = {}
    for name, points in curves.items():
        base = points[0][1] if points[0][0] == 0 else min(e for _, e in points)
        out[name] = max((s for s, e in points if e <= base + tolerance), default=0.0)
    return out


def bits_sensitivity(model: nn.Module, x, y, widths=DEFAULT_BITS, error=evaluate,
                     iters: int = 30) -> dict[str, list[tuple[int, float]]]:
    """For each Linear/Conv2d layer, [(bits, error)] with only that layer weight-shared (k-means with 2**bits
    centroids, no pruning, no fine-tuning); the first point, (32, error), is the model unchanged."""
    base = error(model, x, y)
    curves = {}
    for name in matrix_layers(model):
        points = [(UNQUANTIZED, base)]
        for bits in widths:
            trial = copy.deepcopy(model)
            SharedWeights(trial, Masks(trial, [name]), {name: bits}, iters=iters)
            points.append((bits, error(trial, x, y)))
        curves[name] = points
    return curves


def suggest_bits(curves: dict, tolerance: float) -> dict[str, int]:
    """Per layer, the fewest bits whose error stays within `tolerance` of the unquantized error (the most
    bits tried when none does)."""
    out = {}
    for name, points in curves.items():
        base, tried = points[0][1], points[1:]
        fits = [bits for bits, e in tried if e <= base + tolerance]
        out[name] = min(fits) if fits else max(bits for bits, _ in tried)
    return out


def plot_sensitivity(curves: dict, path: str | Path, title: str = "") -> None:
    """Plot accuracy against sparsity, one line per layer, to an image file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .. import atomic

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in curves.items():
        ax.plot([100 * s for s, _ in points], [100 * (1 - e) for _, e in points], marker="o", label=name)
    ax.set_xlabel("parameters pruned away (%)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or "pruning sensitivity, one layer at a time, no retraining")
    ax.grid(alpha=0.3)
    ax.legend()
    path = Path(path)
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight")
    plt.close(fig)
