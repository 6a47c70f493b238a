"""CPU/GPU roofline: the min(compute, memory) closed form, traffic counts, the fitted sustained model
against EIE's measured baselines (tolerances stated per test), and Table V's CPU/GPU rows."""

import math
from dataclasses import replace

import pytest

from deepcompress.errors import UserError
from deepcompress.hardware.eie_tables import MEASURED_US, TABLE_V, TABLE_V_LAYER, measured_us
from deepcompress.hardware.netspecs import benchmark_fc, fc
from deepcompress.hardware.roofline import (I7_5930K, PLATFORMS, TITAN_X, Kernel, Platform, Traffic, bound,
                                            fit_sustained, from_probe, llc_hit_bytes, paper_comparison,
                                            roofline_time, sustained_time, traffic)

TOY = Platform("toy", "cpu", "-", peak_flops=100.0, mem_bw=10.0, llc_bytes=None, area_mm2=1.0, power_w=2.0,
               dense=Kernel(0.5, 0.25, 1.0), sparse=Kernel(0.5, 0.25, 1.0))


def gmean(xs):
    xs = list(xs)
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def test_roofline_is_max_of_compute_and_memory_time():
    assert roofline_time(TOY, Traffic(1000, 10)) == 10.0  # compute: 1000 / 100
    assert roofline_time(TOY, Traffic(10, 1000)) == 100.0  # memory: 1000 / 10
    assert bound(TOY, Traffic(1000, 10)) == "compute" and bound(TOY, Traffic(10, 1000)) == "memory"
    assert TOY.ridge_flops_per_byte == 10.0
    # sustained: overhead + max(FLOPs / (0.25 x 100), bytes / (0.5 x 10))
    assert sustained_time(TOY, Traffic(1000, 10)) == 1.0 + 40.0
    assert sustained_time(TOY, Traffic(10, 1000), "sparse") == 1.0 + 200.0


def test_traffic_closed_forms():
    layer = fc("l", 300, 200, weight_density=0.1)
    t = traffic(layer, 4, "dense")
    assert t.flops == 2 * 4 * 300 * 200 and t.bytes == 4 * (300 * 200 + 4 * (300 + 200))
    s = traffic(layer, 4, "sparse")
    assert s.flops == 2 * 4 * 6000 and s.bytes == 8 * 6000 + 4 * 201 + 4 * 4 * 500
    with pytest.raises(UserError):
        traffic(layer, 0)
    with pytest.raises(UserError):
        traffic(layer, 1, "blocked")


def test_platform_peaks_from_spec_sheets():
    assert I7_5930K.peak_flops == pytest.approx(672e9) and I7_5930K.mem_bw == pytest.approx(68.26e9, rel=1e-3)
    assert TITAN_X.peak_flops == pytest.approx(6.6e12, rel=1e-3) and TITAN_X.mem_bw == pytest.approx(336.5e9, rel=1e-3)
    for plat, name in ((I7_5930K, "Core i7-5930K"), (TITAN_X, "Titan X")):
        _, area, power, *_ = TABLE_V[name]
        assert (plat.area_mm2, plat.power_w) == (area, power)


@pytest.mark.parametrize("which", ["cpu", "gpu"])
@pytest.mark.parametrize("kernel", ["dense", "sparse"])
def test_stored_sustained_constants_are_the_fit(which, kernel):
    plat = PLATFORMS[which]
    fit, stored = fit_sustained(plat, kernel, which), plat.kernel(kernel)
    assert fit.bw_eff == pytest.approx(stored.bw_eff, rel=0.01)
    assert fit.overhead_s == pytest.approx(stored.overhead_s, abs=0.3e-6)
    assert (fit.llc_bw is None) == (stored.llc_bw is None)
    if fit.llc_bw:
        assert fit.llc_bw == pytest.approx(stored.llc_bw, rel=0.01)
    assert fit.bw_eff <= 1 + 1e-9 and fit.overhead_s >= 0  # physical bounds of the fit


def test_llc_policies():
    big, small = 20 * 2**20, 10 * 2**20
    assert llc_hit_bytes(I7_5930K, small) == small  # fits the 15 MB L3: every byte from it on a repeated call
    assert llc_hit_bytes(I7_5930K, big) == 15 * 2**20  # thrash-resistant L3 keeps its capacity of a bigger set
    lru = replace(I7_5930K, llc_policy="lru")
    assert llc_hit_bytes(lru, small) == small and llc_hit_bytes(lru, big) == 0  # LRU: a cyclic stream misses
    assert llc_hit_bytes(TITAN_X, small) == 0  # the GPU's L2 is not modelled
    with pytest.raises(UserError):
        replace(I7_5930K, llc_policy="random")
    # sustained: LLC bytes at the LLC rate, the rest at the DRAM rate
    t = Traffic(1.0, big)
    k = I7_5930K.dense
    assert sustained_time(I7_5930K, t) == pytest.approx(
        15 * 2**20 / k.llc_bw + 5 * 2**20 / (k.bw_eff * I7_5930K.mem_bw))


def test_roofline_is_a_lower_bound_on_every_measured_time():
    for which in ("cpu", "gpu"):
        for r in paper_comparison(which):
            assert r["dense_measured_over_roofline"] >= 1 and r["sparse_measured_over_roofline"] >= 1


def test_sustained_model_against_the_measured_batch1_times():
    """The issue's tolerance, 30% per layer, holds for GPU dense, GPU sparse and CPU sparse. CPU dense misses
    it on three layers by 1.1 points (Alex-6 and NT-LSTM +31.1%, Alex-7 -31.1%; the other six within 23%):
    the fit minimises the largest error, so 31.1% is the best any setting of this model reaches (next
    test). Geometric mean within 10% everywhere."""
    for which in ("cpu", "gpu"):
        rows = paper_comparison(which)
        for kernel in ("dense", "sparse"):
            ratios = [r[f"{kernel}_sustained_over_measured"] for r in rows]
            assert abs(gmean(ratios) - 1) < 0.10
            if (which, kernel) != ("cpu", "dense"):
                assert all(abs(x - 1) < 0.30 for x in ratios), (which, kernel, ratios)
    ratios = {r["layer"]: r["dense_sustained_over_measured"] for r in paper_comparison("cpu")}
    missed = {name for name, x in ratios.items() if abs(x - 1) >= 0.30}
    assert missed == {"Alex-6", "Alex-7", "NT-LSTM"}
    assert all(abs(x - 1) < 0.312 for x in ratios.values())
    assert all(abs(ratios[name] - 1) < 0.23 for name in ratios if name not in missed)


def test_cache_model_narrows_the_best_cpu_dense_fit():
    """Minimax fits: the best possible largest error over the nine layers is 38.7% with every byte from DRAM,
    32.3% with an LRU L3 (the 16.4 MB layers then miss it entirely) and 31.1% with the thrash-resistant L3.
    The measurements bound any model of size alone: Alex-8 and VGG-8 (same shape) differ by 1.47x, and
    Alex-6 streams 2.25x Alex-7's bytes in 1.21x its time."""
    def best(plat):
        k = fit_sustained(plat, "dense", "cpu")
        p = replace(plat, dense=k)
        return max(abs(r["dense_sustained_over_measured"] - 1) for r in _comparison(p))

    assert best(replace(I7_5930K, llc_policy=None)) == pytest.approx(0.387, abs=0.002)
    assert best(replace(I7_5930K, llc_policy="lru")) == pytest.approx(0.323, abs=0.002)
    assert best(I7_5930K) == pytest.approx(0.311, abs=0.002)
    m = MEASURED_US[("cpu", "dense")]
    assert m[2] / m[5] > 1.46 and m[0] / m[1] < 1.22


def _comparison(plat):
    from deepcompress.hardware.roofline import benchmark_shapes

    out = []
    for shape in benchmark_shapes():
        meas = measured_us("cpu", "dense", shape.name)
        out.append({"layer": shape.name,
                    "dense_sustained_over_measured": sustained_time(plat, traffic(shape)) * 1e6 / meas})
    return out


def test_table_v_cpu_and_gpu_rows():
    shape = benchmark_fc(TABLE_V_LAYER)
    t = traffic(shape)
    for plat, name, tol in ((TITAN_X, "Titan X", 0.10), (I7_5930K, "Core i7-5930K", 0.50)):
        _, area, power, fps, fps_mm2, fpj = TABLE_V[name]
        ours = 1 / sustained_time(plat, t)
        assert 1 / roofline_time(plat, t) >= fps  # the bound is never slower than the measurement
        assert abs(ours / fps - 1) < tol and abs(ours / power / fpj - 1) < tol
        assert abs(ours / area / fps_mm2 - 1) < tol + 0.02


def test_probe_platform_uses_cache_bandwidth_for_resident_weights():
    probe = {"gemm_flops": 1e11, "copy_bandwidth": 2e10, "read_bandwidth": 1e10,
             "cache_copy_bandwidth": 8e10, "cache_read_bandwidth": 5e10, "llc_bytes": 2**20}
    plat = from_probe(probe)
    assert plat.peak_flops == 1e11 and plat.mem_bw == 2e10 and plat.cache_bw == 8e10
    small, big = Traffic(1.0, 2**19), Traffic(1.0, 2**22)
    assert roofline_time(plat, small) == 2**19 / 8e10 and roofline_time(plat, big) == 2**22 / 2e10
