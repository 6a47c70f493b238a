"""EIE's measured CPU and GPU baselines (ISCA 2016, batch 1, microseconds) and Table V (AlexNet FC7),
as recorded in REFERENCE.md section 5."""

from __future__ import annotations

from .eie_paper import BENCHMARKS

LAYER_ORDER = tuple(b.name for b in BENCHMARKS)

# (platform, kernel) -> microseconds per layer, in LAYER_ORDER.
MEASURED_US: dict[tuple[str, str], tuple[float, ...]] = {
    ("cpu", "dense"): (7516.2, 6187.1, 1134.9, 35022.8, 5372.8, 774.2, 605.0, 1361.4, 470.5),
    ("cpu", "sparse"): (3066.5, 1282.1, 890.5, 3774.3, 545.1, 777.3, 261.2, 437.4, 260.0),
    ("gpu", "dense"): (541.5, 243.0, 80.5, 1467.8, 243.0, 80.5, 65.0, 90.1, 51.9),
    ("gpu", "sparse"): (134.8, 65.8, 54.6, 167.0, 39.8, 48.0, 17.7, 41.1, 18.5),
}

# Table V: platform -> (node, area mm^2 or None, power W, frames/s, frames/s/mm^2 or None, frames/J).
TABLE_V: dict[str, tuple] = {
    "Core i7-5930K": ("22 nm", 356, 73, 162, 0.46, 2.22),
    "Titan X": ("28 nm", 601, 159, 4_115, 6.85, 25.9),
    "Tegra K1": ("28 nm", None, 5.1, 173, None, 33.9),
    "DaDianNao": ("28 nm", 67.7, 15.97, 147_938, 2_185, 9_263),
    "TrueNorth": ("28 nm", 430, 0.18, 1_989, 4.63, 10_839),
    "EIE 64 PE": ("45 nm", 40.8, 0.59, 81_967, 2_009, 138_927),
    "EIE 256 PE (projected)": ("28 nm", 63.8, 2.36, 426_230, 6_681, 180_606),
}


def measured_us(platform: str, kernel: str, layer: str) -> float:
    """The paper's measured batch-1 time of `layer` on 'cpu' or 'gpu' with the 'dense' or 'sparse' kernel."""
    return MEASURED_US[(platform, kernel)][LAYER_ORDER.index(layer)]


def table_v_record(platform: str) -> dict:
    """Table V's row for `platform` as a dict."""
    node, area, power, fps, fps_mm2, fpj = TABLE_V[platform]
    return {"platform": platform, "node": node, "area_mm2": area, "power_w": power, "frames_per_s": fps,
            "frames_per_s_mm2": fps_mm2, "frames_per_j": fpj}
