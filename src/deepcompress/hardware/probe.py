"""Measure this machine's roofline: fp32 GEMM FLOP/s and memory-copy bandwidth (numpy only), and time a
dense batch-1 GEMV so the roofline's prediction can be checked on hardware we actually have.

Run from a benchmark (benchmarks/hardware_sweeps.py), not from tests: it takes a few seconds.
"""

from __future__ import annotations

import os
import platform as _platform
import time

import numpy as np


def _best(fn, repeats: int) -> float:
    fn()  # warm up: page faults, BLAS thread start
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def gemm_flops(n: int = 2048, repeats: int = 3) -> float:
    """Best fp32 FLOP/s of an n x n x n matrix product (2 n^3 FLOPs)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    return 2.0 * n**3 / _best(lambda: np.matmul(a, b, out=out), repeats)


def copy_bandwidth(megabytes: int = 256, repeats: int = 3) -> float:
    """Best bytes/s of copying a `megabytes` array, counting the read and the write."""
    src = np.ones(megabytes * 2**20 // 4, dtype=np.float32)
    dst = np.empty_like(src)
    return 2.0 * src.nbytes / _best(lambda: np.copyto(dst, src), repeats)


def read_bandwidth(megabytes: float = 256, repeats: int = 3) -> float:
    """Best bytes/s of streaming a `megabytes` fp32 array through a dot product (reads only)."""
    a = np.ones(int(megabytes * 2**20) // 4, dtype=np.float32)
    return a.nbytes / _best(lambda: np.dot(a, a), repeats)


def llc_bytes() -> int | None:
    """Size of the last-level cache from Linux sysfs, or None where unknown."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        sizes = []
        for entry in sorted(e for e in os.listdir(base) if e.startswith("index")):
            with open(os.path.join(base, entry, "size")) as f:
                text = f.read().strip()
            sizes.append(int(text[:-1]) * {"K": 2**10, "M": 2**20}[text[-1]] if text[-1] in "KM" else int(text))
        return max(sizes) if sizes else None
    except (OSError, ValueError, KeyError):
        return None


def gemv_seconds(inputs: int, outputs: int, repeats: int = 5) -> float:
    """Best time of a dense fp32 (outputs x inputs) matrix times a vector."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((outputs, inputs), dtype=np.float32)
    x, y = rng.standard_normal(inputs, dtype=np.float32), np.empty(outputs, dtype=np.float32)
    return _best(lambda: np.matmul(w, x, out=y), repeats)


def measure_machine(gemm_n: int = 2048, copy_mb: int = 256) -> dict:
    """This machine's measured peaks, as from_probe (roofline.py) reads them (single BLAS thread unless
    the caller's environment says otherwise)."""
    return {
        "gemm_flops": gemm_flops(gemm_n),
        "copy_bandwidth": copy_bandwidth(copy_mb),
        "read_bandwidth": read_bandwidth(copy_mb),
        "cache_copy_bandwidth": copy_bandwidth(2),
        "cache_read_bandwidth": read_bandwidth(2),
        "llc_bytes": llc_bytes(),
        "cpus": os.cpu_count(),
        "machine": _platform.processor() or _platform.machine(),
        "how": f"numpy {np.__version__}: best of 3 fp32 {gemm_n}^3 matmul; best of 3 np.copyto of {copy_mb} MB "
               "and of 2 MB (read + write bytes); best of 3 fp32 dot of such an array with itself (read bytes); "
               "memory and cache bandwidth: the larger of copy and read",
    }
