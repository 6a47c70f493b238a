"""Roofline models of a CPU and a GPU: time = max(FLOPs / peak FLOP/s, bytes / memory bandwidth), with the
last-level cache (LLC) as a second memory level.

Two variants per platform:
- roofline: spec-sheet peaks, so a lower bound on any real kernel's time;
- sustained: `overhead + max(FLOPs / (compute_eff x peak), LLC bytes / LLC rate + DRAM bytes / (bw_eff x
  bandwidth))`. The DRAM efficiency, the LLC streaming rate and the per-call overhead of each kernel (dense
  GEMV/GEMM, sparse CSR) are fitted, one set per platform and kernel, to the nine measured batch-1 times EIE
  reports (fit_sustained recomputes them: it minimises the largest relative error over the nine layers);
  compute_eff is an assumption (only batch-N runs reach it).

Cache. A benchmark calls a layer repeatedly, so what the LLC holds between calls is served from it. Which
bytes those are depends on the replacement policy (Platform.llc_policy): 'lru' keeps a working set that fits
and nothing of one that does not (a cyclic stream larger than an LRU cache misses every time); 'adaptive'
(thrash-resistant insertion, Qureshi et al., ISCA 2007, which Intel's L3 has used since Ivy Bridge: H. Wong,
"Intel Ivy Bridge cache replacement policy", 2013) keeps up to the LLC's capacity of any working set; None
leaves the LLC out (the Titan X's 3 MB L2 is smaller than every dense benchmark layer).

Traffic counts every byte once (perfect cache reuse within a call): dense = the weights plus B input and
B output vectors; sparse CSR = per nonzero a value and a 32-bit column index, a row pointer per output,
plus the vectors. Values are fp32 (4 bytes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..errors import UserError
from .eie_tables import BENCHMARKS, MEASURED_US, measured_us, table_v_record
from .netspecs import LayerShape, benchmark_fc

VALUE_BYTES = 4
INDEX_BYTES = 4


@dataclass(frozen=True)
class Kernel:
    """A kernel's sustained behaviour: fraction of peak DRAM bandwidth and of peak FLOP/s, fixed cost per
    call, and its streaming rate (B/s) on bytes the last-level cache serves (None: the platform's cache_bw
    times bw_eff, or the DRAM rate when that is unknown)."""

    bw_eff: float
    compute_eff: float
    overhead_s: float
    llc_bw: float | None = None


@dataclass(frozen=True)
class Platform:
    """A processor: peak fp32 FLOP/s, memory bandwidth (B/s), last-level cache (bytes, replacement policy,
    and its bandwidth where measured), area, power as measured under load (Table V), and its dense and
    sparse kernels. See the module docstring for how the LLC serves repeated calls."""

    name: str
    kind: str
    node: str
    peak_flops: float
    mem_bw: float
    llc_bytes: int | None
    area_mm2: float | None
    power_w: float | None
    dense: Kernel
    sparse: Kernel
    source: str = ""
    cache_bw: float | None = None
    llc_policy: str | None = None

    def __post_init__(self):
        if self.llc_policy not in (None, "lru", "adaptive"):
            raise UserError(f"LLC policy must be None, 'lru' or 'adaptive', got {self.llc_policy!r}")

    def kernel(self, name: str) -> Kernel:
        """The 'dense' or 'sparse' kernel."""
        if name not in ("dense", "sparse"):
            raise UserError(f"kernel must be 'dense' or 'sparse', got {name!r}")
        return getattr(self, name)

    @property
    def ridge_flops_per_byte(self) -> float:
        """Arithmetic intensity where the roofline turns from memory- to compute-bound."""
        return self.peak_flops / self.mem_bw


def _table_v(name: str) -> dict:
    """Process node, die area and power under load of the platform `name` as EIE's Table V gives them."""
    row = table_v_record(name)
    return {k: row[k] for k in ("node", "area_mm2", "power_w")}


# Compute efficiencies are assumptions: large GEMMs reach roughly 70% of peak; sparse kernels far less.
GEMM_EFF, SPARSE_COMPUTE_EFF = 0.7, 0.1

# Each kernel's DRAM efficiency, LLC rate and per-call overhead below are fit_sustained's result (minimax over
# EIE's nine measured batch-1 times; a test recomputes them). On the Titan X the dense fit runs into the DRAM
# peak (bw_eff = 1): the nine times cannot separate a per-call cost from a bandwidth there.

I7_5930K = Platform(
    "Core i7-5930K", "cpu", **_table_v("Core i7-5930K"),
    peak_flops=6 * 3.5e9 * 32,  # 6 Haswell-E cores x 3.5 GHz x (2 FMA units x 8 fp32 lanes x 2)
    mem_bw=4 * 2133e6 * 8,  # four DDR4-2133 channels x 8 bytes
    llc_bytes=15 * 2**20,
    dense=Kernel(bw_eff=0.2200, compute_eff=GEMM_EFF, overhead_s=0.0, llc_bw=18.72e9),
    sparse=Kernel(bw_eff=0.1105, compute_eff=SPARSE_COMPUTE_EFF, overhead_s=54.3e-6, llc_bw=11.02e9),
    source="Intel spec sheet (cores, clock, AVX2, 15 MB L3, DDR4-2133 x 4); area and power: EIE Table V",
    llc_policy="adaptive",
)
TITAN_X = Platform(
    "Titan X", "gpu", **_table_v("Titan X"),
    peak_flops=3072 * 2 * 1.075e9,  # 3072 CUDA cores x FMA x 1.075 GHz boost
    mem_bw=384 / 8 * 7.01e9,  # 384-bit GDDR5 at 7 Gb/s per pin
    llc_bytes=3 * 2**20,
    dense=Kernel(bw_eff=1.0, compute_eff=GEMM_EFF, overhead_s=25.6e-6),
    sparse=Kernel(bw_eff=0.5479, compute_eff=SPARSE_COMPUTE_EFF, overhead_s=8.9e-6),
    source="NVIDIA spec sheet (GM200: 3072 cores, 1.075 GHz boost, 336 GB/s, 3 MB L2); area and power: EIE Table V",
)
PLATFORMS: dict[str, Platform] = {"cpu": I7_5930K, "gpu": TITAN_X}


def platform(name: str) -> Platform:
    """The paper's 'cpu' (i7-5930K) or 'gpu' (Titan X)."""
    try:
        return PLATFORMS[name]
    except KeyError:
        raise UserError(f"no platform {name!r}; known: {', '.join(PLATFORMS)}") from None


def from_probe(probe: dict, name: str = "this machine") -> Platform:
    """A platform from a measured probe (probe.measure_machine): its GEMM FLOP/s and its best streaming
    bandwidths (copy or read; large array and cache-sized array) are taken as the peaks, so its kernels
    have efficiency 1 and no overhead."""
    ideal = Kernel(1.0, 1.0, 0.0)
    mem = max(probe["copy_bandwidth"], probe.get("read_bandwidth", 0.0))
    cache = max(probe.get("cache_copy_bandwidth", 0.0), probe.get("cache_read_bandwidth", 0.0)) or None
    return Platform(name, "cpu", "?", float(probe["gemm_flops"]), float(mem), probe.get("llc_bytes"), None, None,
                    ideal, replace(ideal, compute_eff=SPARSE_COMPUTE_EFF),
                    source=f"measured: {probe.get('how', 'probe')}", cache_bw=cache, llc_policy="lru")


@dataclass(frozen=True)
class Traffic:
    """FLOPs and DRAM bytes of one call."""

    flops: float
    bytes: float

    @property
    def intensity(self) -> float:
        """FLOPs per byte."""
        return self.flops / self.bytes if self.bytes else math.inf


def traffic(layer: LayerShape, batch: int = 1, kernel: str = "dense", value_bytes: int = VALUE_BYTES) -> Traffic:
    """FLOPs (2 per multiply-accumulate) and bytes of `layer` at `batch` images with a dense or sparse kernel."""
    if batch < 1:
        raise UserError(f"batch must be at least 1, got {batch}")
    vectors = value_bytes * batch * (layer.input_values + layer.output_values)
    if kernel == "dense":
        return Traffic(2.0 * batch * layer.macs, value_bytes * layer.weights + vectors)
    if kernel == "sparse":
        nnz = layer.nonzero_weights
        return Traffic(2.0 * batch * nnz * layer.positions,
                       (value_bytes + INDEX_BYTES) * nnz + INDEX_BYTES * (layer.out_channels + 1) + vectors)
    raise UserError(f"kernel must be 'dense' or 'sparse', got {kernel!r}")


def llc_hit_bytes(plat: Platform, nbytes: float) -> float:
    """Bytes of a repeated call moving `nbytes` that the last-level cache serves (see the module docstring)."""
    if not plat.llc_bytes or plat.llc_policy is None:
        return 0.0
    if plat.llc_policy == "lru":
        return float(nbytes) if nbytes <= plat.llc_bytes else 0.0
    return float(min(nbytes, plat.llc_bytes))


def roofline_time(plat: Platform, t: Traffic) -> float:
    """Lower bound: max(FLOPs / peak, LLC bytes / LLC bandwidth + DRAM bytes / DRAM bandwidth), in seconds.
    Without a measured LLC bandwidth every byte is charged at the DRAM peak."""
    hits = llc_hit_bytes(plat, t.bytes) if plat.cache_bw else 0.0
    memory = (hits / plat.cache_bw if hits else 0.0) + (t.bytes - hits) / plat.mem_bw
    return max(t.flops / plat.peak_flops, memory)


def _llc_rate(plat: Platform, k: Kernel) -> float:
    if k.llc_bw:
        return k.llc_bw
    return (plat.cache_bw or plat.mem_bw) * k.bw_eff


def sustained_time(plat: Platform, t: Traffic, kernel: str = "dense") -> float:
    """Overhead plus the roofline at the kernel's sustained rates (LLC hits at its LLC rate), in seconds."""
    k = plat.kernel(kernel)
    hits = llc_hit_bytes(plat, t.bytes)
    memory = (hits / _llc_rate(plat, k) if hits else 0.0) + (t.bytes - hits) / (k.bw_eff * plat.mem_bw)
    return k.overhead_s + max(t.flops / (k.compute_eff * plat.peak_flops), memory)


def bound(plat: Platform, t: Traffic) -> str:
    """'compute' or 'memory': which roof limits `t` on `plat`."""
    return "compute" if t.intensity > plat.ridge_flops_per_byte else "memory"


def benchmark_shapes() -> list[LayerShape]:
    """EIE's nine benchmark layers as FC shapes with their weight densities."""
    return [benchmark_fc(b.name) for b in BENCHMARKS]


def fit_sustained(plat: Platform, kernel: str, which: str) -> Kernel:
    """Fit the DRAM efficiency, the LLC rate (where the LLC serves any of the nine layers) and the per-call
    overhead of `kernel` to the paper's measured batch-1 times on `which` ('cpu'|'gpu').

    Criterion: the largest |predicted / measured - 1| over the nine layers is minimised, a linear program in
    (overhead, seconds per LLC byte, seconds per DRAM byte) under the physical bounds: overhead >= 0, DRAM
    no faster than its peak, the LLC no slower than DRAM. Among the minimisers the one with the smallest sum
    of |predicted / measured - 1| is taken."""
    from scipy.optimize import linprog

    shapes = benchmark_shapes()
    nbytes = np.array([traffic(s, 1, kernel).bytes for s in shapes])
    hits = np.array([llc_hit_bytes(plat, b) for b in nbytes])
    meas = np.array(MEASURED_US[(which, kernel)]) * 1e-6
    use_llc = bool(hits.any())
    # unknowns in us, ps per LLC byte, ps per DRAM byte; row i of `a` x = predicted / measured of layer i
    cols = [np.ones_like(nbytes) * 1e-6] + ([hits * 1e-12] if use_llc else []) + [(nbytes - hits) * 1e-12]
    a = np.column_stack(cols) / meas[:, None]
    n, nv = a.shape
    bounds = [(0, None)] * (nv - 1) + [(1e12 / plat.mem_bw, None)]
    extra_a = [np.r_[0.0, 1.0, -1.0]] if use_llc else []  # ps per LLC byte <= ps per DRAM byte

    def solve(cost, dev_cols, dev_bounds):
        a_ub = np.vstack([np.hstack([a, -dev_cols]), np.hstack([-a, -dev_cols])]
                         + [np.r_[row, np.zeros(dev_cols.shape[1])] for row in extra_a])
        b_ub = np.r_[np.ones(n), -np.ones(n), np.zeros(len(extra_a))]
        res = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds + dev_bounds, method="highs")
        if not res.success:
            raise UserError(f"fit of {which} {kernel} failed: {res.message}")
        return res.x

    z = solve(np.r_[np.zeros(nv), 1.0], np.ones((n, 1)), [(0, None)])[-1]  # one deviation bound for all
    x = solve(np.r_[np.zeros(nv), np.ones(n)], np.eye(n), [(0, z * (1 + 1e-9) + 1e-12)] * n)[:nv]
    return Kernel(bw_eff=float(1e12 / x[-1] / plat.mem_bw), compute_eff=plat.kernel(kernel).compute_eff,
                  overhead_s=float(x[0] * 1e-6), llc_bw=_per_byte_to_rate(x[1]) if use_llc else None)


def _per_byte_to_rate(ps_per_byte: float) -> float:
    """Bytes/s from picoseconds per byte (infinite when the fit made the bytes free)."""
    return float(1e12 / ps_per_byte) if ps_per_byte > 0 else float("inf")


def paper_comparison(which: str) -> list[dict]:
    """Predicted batch-1 times of the nine layers on the paper's 'cpu' or 'gpu', dense and sparse, beside
    the measured ones: ratios measured / roofline (>= 1 for a true lower bound) and sustained / measured."""
    plat = platform(which)
    records = []
    for shape in benchmark_shapes():
        rec = {"layer": shape.name, "platform": plat.name}
        for kernel in ("dense", "sparse"):
            t = traffic(shape, 1, kernel)
            roof, sus = roofline_time(plat, t), sustained_time(plat, t, kernel)
            meas = measured_us(which, kernel, shape.name)
            rec.update({f"{kernel}_bytes": t.bytes, f"{kernel}_llc_hit_bytes": llc_hit_bytes(plat, t.bytes),
                        f"{kernel}_roofline_us": roof * 1e6,
                        f"{kernel}_sustained_us": sus * 1e6, f"{kernel}_measured_us": meas,
                        f"{kernel}_measured_over_roofline": meas / (roof * 1e6),
                        f"{kernel}_sustained_over_measured": sus * 1e6 / meas})
        records.append(rec)
    return records
