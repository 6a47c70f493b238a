"""Fully connected layer workloads for the hardware models: a spec, and a random layer drawn from it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import UserError


@dataclass(frozen=True)
class LayerSpec:
    """A fully connected layer: `inputs` x `outputs`, the fraction of weights and of input activations
    that are nonzero, and the seed that draws a concrete random layer."""

    inputs: int
    outputs: int
    weight_density: float
    act_density: float
    seed: int = 0
    name: str = ""

    def __post_init__(self):
        if self.inputs < 1 or self.outputs < 1:
            raise UserError(f"layer needs at least one input and one output, got {self.inputs} x {self.outputs}")
        for what, d in (("weight density", self.weight_density), ("activation density", self.act_density)):
            if not 0.0 <= d <= 1.0:
                raise UserError(f"{what} must lie in [0, 1], got {d}")

    @property
    def label(self) -> str:
        """The name, or the shape and densities when unnamed."""
        return self.name or f"{self.inputs}x{self.outputs} w{self.weight_density:g} a{self.act_density:g}"


def parse_layer_spec(text: str, seed: int = 0) -> LayerSpec:
    """A LayerSpec from 'in,out,weight_density,act_density' (densities as fractions or percentages like 9%)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4:
        raise UserError(f"layer spec {text!r}: expected 'in,out,weight_density,act_density'")
    try:
        inputs, outputs = int(parts[0]), int(parts[1])
        dens = [float(p[:-1]) / 100 if p.endswith("%") else float(p) for p in parts[2:]]
    except ValueError:
        raise UserError(f"layer spec {text!r}: sizes must be integers and densities numbers") from None
    return LayerSpec(inputs, outputs, dens[0], dens[1], seed)


def _bernoulli_positions(n: int, density: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions in [0, n) each chosen independently with probability `density`."""
    if density <= 0.0 or n == 0:
        return np.zeros(0, dtype=np.int64)
    if density >= 1.0:
        return np.arange(n, dtype=np.int64)
    chunks, end = [], -1
    expected = n * density
    while end < n:
        gaps = rng.geometric(density, size=int(expected * 1.02 + 6 * np.sqrt(expected) + 16))
        pos = end + np.cumsum(gaps)
        chunks.append(pos)
        end = int(pos[-1])
    pos = np.concatenate(chunks)
    return pos[pos < n]


def random_layer(spec: LayerSpec) -> tuple[sp.csc_matrix, np.ndarray]:
    """A uniform random layer for `spec`: the weights as CSC (rows = outputs, columns = inputs), each
    weight nonzero with probability weight_density; and an input vector with exactly
    round(act_density x inputs) positive entries at uniformly chosen positions."""
    rng = np.random.default_rng(spec.seed)
    pos = _bernoulli_positions(spec.inputs * spec.outputs, spec.weight_density, rng)
    cols, rows = np.divmod(pos, spec.outputs)  # column-major order gives CSC with sorted rows
    indptr = np.zeros(spec.inputs + 1, dtype=np.int64)
    np.cumsum(np.bincount(cols, minlength=spec.inputs), out=indptr[1:])
    magnitude = rng.uniform(0.05, 1.0, size=pos.size)
    data = (magnitude * rng.choice([-1.0, 1.0], size=pos.size)).astype(np.float32)
    weights = sp.csc_matrix((data, rows.astype(np.int32), indptr), shape=(spec.outputs, spec.inputs))
    k = int(round(spec.act_density * spec.inputs))
    acts = np.zeros(spec.inputs, dtype=np.float32)
    acts[rng.choice(spec.inputs, size=k, replace=False)] = rng.uniform(0.05, 1.0, size=k)
    return weights, acts
