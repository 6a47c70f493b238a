"""Roofline models of a CPU and a GPU: time = max(FLOPs / peak FLOP/s, bytes / memory bandwidth).

Two variants per platform:
- roofline: spec-sheet peaks, so a lower bound on any real kernel's time;
- sustained: `overhead + max(FLOPs / (compute_eff x peak), bytes / (bw_eff x bandwidth))`, where the
  bandwidth efficiency and the per-call overhead of each kernel (dense GEMV/GEMM, sparse CSR) are fitted,
  one pair per platform and kernel, to the nine measured batch-1 times EIE reports (fit_sustained
  recomputes them), and compute_eff is an assumption (only batch-N runs reach it).

Traffic counts every byte once (perfect cache reuse within a call): dense = the weights plus B input and
B output vectors; sparse CSR = per nonzero a value and a 32-bit column index, a row pointer per output,
plus the vectors. Values are fp32 (4 bytes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..errors import UserError
from .baselines import LAYER_ORDER, MEASURED_US
from .eie_paper import BENCHMARKS
from .netspecs import LayerShape, fc

VALUE_BYTES = 4
INDEX_BYTES = 4
SPARSE_BYTES_PER_NONZERO = VALUE_BYTES + INDEX_BYTES


@dataclass(frozen=True)
class Kernel:
    """A kernel's sustained behaviour: fraction of peak bandwidth and of peak FLOP/s, fixed cost per call."""

    bw_eff: float
    compute_eff: float
    overhead_s: float


@dataclass(frozen=True)
class Platform:
    """A processor: peak fp32 FLOP/s, memory bandwidth (B/s), last-level cache, area, power as measured
    under load (Table V) and TDP, and its dense and sparse kernels. Where `cache_bw` is known, a call
    whose bytes fit the last-level cache streams at that bandwidth instead (warm repeated calls)."""

    name: str
    kind: str
    node: str
    peak_flops: float
    mem_bw: float
    llc_bytes: int | None
    area_mm2: float | None
    power_w: float | None
    tdp_w: float | None
    dense: Kernel
    sparse: Kernel
    source: str = ""
    cache_bw: float | None = None

    def kernel(self, name: str) -> Kernel:
        """The 'dense' or 'sparse' kernel."""
        if name not in ("dense", "sparse"):
            raise UserError(f"kernel must be 'dense' or 'sparse', got {name!r}")
        return getattr(self, name)

    @property
    def ridge_flops_per_byte(self) -> float:
        """Arithmetic intensity where the roofline turns from memory- to compute-bound."""
        return self.peak_flops / self.mem_bw


# Compute efficiencies are assumptions: large GEMMs reach roughly 70% of peak; sparse kernels far less.
GEMM_EFF, SPARSE_COMPUTE_EFF = 0.7, 0.1

I7_5930K = Platform(
    "Core i7-5930K", "cpu", "22 nm",
    peak_flops=6 * 3.5e9 * 32,  # 6 Haswell-E cores x 3.5 GHz x (2 FMA units x 8 fp32 lanes x 2)
    mem_bw=4 * 2133e6 * 8,  # four DDR4-2133 channels x 8 bytes
    llc_bytes=15 * 2**20, area_mm2=356, power_w=73, tdp_w=140,
    dense=Kernel(bw_eff=0.2312, compute_eff=GEMM_EFF, overhead_s=0.0),
    sparse=Kernel(bw_eff=0.1415, compute_eff=SPARSE_COMPUTE_EFF, overhead_s=25.8e-6),
    source="Intel spec sheet (cores, clock, AVX2, DDR4-2133 x 4); area and power: EIE Table V",
)
TITAN_X = Platform(
    "Titan X", "gpu", "28 nm",
    peak_flops=3072 * 2 * 1.075e9,  # 3072 CUDA cores x FMA x 1.075 GHz boost
    mem_bw=384 / 8 * 7.01e9,  # 384-bit GDDR5 at 7 Gb/s per pin
    llc_bytes=3 * 2**20, area_mm2=601, power_w=159, tdp_w=250,
    dense=Kernel(bw_eff=0.8817, compute_eff=GEMM_EFF, overhead_s=22.8e-6),
    sparse=Kernel(bw_eff=0.5836, compute_eff=SPARSE_COMPUTE_EFF, overhead_s=8.8e-6),
    source="NVIDIA spec sheet (GM200: 3072 cores, 1.075 GHz boost, 336 GB/s); area and power: EIE Table V",
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
                    None, ideal, replace(ideal, compute_eff=SPARSE_COMPUTE_EFF),
                    source=f"measured: {probe.get('how', 'probe')}", cache_bw=cache)


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


def _bandwidth(plat: Platform, t: Traffic) -> float:
    if plat.cache_bw and plat.llc_bytes and t.bytes <= plat.llc_bytes:
        return plat.cache_bw
    return plat.mem_bw


def roofline_time(plat: Platform, t: Traffic) -> float:
    """Lower bound: max(FLOPs / peak, bytes / bandwidth), in seconds."""
    return max(t.flops / plat.peak_flops, t.bytes / _bandwidth(plat, t))


def sustained_time(plat: Platform, t: Traffic, kernel: str = "dense") -> float:
    """Overhead plus the roofline at the kernel's sustained efficiencies, in seconds."""
    k = plat.kernel(kernel)
    return k.overhead_s + max(t.flops / (k.compute_eff * plat.peak_flops), t.bytes / (k.bw_eff * _bandwidth(plat, t)))


def bound(plat: Platform, t: Traffic) -> str:
    """'compute' or 'memory': which roof limits `t` on `plat`."""
    return "compute" if t.intensity > plat.ridge_flops_per_byte else "memory"


def benchmark_shapes() -> list[LayerShape]:
    """EIE's nine benchmark layers as FC shapes with their weight densities."""
    return [fc(b.name, b.inputs, b.outputs, b.weight_density) for b in BENCHMARKS]


def fit_sustained(plat: Platform, kernel: str, which: str) -> Kernel:
    """Fit (bw_eff, overhead) of `kernel` to the paper's measured batch-1 times on `which` ('cpu'|'gpu'):
    least squares on log(predicted / measured) over the nine layers, overhead >= 0."""
    from scipy.optimize import least_squares

    shapes = benchmark_shapes()
    nbytes = np.array([traffic(s, 1, kernel).bytes for s in shapes])
    meas = np.array(MEASURED_US[(which, kernel)]) * 1e-6

    def resid(p):
        return np.log((p[0] * 1e-6 + nbytes / (p[1] * 1e9)) / meas)

    fit = least_squares(resid, x0=[5.0, np.median(nbytes / meas) / 1e9], bounds=([0, 0.1], [1e4, 1e4]))
    return Kernel(bw_eff=float(fit.x[1] * 1e9 / plat.mem_bw), compute_eff=plat.kernel(kernel).compute_eff,
                  overhead_s=float(fit.x[0] * 1e-6))


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
            meas = MEASURED_US[(which, kernel)][LAYER_ORDER.index(shape.name)]
            rec.update({f"{kernel}_bytes": t.bytes, f"{kernel}_roofline_us": roof * 1e6,
                        f"{kernel}_sustained_us": sus * 1e6, f"{kernel}_measured_us": meas,
                        f"{kernel}_measured_over_roofline": meas / (roof * 1e6),
                        f"{kernel}_sustained_over_measured": sus * 1e6 / meas})
        records.append(rec)
    return records
