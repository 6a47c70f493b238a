"""EIE energy per access, derived from the published per-PE power breakdown (Table II).

Derivation. Table II gives each PE module's average power (Act_queue, PtrRead, SpmatRead, ArithmUnit,
ActRW; they sum to the PE's 9.157 mW) at 800 MHz, and, by component type, the clock network's share
(1.874 mW, 20.46%). We take Table II to be the PE running the workload of Table V (AlexNet FC7 at 64
PEs, FIFO depth 8), which our simulator runs as REFERENCE_WORKLOAD. Then:

- the clock network toggles every cycle, busy or idle: 1.874 mW / 800 MHz = 2.34 pJ per PE-cycle;
- the rest of each module's power, P_m x (1 - 0.2046), is spent by its accesses: energy per access =
  that power / (800 MHz x accesses per PE-cycle in the reference run), with the accesses that module
  makes (MODULE_ACCESSES). A sparse-matrix line read scales linearly with the line width (tech.py).

So the reference run reproduces Table II's power exactly, and any other run spends energy in
proportion to what it does: fewer activations or weights, fewer reads, less energy.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .eie_encode import encode
from .eie_tables import TABLE_V_LAYER, benchmark
from .eie_timing import Activity, EIEConfig, run_schedule
from .layers import random_layer
from .tech import EIE_CLOCK_HZ, EIE_PE_POWER_MW, EIE_SPMAT_WIDTH_BITS, eie_block

REFERENCE_WORKLOAD = benchmark(TABLE_V_LAYER).spec(seed=0)

# Table II module -> the activity counts (Activity.counts) whose accesses spend its energy.
MODULE_ACCESSES: dict[str, tuple[str, ...]] = {
    "Act_queue": ("fifo_pushes", "fifo_pops"),
    "PtrRead": ("ptr_reads",),
    "SpmatRead": ("spmat_line_reads",),
    "ArithmUnit": ("entries",),
    "ActRW": ("act_reads", "act_writes"),
}


@dataclass(frozen=True)
class EnergyModel:
    """Energy per access of each Table II module (pJ; SpmatRead at `line_bits`) and per PE-cycle of clock."""

    per_access_pj: dict[str, float]
    clock_pj_per_pe_cycle: float
    line_bits: int = EIE_SPMAT_WIDTH_BITS


def _accesses(counts: dict[str, int], module: str) -> int:
    return sum(counts[c] for c in MODULE_ACCESSES[module])


@lru_cache(maxsize=1)
def table2_energy_model() -> EnergyModel:
    """Per-access energies that make the reference run (REFERENCE_WORKLOAD) draw Table II's power."""
    config = EIEConfig()
    weights, acts = random_layer(REFERENCE_WORKLOAD)
    activity = run_schedule(encode(weights, config.num_pes, config.index_bits), acts, config)
    counts = activity.counts(config.num_pes)
    pe_cycles = activity.cycles * config.num_pes
    clock_mw = eie_block("clock network", "type").power_mw
    dynamic_share = 1.0 - clock_mw / EIE_PE_POWER_MW
    per_access = {}
    for module in MODULE_ACCESSES:
        rate = _accesses(counts, module) / pe_cycles
        per_access[module] = eie_block(module).power_mw * 1e-3 * dynamic_share / EIE_CLOCK_HZ / rate * 1e12
    return EnergyModel(per_access, clock_mw * 1e-3 / EIE_CLOCK_HZ * 1e12)


def energy_breakdown(activity: Activity, config: EIEConfig, model: EnergyModel | None = None) -> dict[str, float]:
    """Energy in pJ of one run by Table II module, plus the clock network."""
    model = model or table2_energy_model()
    counts = activity.counts(config.num_pes)
    out = {}
    for module in MODULE_ACCESSES:
        scale = config.spmat_width_bits / model.line_bits if module == "SpmatRead" else 1.0
        out[module] = model.per_access_pj[module] * scale * _accesses(counts, module)
    out["clock network"] = model.clock_pj_per_pe_cycle * activity.cycles * config.num_pes
    return out
