"""Published technology and block figures: the one place each cited number lives.

- 45 nm, 0.9 V energy per operation and memory access: M. Horowitz, "Computing's Energy Problem
  (and what we can do about it)", ISSCC 2014. Areas: TSMC 45 nm synthesis (Design Compiler,
  DesignWare FP units), as on the talk's "Cost of Operations" slide.
- EIE processing element power and area (Table II) and the machine's parameters (section III-IV:
  PEs, clock, activation FIFO depth, sparse-matrix SRAM width, 4-bit weight and relative-index
  fields): S. Han et al., "EIE: Efficient Inference Engine on Compressed Deep Neural Network",
  ISCA 2016 (TSMC 45 nm, 800 MHz).
- DianNao accelerator by component and block (Table 6): T. Chen et al., "DianNao: A Small-Footprint
  High-Throughput Accelerator for Ubiquitous Machine-Learning", ASPLOS 2014 (65 nm).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import UserError

HOROWITZ_2014 = "Horowitz, ISSCC 2014 (45 nm, 0.9 V); areas: TSMC 45 nm synthesis"


@dataclass(frozen=True)
class Operation:
    """One arithmetic operation or memory access: energy in pJ, area in um^2 (None where unpublished)."""

    name: str
    energy_pj: float
    area_um2: float | None
    source: str = HOROWITZ_2014


OPERATIONS_45NM: tuple[Operation, ...] = (
    Operation("8b int add", 0.03, 36),
    Operation("16b int add", 0.05, 67),
    Operation("32b int add", 0.1, 137),
    Operation("8b int mult", 0.2, 282),
    Operation("32b int mult", 3.1, 3495),
    Operation("16b FP add", 0.4, 1360),
    Operation("32b FP add", 0.9, 4184),
    Operation("16b FP mult", 1.1, 1640),
    Operation("32b FP mult", 3.7, 7700),
    Operation("32b SRAM read (8 KB array)", 5.0, None),
    Operation("32b DRAM read (LPDDR)", 640.0, None),
)

# Horowitz's SRAM points: energy of one 64-bit access against array capacity in bytes.
SRAM_64BIT_POINTS: tuple[tuple[int, float], ...] = ((8 * 1024, 10.0), (32 * 1024, 20.0), (1024 * 1024, 100.0))
# LPDDR DRAM: 640 pJ per 32-bit read (20 pJ/bit); Horowitz gives 1.3-2.6 nJ per 64 bits.
DRAM_PJ_PER_BIT = 640.0 / 32
DRAM_64BIT_RANGE_PJ = (1300.0, 2600.0)
# EIE's statement: a 16b fixed multiply is 5x cheaper than 32b fixed and 6.2x cheaper than 32b float.
FIXED16_MULT_VS_INT32 = 5.0
FIXED16_MULT_VS_FP32 = 6.2


def operation(name: str) -> Operation:
    """The table entry called `name` (see OPERATIONS_45NM)."""
    for op in OPERATIONS_45NM:
        if op.name == name:
            return op
    raise UserError(f"no operation {name!r} in the 45 nm table; known: {', '.join(o.name for o in OPERATIONS_45NM)}")


def fixed16_mult_energy_pj() -> float:
    """A 16-bit fixed-point multiply at 45 nm, from EIE's two ratios (about 0.6 pJ; not in Horowitz's table)."""
    by_int = operation("32b int mult").energy_pj / FIXED16_MULT_VS_INT32
    by_fp = operation("32b FP mult").energy_pj / FIXED16_MULT_VS_FP32
    return (by_int + by_fp) / 2


def sram_access_energy_pj(capacity_bytes: float, width_bits: int = 64) -> float:
    """Energy of one `width_bits` access to an SRAM array of `capacity_bytes` at 45 nm.

    Piecewise power law through Horowitz's three 64-bit points (exact at 8 KB, 32 KB and 1 MB, the end
    segments' slopes outside), scaled linearly with width: the table's 32b / 8 KB entry, 5 pJ, is half
    the 64-bit figure.
    """
    if not capacity_bytes > 0 or width_bits <= 0:
        raise UserError(f"SRAM needs a positive capacity and width, got {capacity_bytes} B x {width_bits} bits")
    pts = SRAM_64BIT_POINTS
    seg = 0 if capacity_bytes <= pts[1][0] else 1
    (c0, e0), (c1, e1) = pts[seg], pts[seg + 1]
    slope = math.log(e1 / e0) / math.log(c1 / c0)
    e64 = e0 * (capacity_bytes / c0) ** slope
    return e64 * width_bits / 64


def dram_access_energy_pj(width_bits: int = 32) -> float:
    """Energy of one `width_bits` LPDDR DRAM read at 45 nm (640 pJ per 32 bits)."""
    if width_bits <= 0:
        raise UserError(f"DRAM access width must be positive, got {width_bits}")
    return DRAM_PJ_PER_BIT * width_bits


def cost_ratios() -> dict[str, float]:
    """The ratios the talk stresses: off-chip DRAM against on-chip SRAM against arithmetic."""
    e = {op.name: op.energy_pj for op in OPERATIONS_45NM}
    a = {op.name: op.area_um2 for op in OPERATIONS_45NM}
    dram, sram = e["32b DRAM read (LPDDR)"], e["32b SRAM read (8 KB array)"]
    return {
        "DRAM read / SRAM read (32b, 8 KB)": dram / sram,
        "DRAM read / 32b FP mult": dram / e["32b FP mult"],
        "DRAM read / 32b int add": dram / e["32b int add"],
        "DRAM read / 16b fixed mult": dram / fixed16_mult_energy_pj(),
        "SRAM read (8 KB) / 32b FP mult": sram / e["32b FP mult"],
        "SRAM 1 MB / SRAM 8 KB (per access)": sram_access_energy_pj(2**20) / sram_access_energy_pj(8 * 2**10),
        "32b FP mult / 8b int mult (energy)": e["32b FP mult"] / e["8b int mult"],
        "32b FP mult / 8b int mult (area)": a["32b FP mult"] / a["8b int mult"],
        "32b FP mult / 16b FP mult (energy)": e["32b FP mult"] / e["16b FP mult"],
        "32b FP add / 8b int add (energy)": e["32b FP add"] / e["8b int add"],
    }


def format_cost_table() -> str:
    """The 45 nm table, the SRAM-by-capacity model and the ratios, as aligned text."""
    lines = [f"45 nm, 0.9 V  [{HOROWITZ_2014}]", f"{'operation':<30}{'energy pJ':>12}{'area um^2':>12}"]
    for op in OPERATIONS_45NM:
        area = f"{op.area_um2:,.0f}" if op.area_um2 is not None else "-"
        lines.append(f"{op.name:<30}{op.energy_pj:>12g}{area:>12}")
    lines.append(f"{'16b fixed mult (EIE ratios)':<30}{fixed16_mult_energy_pj():>12.2f}{'-':>12}")
    lines += ["", "SRAM energy per 64-bit access by array capacity (fit through 8 KB, 32 KB, 1 MB):"]
    for kb in (2, 8, 32, 128, 1024, 4096):
        lines.append(f"  {kb:>5} KB  {sram_access_energy_pj(kb * 1024):8.1f} pJ")
    lines.append(f"DRAM (LPDDR) per 64-bit access: {dram_access_energy_pj(64):.0f} pJ "
                 f"(Horowitz: {DRAM_64BIT_RANGE_PJ[0]:.0f}-{DRAM_64BIT_RANGE_PJ[1]:.0f} pJ)")
    lines += ["", "ratios:"]
    for name, value in cost_ratios().items():
        lines.append(f"  {name:<40}{value:>10.1f}x")
    return "\n".join(lines)


# --- EIE processing element, Table II ------------------------------------------------------------

@dataclass(frozen=True)
class Block:
    """A hardware block's published power (mW) and area (um^2); `group` says which breakdown it belongs to."""

    name: str
    power_mw: float | None
    area_um2: float
    group: str


EIE_CLOCK_HZ = 800e6
EIE_PE_POWER_MW = 9.157
EIE_PE_AREA_UM2 = 638_024
EIE_DEFAULT_PES = 64
# Per PE (EIE section IV): sparse-matrix SRAM read in 64-bit lines, activation queue depth 8; each
# stored entry is a 4-bit codebook index and a 4-bit relative row index.
EIE_SPMAT_WIDTH_BITS = 64
EIE_FIFO_DEPTH = 8
EIE_WEIGHT_BITS = 4
EIE_INDEX_BITS = 4

EIE_PE_BLOCKS: tuple[Block, ...] = (
    Block("memory", 5.416, 594_786, "type"),
    Block("clock network", 1.874, 866, "type"),
    Block("register", 1.026, 9_465, "type"),
    Block("combinational", 0.841, 8_946, "type"),
    Block("filler cell", None, 23_961, "type"),
    Block("Act_queue", 0.112, 758, "module"),
    Block("PtrRead", 1.807, 121_849, "module"),
    Block("SpmatRead", 4.955, 469_412, "module"),
    Block("ArithmUnit", 1.162, 3_110, "module"),
    Block("ActRW", 1.122, 18_934, "module"),
    Block("filler cell", None, 23_961, "module"),
)


def eie_block(name: str, group: str = "module") -> Block:
    """The Table II row called `name` in breakdown `group` ('type' or 'module')."""
    for b in EIE_PE_BLOCKS:
        if b.name == name and b.group == group:
            return b
    raise UserError(f"no EIE block {name!r} in the {group} breakdown")


def eie_chip_area_mm2(num_pes: int = EIE_DEFAULT_PES) -> float:
    """Area of `num_pes` EIE PEs in mm^2 (64 PEs: 40.8 mm^2)."""
    return num_pes * EIE_PE_AREA_UM2 * 1e-6


# --- DianNao, Table 6 (65 nm) -----------------------------------------------------------------------

DIANNAO_AREA_UM2 = 3_023_077
DIANNAO_POWER_MW = 485.0
DIANNAO_CLOCK_HZ = 0.98e9
DIANNAO_PEAK_GOPS = 452.0
DIANNAO_TN = 16  # output neurons x inputs per cycle: a 16 x 16 multiplier array

DIANNAO_BLOCKS: tuple[Block, ...] = (
    Block("Combinational", 89, 608_842, "type"),
    Block("Memory", 177, 1_158_000, "type"),
    Block("Registers", 86, 375_882, "type"),
    Block("Clock network", 132, 68_721, "type"),
    Block("Filler cell", None, 811_632, "type"),
    Block("SB", 105, 1_153_814, "block"),
    Block("NBin", 91, 427_992, "block"),
    Block("NBout", 92, 433_906, "block"),
    Block("NFU", 132, 846_563, "block"),
    Block("CP", 31, 141_809, "block"),
    Block("AXIMUX", 8, 9_767, "block"),
    Block("Other", 26, 9_226, "block"),
)
