"""The EIE simulator's front: run one fully connected layer and report time, energy, area and rates.

Time comes from the cycle model (eie_timing), energy from Table II turned into per-access energies
(eie_energy), area from Table II's per-PE area. "Theoretical" time is the PEs' total work (entries,
padding zeros included, plus one pointer-read cycle per empty PE column) divided evenly over the N
PEs: the time with perfect load balance and no broadcast stalls.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from .eie_encode import encode
from .eie_energy import energy_breakdown
from .eie_timing import Activity, EIEConfig, run_schedule
from .layers import LayerSpec, random_layer
from .tech import eie_chip_area_mm2

__all__ = ["EIEConfig", "EIEResult", "simulate", "simulate_spec"]


@dataclass(frozen=True)
class EIEResult:
    """One layer on EIE: cycles and activity, energy by component (pJ), area, and derived rates."""

    label: str
    config: EIEConfig
    shape: tuple[int, int]
    activity: Activity
    nonzero_weights: int
    padding_total: int
    energy_pj: dict[str, float]
    area_mm2: float

    @property
    def cycles(self) -> int:
        """Simulated clock cycles."""
        return self.activity.cycles

    @property
    def time_s(self) -> float:
        """Simulated latency in seconds."""
        return self.cycles / self.config.clock_hz

    @property
    def theoretical_cycles(self) -> float:
        """Total PE work spread evenly over the PEs (perfect load balance)."""
        return float(self.activity.pe_busy.sum()) / self.config.num_pes

    @property
    def theoretical_s(self) -> float:
        """Theoretical latency in seconds."""
        return self.theoretical_cycles / self.config.clock_hz

    @property
    def pe_idle(self) -> np.ndarray:
        """Idle cycles per PE."""
        return self.cycles - self.activity.pe_busy

    @property
    def load_balance_efficiency(self) -> float:
        """Fraction of PE-cycles spent working (entries or pointer reads)."""
        return float(self.activity.pe_busy.sum()) / (self.cycles * self.config.num_pes)

    @property
    def mac_utilization(self) -> float:
        """Multiply-accumulates on real weights per PE-cycle."""
        return self.activity.macs / (self.cycles * self.config.num_pes)

    @property
    def energy_j(self) -> float:
        """Total energy in joules."""
        return sum(self.energy_pj.values()) * 1e-12

    @property
    def power_w(self) -> float:
        """Average power over the run."""
        return self.energy_j / self.time_s

    @property
    def frames_per_s(self) -> float:
        """Layer evaluations per second at batch 1."""
        return 1.0 / self.time_s

    @property
    def frames_per_j(self) -> float:
        """Layer evaluations per joule."""
        return 1.0 / self.energy_j

    @property
    def frames_per_s_mm2(self) -> float:
        """Throughput per unit area."""
        return self.frames_per_s / self.area_mm2

    def to_dict(self) -> dict:
        """A JSON-ready summary (per-PE arrays summarised as min / mean / max)."""
        a, busy, idle = self.activity, self.activity.pe_busy, self.pe_idle
        return {
            "layer": self.label,
            "outputs": self.shape[0],
            "inputs": self.shape[1],
            "num_pes": self.config.num_pes,
            "fifo_depth": self.config.fifo_depth,
            "spmat_width_bits": self.config.spmat_width_bits,
            "clock_hz": self.config.clock_hz,
            "cycles": self.cycles,
            "sim_us": self.time_s * 1e6,
            "theoretical_cycles": self.theoretical_cycles,
            "theoretical_us": self.theoretical_s * 1e6,
            "load_balance_efficiency": self.load_balance_efficiency,
            "mac_utilization": self.mac_utilization,
            "pe_busy": {"min": int(busy.min()), "mean": float(busy.mean()), "max": int(busy.max())},
            "pe_idle": {"min": int(idle.min()), "mean": float(idle.mean()), "max": int(idle.max())},
            "broadcast_stall_cycles": a.stall_cycles,
            "nonzero_weights": self.nonzero_weights,
            "padding_zeros": self.padding_total,
            "padding_processed": a.padding_processed,
            "accesses": a.counts(self.config.num_pes),
            "energy_pj": dict(self.energy_pj),
            "energy_j": self.energy_j,
            "power_w": self.power_w,
            "area_mm2": self.area_mm2,
            "frames_per_s": self.frames_per_s,
            "frames_per_j": self.frames_per_j,
            "frames_per_s_mm2": self.frames_per_s_mm2,
        }


def simulate(weights, activations, config: EIEConfig | None = None, label: str = "") -> EIEResult:
    """Run `weights` (a QuantizedLayer as the file stores it, or a scipy sparse / dense matrix; rows =
    outputs, columns = inputs) on the input vector
    `activations` through EIE with `config` (default: the paper's 64 PEs, FIFO 8, 64-bit lines)."""
    config = config or EIEConfig()
    layout = encode(weights, config.num_pes, config.index_bits)
    acts = np.asarray(activations).ravel()
    if acts.shape[0] != layout.shape[1]:
        raise UserError(f"activation vector has {acts.shape[0]} entries, the matrix {layout.shape[1]} columns")
    if not np.all(np.isfinite(acts)):
        raise UserError("activation vector holds NaN or infinite values")
    activity = run_schedule(layout, acts, config)
    return EIEResult(
        label=label or f"{layout.shape[1]}x{layout.shape[0]}",
        config=config,
        shape=layout.shape,
        activity=activity,
        nonzero_weights=int(layout.nonzeros.sum()),
        padding_total=layout.total_padding,
        energy_pj=energy_breakdown(activity, config),
        area_mm2=eie_chip_area_mm2(config.num_pes),
    )


def simulate_spec(spec: LayerSpec, config: EIEConfig | None = None) -> EIEResult:
    """Draw the uniform random layer and input vector of `spec` and run them (see simulate)."""
    weights, acts = random_layer(spec)
    return simulate(weights, acts, config, label=spec.label)
