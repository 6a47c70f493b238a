"""EIE's nine benchmark layers (ISCA 2016, Tables III and IV) and Table V, beside our simulation.

`authors_sim_us` is the authors' public C++ simulator (RalphMao/EIE-simulator) on uniform random
layers of these shapes and densities at 64 PEs, FIFO 8, as recorded in the project's REFERENCE.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import UserError
from .eie import EIEConfig, simulate_spec
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

# Table V, EIE 64 PEs on AlexNet FC7 (45 nm).
TABLE_V_EIE_64 = {"layer": "Alex-7", "area_mm2": 40.8, "power_w": 0.59, "frames_per_s": 81_967,
                  "frames_per_s_mm2": 2_009, "frames_per_j": 138_927}


def benchmark(name: str) -> PaperLayer:
    """The benchmark layer called `name`."""
    for layer in BENCHMARKS:
        if layer.name.lower() == name.lower():
            return layer
    raise UserError(f"no benchmark layer {name!r}; known: {', '.join(b.name for b in BENCHMARKS)}")


def paper_records(config: EIEConfig | None = None, seed: int = 0) -> list[dict]:
    """Simulate the nine layers and return one record each, with the published figures alongside."""
    records = []
    for layer in BENCHMARKS:
        res = simulate_spec(layer.spec(seed), config)
        rec = res.to_dict()
        rec.update({
            "layer": layer.name,
            "weight_density": layer.weight_density,
            "act_density": layer.act_density,
            "paper_theoretical_us": layer.theoretical_us,
            "paper_actual_us": layer.actual_us,
            "authors_sim_us": layer.authors_sim_us,
            "sim_over_actual": rec["sim_us"] / layer.actual_us,
        })
        records.append(rec)
    return records


def geometric_mean(values) -> float:
    """Geometric mean of positive numbers."""
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values))


def format_paper_table(records: list[dict]) -> str:
    """The nine-layer comparison as aligned text, with the geometric mean of sim / actual."""
    head = (f"{'layer':<9}{'in x out':>13}{'w':>5}{'a':>7}{'theor us':>10}{'sim us':>8}"
            f"{'paper th':>10}{'paper act':>10}{'authors':>9}{'sim/act':>8}{'LB eff':>8}{'frames/J':>11}")
    lines = [f"EIE, {records[0]['num_pes']} PEs, FIFO {records[0]['fifo_depth']}, "
             f"{records[0]['clock_hz'] / 1e6:.0f} MHz; paper: {EIE_PAPER}, Table IV", head, "-" * len(head)]
    for r in records:
        lines.append(
            f"{r['layer']:<9}{r['inputs']:>6}x{r['outputs']:<6}{100 * r['weight_density']:>4.0f}%"
            f"{100 * r['act_density']:>6.1f}%{r['theoretical_us']:>10.1f}{r['sim_us']:>8.1f}"
            f"{r['paper_theoretical_us']:>10.1f}{r['paper_actual_us']:>10.1f}{r['authors_sim_us']:>9.1f}"
            f"{r['sim_over_actual']:>8.2f}{r['load_balance_efficiency']:>8.2f}{r['frames_per_j']:>11,.0f}")
    gm = geometric_mean(r["sim_over_actual"] for r in records)
    lines.append(f"geometric mean of sim / paper actual: {gm:.3f}  (authors' simulator column: REFERENCE.md)")
    return "\n".join(lines)
