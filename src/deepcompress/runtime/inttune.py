"""The int layout a layer gets when the cost model cannot tell its best few apart: time them and keep the fastest.

The cost model (intpolicy) is a two-term fit whose error on EIE's nine layers is up to 2x per layout, and
on several layers two or three layouts are predicted within a few tens of percent of each other (NT-We:
rows-stored, blocks and quads; benchmarks/results/runtime_summary.json showed it picking a layout 1.18-1.28x
slower than the fastest measured one). So the model only shortlists: every layout predicted within
SHORTLIST_RATIO of the best, at most SHORTLIST_MAX of them; when more than one is left each is built and
timed on a synthetic input of the expected density and batch, and the fastest median is kept. Every
layout and path gives the same integers (quantize.reference_forward), so the pick changes speed only,
never outputs. The measured times are kept with the layer (IntLinear.why).
"""

from __future__ import annotations

import time

import numpy as np

SHORTLIST_RATIO = 1.5  # the model's error between close layouts (see above)
SHORTLIST_MAX = 3
CALLS = 5  # timed calls per candidate after one untimed call; the median is compared
MAX_BATCH = 64  # a larger batch is timed on this many samples (the batched kernels step by 64)


def shortlist(predicted: dict) -> list[str]:
    """The layouts predicted within SHORTLIST_RATIO of the fastest prediction, fastest first, at most
    SHORTLIST_MAX."""
    best = min(predicted.values())
    names = sorted((n for n, v in predicted.items() if v <= SHORTLIST_RATIO * best), key=predicted.get)
    return names[:SHORTLIST_MAX]


def probe_input(n_cols: int, act_density: float | None, batch: int, seed: int = 0) -> np.ndarray:
    """A float32 (min(batch, MAX_BATCH), n_cols) input whose rows each have round(act_density x n_cols)
    positive entries (all positive when act_density is None), like a post-ReLU activation."""
    rng = np.random.default_rng(seed)
    n = max(1, min(int(batch), MAX_BATCH))
    x = rng.uniform(0.05, 1.0, (n, n_cols)).astype(np.float32)
    if act_density is not None:
        k = int(round(float(act_density) * n_cols))
        order = np.argsort(rng.random((n, n_cols)), axis=1)
        np.put_along_axis(x, order[:, k:], 0.0, axis=1)
    return x


def median_us(fn, calls: int = CALLS) -> float:
    """Median wall-clock microseconds of `calls` calls of fn after one untimed call."""
    fn()
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e6


def fastest(candidates: dict, x: np.ndarray) -> tuple[str, dict]:
    """(name of the fastest, {name: median microseconds}) of built layers `candidates` {name: layer}
    called on x (one vector when x has one row)."""
    arg = x[0] if x.shape[0] == 1 else x
    times = {name: median_us(lambda layer=layer: layer(arg)) for name, layer in candidates.items()}
    return min(times, key=times.get), times
