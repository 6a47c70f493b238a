"""DianNao (Chen et al., ASPLOS 2014): a dense 16 x 16 neural functional unit fed from small on-chip
buffers, with weights streamed from DRAM. An analytical per-layer model, not a cycle simulator.

Machine. NFU-1 multiplies Tn = 16 outputs x Ti = 16 inputs per cycle (256 16-bit multipliers); NFU-2 has
Tn adder trees of Ti - 1 adders each plus the partial-sum register; NFU-3 applies the piecewise-linear
non-linearity. NBin (2 KB) holds input neurons, NBout (2 KB) output neurons and spilled partial sums, SB
(32 KB) synapses; DMAs stream all three from DRAM and overlap with compute. Clock 0.98 GHz (1.02 ns).

Time. compute cycles = B x S x Kh x Kw x ceil(No / Tn) x ceil(Ni / Ti) per group (the 6-D loop tiled by
the NFU); memory cycles = DRAM bytes / bytes per cycle at `dram_gbps`; a layer takes the larger of the two
plus the 3-stage pipeline (double-buffered DMA hides the smaller). DRAM bytes come from two tilings of the
loop nest (see dram_traffic); the cheaper one is used. Dense: DianNao does not skip zero weights.

Energy, two ways. (1) Published: 485 mW x time. (2) Activity: Table 6's block powers are taken as every
block accessed once per cycle; the clock network's share (132 of 485 mW) is spent every cycle, the rest
per access (NFU op, SB line, NBin line, NBout line); CP, AXIMUX and Other are static. A fully busy NFU
thus draws exactly 485 mW; idle cycles waiting for DRAM draw only the static part. DRAM traffic costs
Horowitz's LPDDR 20 pJ/bit on top (off-chip, not in the 485 mW).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from ..errors import UserError
from .netspecs import LayerShape
from .tech import (DIANNAO_AREA_UM2, DIANNAO_BLOCKS, DIANNAO_CLOCK_HZ, DIANNAO_PEAK_GOPS, DIANNAO_POWER_MW,
                   DIANNAO_TN, DRAM_PJ_PER_BIT)

NBIN_BYTES = 2 * 1024
NBOUT_BYTES = 2 * 1024
SB_BYTES = 32 * 1024
PIPELINE_STAGES = 3
ACCESSED_BLOCKS = ("NFU", "SB", "NBin", "NBout")
STATIC_BLOCKS = ("CP", "AXIMUX", "Other")


@dataclass(frozen=True)
class DianNaoConfig:
    """NFU size (Tn outputs x Ti inputs), buffer sizes in bytes, 16-bit words, clock, DRAM bandwidth (GB/s).

    The DRAM bandwidth is an assumption (DianNao's chip has no DRAM of its own); at the default 250 GB/s
    an FC layer at batch 1 is memory-bound, since the NFU consumes 512 bytes of weights per cycle (502 GB/s).
    """

    tn: int = DIANNAO_TN
    ti: int = DIANNAO_TN
    nbin_bytes: int = NBIN_BYTES
    nbout_bytes: int = NBOUT_BYTES
    sb_bytes: int = SB_BYTES
    word_bytes: int = 2
    clock_hz: float = DIANNAO_CLOCK_HZ
    dram_gbps: float = 250.0
    pipeline_stages: int = PIPELINE_STAGES

    def __post_init__(self):
        if min(self.tn, self.ti, self.word_bytes) < 1 or self.pipeline_stages < 0:
            raise UserError("DianNao needs Tn, Ti and word size >= 1")
        if self.sb_bytes < self.tn * self.ti * self.word_bytes or self.nbin_bytes < self.ti * self.word_bytes \
                or self.nbout_bytes < self.tn * self.word_bytes:
            raise UserError("DianNao buffers must hold at least one NFU operand block")
        if not self.clock_hz > 0 or not self.dram_gbps > 0:
            raise UserError("clock and DRAM bandwidth must be positive")

    @property
    def multipliers(self) -> int:
        """Multipliers in NFU-1 (256)."""
        return self.tn * self.ti

    @property
    def dram_bytes_per_cycle(self) -> float:
        """DRAM bytes delivered per clock cycle."""
        return self.dram_gbps * 1e9 / self.clock_hz


# The paper's op count (Chen et al. 2014, Sec. 7): NFU-1 and NFU-2 busy every cycle on classifier and
# convolutional layers, i.e. Tn x Ti multiplies plus Tn adder trees of Ti - 1 adds each (256 + 240 = 496 16-bit
# fixed-point ops; NFU-2's partial-sum add and NFU-3 are not counted), at 0.98 GHz: 486.08e9 op/s. Its
# "452 GOP/s" is that rate in binary giga-ops (2^30 op/s): 486.08e9 / 2^30 = 452.7, printed truncated. No whole
# operator count gives 452 with a decimal giga (it needs 461.2 ops per cycle), so this is the only reading of
# the published figure that follows from the machine; it is an inference from the arithmetic, the paper does
# not name its prefix.
PAPER_CONVENTION = "tree"
BINARY_GIGA = 2.0 ** 30
DECIMAL_GIGA = 1e9


def ops_per_cycle(config: DianNaoConfig = DianNaoConfig(), convention: str = PAPER_CONVENTION) -> int:
    """Operations per cycle of a full NFU under a counting convention.

    'tree' (the paper's): Tn x Ti multiplies + Tn x (Ti - 1) adder-tree adds (256 + 240 = 496); 'mac2': 2 per
    multiply-accumulate, i.e. the tree adds plus the partial-sum add (512); 'mult': multiplies only (256).
    """
    tn, ti = config.tn, config.ti
    counts = {"tree": tn * ti + tn * (ti - 1), "mac2": 2 * tn * ti, "mult": tn * ti}
    if convention not in counts:
        raise UserError(f"op convention must be one of {', '.join(counts)}")
    return counts[convention]


def peak_gops(config: DianNaoConfig = DianNaoConfig(), convention: str = PAPER_CONVENTION,
              giga: float = DECIMAL_GIGA) -> float:
    """Peak throughput in giga-ops per second under `convention` (see ops_per_cycle); `giga` is 1e9
    (decimal, the default) or BINARY_GIGA (2^30, the unit that turns the paper's 496 ops x 0.98 GHz into
    its 452 GOP/s)."""
    return ops_per_cycle(config, convention) * config.clock_hz / giga


def paper_peak_gops(config: DianNaoConfig = DianNaoConfig()) -> float:
    """Peak under the paper's convention: 496 ops/cycle at 0.98 GHz in binary giga-ops (452.7 for 452)."""
    return peak_gops(config, PAPER_CONVENTION, BINARY_GIGA)


def published_ops_per_cycle(giga: float = DECIMAL_GIGA) -> float:
    """Operations per 0.98 GHz cycle implied by the published 452 GOP/s: 461.2 with a decimal giga, 495.2
    with a binary one (the NFU's 496, the published figure being truncated)."""
    return DIANNAO_PEAK_GOPS * giga / DIANNAO_CLOCK_HZ


def compute_cycles(layer: LayerShape, batch: int, config: DianNaoConfig) -> int:
    """NFU cycles: each cycle one Tn x Ti block of one kernel tap at one output position of one image."""
    ni, no = layer.in_channels // layer.groups, layer.out_channels // layer.groups
    taps = batch * layer.positions * math.prod(layer.kernel)
    return layer.groups * taps * math.ceil(no / config.tn) * math.ceil(ni / config.ti)


def dram_traffic(layer: LayerShape, batch: int, config: DianNaoConfig) -> tuple[str, dict[str, int]]:
    """Words moved to and from DRAM by the cheaper of two tilings, with the tiling's name.

    'weights-resident': for each group of Tn outputs, SB-sized blocks of its weights are loaded once and
    every input is streamed past them (inputs re-read per output group unless they all fit NBin);
    partial sums spill to DRAM between blocks when B x S x Tn of them overflow NBout.
    'inputs-resident': output positions are taken in tiles whose inputs fit NBin, and all weights are
    re-streamed per tile (per position, with inputs re-read per output group, when one position's
    inputs overflow NBin). Kernel-window overlap (halo) is ignored.
    """
    g = layer.groups
    ni, no = layer.in_channels // g, layer.out_channels // g
    k = math.prod(layer.kernel)
    groups_out = math.ceil(no / config.tn)
    w = layer.weights
    inputs = batch * layer.input_values
    outputs = batch * layer.output_values
    sb_words, nbin_words = config.sb_bytes // config.word_bytes, config.nbin_bytes // config.word_bytes
    nbout_words = config.nbout_bytes // config.word_bytes

    blocks = math.ceil(config.tn * ni * k / sb_words)
    live = batch * layer.positions * config.tn
    spill = 0 if blocks == 1 or live <= nbout_words else 2 * (blocks - 1) * live * groups_out * g
    reread = 1 if inputs <= nbin_words else groups_out
    a = {"weights": w, "inputs": inputs * reread, "outputs": outputs, "partial_sums": spill}

    per_position = ni * k * g  # inputs one output position needs (all groups)
    tile = nbin_words // per_position
    if tile >= 1:
        b = {"weights": w * math.ceil(batch * layer.positions / tile), "inputs": inputs}
    else:
        b = {"weights": w * batch * layer.positions, "inputs": batch * layer.positions * per_position * groups_out}
    b.update(outputs=outputs, partial_sums=0)
    return min((("weights-resident", a), ("inputs-resident", b)), key=lambda t: sum(t[1].values()))


@dataclass(frozen=True)
class DianNaoEnergyModel:
    """Per-access dynamic energies (pJ) of the accessed blocks, and the static energy per cycle."""

    per_access_pj: dict[str, float]
    static_pj_per_cycle: float


def table6_energy_model(clock_hz: float = DIANNAO_CLOCK_HZ) -> DianNaoEnergyModel:
    """Per-access energies from Table 6, assuming each accessed block is used once per cycle at 485 mW."""
    power = {b.name: b.power_mw for b in DIANNAO_BLOCKS if b.group == "block"}
    clock_mw = next(b.power_mw for b in DIANNAO_BLOCKS if b.name == "Clock network")
    clock_share = clock_mw / DIANNAO_POWER_MW
    per_access = {n: power[n] * (1 - clock_share) * 1e-3 / clock_hz * 1e12 for n in ACCESSED_BLOCKS}
    static_mw = sum(power[n] for n in STATIC_BLOCKS) + clock_share * sum(power[n] for n in ACCESSED_BLOCKS)
    return DianNaoEnergyModel(per_access, static_mw * 1e-3 / clock_hz * 1e12)


@dataclass(frozen=True)
class DianNaoResult:
    """One layer on DianNao: cycles, DRAM traffic (words), buffer accesses, and energy (pJ) by block."""

    label: str
    kind: str
    config: DianNaoConfig
    batch: int
    macs: int
    compute_cycles: int
    memory_cycles: float
    schedule: str
    dram_words: dict[str, int]
    accesses: dict[str, int]
    energy_pj: dict[str, float] = field(default_factory=dict)

    @property
    def cycles(self) -> int:
        """Layer cycles: the slower of compute and DRAM streaming, plus the pipeline fill."""
        return max(self.compute_cycles, math.ceil(self.memory_cycles)) + self.config.pipeline_stages

    @property
    def time_s(self) -> float:
        """Latency of the batch in seconds."""
        return self.cycles / self.config.clock_hz

    @property
    def memory_bound(self) -> bool:
        """True when DRAM streaming, not the NFU, sets the time."""
        return self.memory_cycles > self.compute_cycles

    @property
    def utilization(self) -> float:
        """Useful multiplies per multiplier-cycle."""
        return self.macs / (self.cycles * self.config.multipliers)

    @property
    def dram_bytes(self) -> int:
        """Bytes to and from DRAM."""
        return sum(self.dram_words.values()) * self.config.word_bytes

    @property
    def chip_energy_j(self) -> float:
        """On-chip energy from activity (J)."""
        return sum(v for k, v in self.energy_pj.items() if k != "DRAM") * 1e-12

    @property
    def dram_energy_j(self) -> float:
        """Off-chip DRAM energy (J)."""
        return self.energy_pj.get("DRAM", 0.0) * 1e-12

    @property
    def published_power_energy_j(self) -> float:
        """Energy at the published average power, 485 mW x time (J)."""
        return DIANNAO_POWER_MW * 1e-3 * self.time_s

    def to_dict(self) -> dict:
        """A JSON-ready summary; rates are per image (batch / time, batch / energy)."""
        t, e_chip, e_dram = self.time_s, self.chip_energy_j, self.dram_energy_j
        return {
            "layer": self.label, "kind": self.kind, "arch": "diannao", "batch": self.batch,
            "dram_gbps": self.config.dram_gbps, "clock_hz": self.config.clock_hz, "macs": self.macs,
            "compute_cycles": self.compute_cycles, "memory_cycles": self.memory_cycles, "cycles": self.cycles,
            "time_us": t * 1e6, "memory_bound": self.memory_bound, "utilization": self.utilization,
            "gops_2_per_mac": 2 * self.macs / t / 1e9, "schedule": self.schedule,
            "dram_words": dict(self.dram_words), "dram_bytes": self.dram_bytes, "accesses": dict(self.accesses),
            "energy_pj": dict(self.energy_pj), "chip_energy_j": e_chip, "dram_energy_j": e_dram,
            "published_power_energy_j": self.published_power_energy_j, "chip_power_w": e_chip / t,
            "area_mm2": diannao_area_mm2(), "frames_per_s": self.batch / t,
            "frames_per_j_chip": self.batch / e_chip, "frames_per_j_with_dram": self.batch / (e_chip + e_dram),
            "frames_per_j_published_power": self.batch / self.published_power_energy_j,
            "frames_per_s_mm2": self.batch / t / diannao_area_mm2(),
        }


def diannao_area_mm2() -> float:
    """Accelerator area after layout, 65 nm (3.02 mm^2)."""
    return DIANNAO_AREA_UM2 * 1e-6


def simulate_layer(layer: LayerShape, batch: int = 1, config: DianNaoConfig | None = None,
                   energy: DianNaoEnergyModel | None = None) -> DianNaoResult:
    """Cycles, DRAM traffic and energy of `layer` at `batch` images on DianNao (dense weights)."""
    config = config or DianNaoConfig()
    if batch < 1:
        raise UserError(f"batch must be at least 1, got {batch}")
    energy = energy or table6_energy_model(config.clock_hz)
    cycles = compute_cycles(layer, batch, config)
    schedule, words = dram_traffic(layer, batch, config)
    mem_cycles = sum(words.values()) * config.word_bytes / config.dram_bytes_per_cycle
    ni = layer.in_channels // layer.groups
    passes = math.ceil(ni * math.prod(layer.kernel) / (config.nbin_bytes // config.word_bytes))
    out_lines = batch * layer.positions * layer.groups * math.ceil(layer.out_channels // layer.groups / config.tn)
    accesses = {"NFU": cycles, "SB": cycles, "NBin": cycles, "NBout": out_lines * (2 * passes - 1)}
    res = DianNaoResult(layer.name, layer.kind, config, batch, batch * layer.macs, cycles, mem_cycles,
                        schedule, words, accesses)
    pj = {n: energy.per_access_pj[n] * accesses[n] for n in ACCESSED_BLOCKS}
    pj["static"] = energy.static_pj_per_cycle * res.cycles
    pj["DRAM"] = res.dram_bytes * 8 * DRAM_PJ_PER_BIT
    return replace(res, energy_pj=pj)
