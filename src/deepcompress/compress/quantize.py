"""Trained quantization (weight sharing): per-layer 1-D k-means over surviving weights, then centroid
fine-tuning where each centroid moves by the sum of its weights' gradients.

`SharedWeights` is a training hook. After backward it replaces every surviving weight's gradient with the
summed gradient of its cluster, so one optimizer step moves all weights of a cluster by the same amount:
the weights stay equal to their centroid, and dL/dC_k = sum over (i, j) in cluster k of dL/dW_ij as in
Deep Compression. Pruned weights keep a zero gradient and stay zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..train import TrainHook
from .prune import Masks

INITS = ("linear", "density", "random")


def init_centroids(values: np.ndarray, k: int, method: str = "linear", seed: int = 0) -> np.ndarray:
    """Initial centroids: linear over [min, max], density (equal-quantile) or random samples."""
    if method not in INITS:
        raise UserError(f"k-means init {method!r}: expected one of {', '.join(INITS)}")
    lo, hi = float(values.min()), float(values.max())
    if method == "linear":
        return np.linspace(lo, hi, k)
    if method == "density":
        return np.quantile(values, (np.arange(k) + 0.5) / k)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(values, size=k, replace=values.size < k))


def assign(values: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid for each value (centroids sorted ascending)."""
    edges = (centroids[1:] + centroids[:-1]) / 2
    return np.searchsorted(edges, values)


def kmeans_1d(values: np.ndarray, k: int, init: str = "linear", iters: int = 100,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means in one dimension: returns (sorted centroids float32 [k'], labels), k' <= k.

    Empty clusters are dropped, so every returned centroid has at least one member.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    centroids = np.unique(init_centroids(values, min(k, values.size), init, seed))
    for _ in range(iters):
        labels = assign(values, centroids)
        counts = np.bincount(labels, minlength=len(centroids))
        sums = np.bincount(labels, weights=values, minlength=len(centroids))
        keep = counts > 0
        updated = sums[keep] / counts[keep]
        if keep.all() and np.allclose(updated, centroids, rtol=0, atol=1e-12):
            break
        centroids = np.unique(updated)
    centroids = centroids.astype(np.float32)
    return centroids, assign(values.astype(np.float32), centroids)


def uniform_levels(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Plain linear (uniform) quantization for comparison: k evenly spaced levels over [min, max]."""
    values = np.asarray(values, dtype=np.float32).ravel()
    if values.size == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    levels = np.linspace(values.min(), values.max(), k).astype(np.float32)
    return levels, assign(values, levels)


@dataclass
class LayerCode:
    """One layer's weight sharing: sorted codebook and a cluster index per surviving weight."""

    codebook: torch.Tensor  # float32 [K]
    labels: torch.Tensor  # int64, same shape as the weight; -1 where pruned


class SharedWeights(TrainHook):
    """Per-layer codebooks tied to a model's weights; as a hook, fine-tunes the centroids."""

    def __init__(self, model: nn.Module, masks: Masks, bits: dict[str, int], init: str = "linear",
                 method: str = "kmeans", iters: int = 100, seed: int = 0):
        self.masks = masks
        self.modules = masks.modules
        self.codes: dict[str, LayerCode] = {}
        for name, module in self.modules.items():
            if not 1 <= bits[name] <= 8:
                raise UserError(f"{name}: weight bits must be 1..8, got {bits[name]}")
            self.codes[name] = self._cluster(module.weight.detach(), masks.masks[name], 2 ** bits[name],
                                             init, method, iters, seed)
        self.snap()

    def adopt(self, codes: dict[str, LayerCode]) -> None:
        """Use `codes` (e.g. rank 0's in a data-parallel run) and snap the weights to them."""
        self.codes = codes
        self.snap()

    @staticmethod
    def _cluster(weight, mask, k, init, method, iters, seed) -> LayerCode:
        alive = weight[mask].numpy()
        if method == "kmeans":
            centroids, idx = kmeans_1d(alive, k, init, iters, seed)
        elif method == "uniform":
            centroids, idx = uniform_levels(alive, k)
        else:
            raise UserError(f"quantization method {method!r}: expected kmeans or uniform")
        labels = torch.full(weight.shape, -1, dtype=torch.int64)
        labels[mask] = torch.from_numpy(idx.astype(np.int64))
        return LayerCode(torch.from_numpy(centroids), labels)

    @torch.no_grad()
    def snap(self) -> None:
        """Set every surviving weight to its centroid and every pruned weight to zero."""
        for name, module in self.modules.items():
            code = self.codes[name]
            alive = code.labels >= 0
            dense = torch.zeros_like(module.weight)
            dense[alive] = code.codebook[code.labels[alive]]
            module.weight.copy_(dense)

    def after_backward(self, model: nn.Module) -> None:
        """Replace each weight's gradient by the summed gradient of its cluster (pruned: zero)."""
        for name, module in self.modules.items():
            grad, code = module.weight.grad, self.codes[name]
            if grad is None:
                continue
            alive = code.labels >= 0
            sums = torch.zeros(len(code.codebook), dtype=grad.dtype).index_add_(0, code.labels[alive], grad[alive])
            shared = torch.zeros_like(grad)
            shared[alive] = sums[code.labels[alive]]
            grad.copy_(shared)

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        """Read the moved centroids back from the weights and re-snap (guards against float drift)."""
        for name, module in self.modules.items():
            code = self.codes[name]
            alive = code.labels >= 0
            counts = torch.bincount(code.labels[alive], minlength=len(code.codebook)).clamp_min(1)
            sums = torch.zeros(len(code.codebook)).index_add_(0, code.labels[alive], module.weight[alive])
            code.codebook = sums / counts
        self.snap()

    def bits(self) -> dict[str, int]:
        """Bits needed per weight index for each layer's codebook size."""
        return {n: max(1, int(np.ceil(np.log2(max(len(c.codebook), 2))))) for n, c in self.codes.items()}
