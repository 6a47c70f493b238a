"""EIE's published tables (S. Han et al., "EIE: Efficient Inference Engine on Compressed Deep Neural
Network", ISCA 2016), as recorded in REFERENCE.md section 5: the one place each of these numbers lives.

- BENCHMARKS: the nine benchmark layers, shape and weight / activation density (Table III), EIE's
  theoretical and actual batch-1 latency (Table IV), and the authors' public C++ simulator
  (RalphMao/EIE-simulator) on uniform random layers of these shapes and densities at 64 PEs, FIFO 8.
- MEASURED_US: the CPU (i7-5930K) and GPU (Titan X) batch-1 baselines, dense and sparse (Table IV).
- TABLE_V: area, power and rates per platform on AlexNet FC7 (Table V).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import UserError

if TYPE_CHECKING:
    from .layers import LayerSpec

EIE_PAPER = "Han et al., EIE, ISCA 2016"


@dataclass(frozen=True)
class PaperLayer:
    """A benchmark layer: shape, densities, and the published latencies in microseconds at batch 1."""

    name: str
    inputs: int
    outputs: int
    weight_density: float
    act_density: float
    theoretical_us: float
    actual_us: float
    authors_sim_us: float

    def spec(self, seed: int = 0) -> LayerSpec:
        """The layer as a random-layer spec."""
        from .layers import LayerSpec  # here: the tables stay free of numpy for the shape-only models

        return LayerSpec(self.inputs, self.outputs, self.weight_density, self.act_density, seed, self.name)


BENCHMARKS: tuple[PaperLayer, ...] = (
    PaperLayer("Alex-6", 9216, 4096, 0.09, 0.351, 28.1, 30.3, 28.8),
    PaperLayer("Alex-7", 4096, 4096, 0.09, 0.353, 11.7, 12.2, 12.8),
    PaperLayer("Alex-8", 4096, 1000, 0.25, 0.375, 8.9, 9.9, 8.4),
    PaperLayer("VGG-6", 25088, 4096, 0.04, 0.183, 28.1, 34.4, 25.4),
    PaperLayer("VGG-7", 4096, 4096, 0.04, 0.375, 7.9, 8.7, 8.3),
    PaperLayer("VGG-8", 4096, 1000, 0.23, 0.411, 7.3, 8.4, 8.6),
    PaperLayer("NT-We", 4096, 600, 0.10, 1.0, 5.2, 8.0, 7.5),
    PaperLayer("NT-Wd", 600, 8791, 0.11, 1.0, 13.0, 13.9, 13.3),
    PaperLayer("NT-LSTM", 1201, 2400, 0.10, 1.0, 6.5, 7.5, 6.7),
)
LAYER_ORDER = tuple(b.name for b in BENCHMARKS)


def benchmark(name: str) -> PaperLayer:
    """The benchmark layer called `name`."""
    for layer in BENCHMARKS:
        if layer.name.lower() == name.lower():
            return layer
    raise UserError(f"no benchmark layer {name!r}; known: {', '.join(LAYER_ORDER)}")


# (platform, kernel) -> microseconds per layer, in LAYER_ORDER.
MEASURED_US: dict[tuple[str, str], tuple[float, ...]] = {
    ("cpu", "dense"): (7516.2, 6187.1, 1134.9, 35022.8, 5372.8, 774.2, 605.0, 1361.4, 470.5),
    ("cpu", "sparse"): (3066.5, 1282.1, 890.5, 3774.3, 545.1, 777.3, 261.2, 437.4, 260.0),
    ("gpu", "dense"): (541.5, 243.0, 80.5, 1467.8, 243.0, 80.5, 65.0, 90.1, 51.9),
    ("gpu", "sparse"): (134.8, 65.8, 54.6, 167.0, 39.8, 48.0, 17.7, 41.1, 18.5),
}


def measured_us(platform: str, kernel: str, layer: str) -> float:
    """The paper's measured batch-1 time of `layer` on 'cpu' or 'gpu' with the 'dense' or 'sparse' kernel."""
    return MEASURED_US[(platform, kernel)][LAYER_ORDER.index(layer)]


# Table V is measured on AlexNet FC7.
TABLE_V_LAYER = "Alex-7"
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
# Table V's EIE rows and their number of PEs.
TABLE_V_EIE_PES: dict[str, int] = {"EIE 64 PE": 64, "EIE 256 PE (projected)": 256}


def table_v_record(platform: str) -> dict:
    """Table V's row for `platform` as a dict."""
    node, area, power, fps, fps_mm2, fpj = TABLE_V[platform]
    return {"platform": platform, "node": node, "area_mm2": area, "power_w": power, "frames_per_s": fps,
            "frames_per_s_mm2": fps_mm2, "frames_per_j": fpj}
