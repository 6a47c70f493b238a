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
CALLS = 9  # timed calls per candidate, each after WARM_CALLS untimed ones; the median is compared
WARM_CALLS = 3
WARM_UNTIL_S = 2e-3  # a candidate whose last call took longer is its own steady state: no warm-up calls
# this thread's CPU time, not wall time: IntLinear runs on one thread, and on a shared machine a time slice
# given to another process inside one timed call made a layout look 8x slower (NT-Wd rows-stored 5,626 us
# against 681 us for blocks, measured at load) and could decide the pick
CLOCK = time.thread_time
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


def fastest(candidates: dict, x: np.ndarray, calls: int = CALLS) -> tuple[str, dict]:
    """(name of the fastest, {name: median CPU-time microseconds}) of built layers `candidates`
    {name: layer} called on x (one vector when x has one row): `calls` rounds, each timing every
    candidate once after WARM_CALLS untimed calls (none once its calls take over WARM_UNTIL_S), the
    steady state of repeated calls that the benchmarks' "warm" measures (runtime_methods.Timer) and the
    cost model was fitted to; not a layer run right after others flushed the caches. Timed right after
    the other candidates instead (one call each in turn, the design before session 10), NT-Wd's blocks
    looked 5% faster than quads (233-472 against 245-509 us) where the benchmark's steady state gave
    quads 1.41x (117 against 166 us); the rounds still spread a shared machine's drifts over all
    candidates."""
    arg = x[0] if x.shape[0] == 1 else x
    names = list(candidates)
    times = {name: [] for name in names}
    for _ in range(calls):
        for name in names:
            if not times[name] or times[name][-1] < WARM_UNTIL_S:
                for _ in range(WARM_CALLS):
                    candidates[name](arg)
            t = CLOCK()
            candidates[name](arg)
            times[name].append(CLOCK() - t)
    medians = {name: float(np.median(v)) * 1e6 for name, v in times.items()}
    return min(medians, key=medians.get), medians
