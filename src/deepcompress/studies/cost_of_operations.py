"""cost-of-operations: the talk's 45 nm table (Horowitz, ISSCC 2014, as typed in hardware/tech.py) and "the
importance of staying local": the energy of one multiply-accumulate whose two operands come from registers,
on-chip SRAM of several sizes, or off-chip DRAM."""

from __future__ import annotations

from ..hardware import tech
from .common import pyplot

TITLE = "Cost of operations (45 nm) and the importance of staying local"
REFERENCE_OP = "8b int add"
# Where a MAC's two operands come from: (label, bytes of SRAM, or 0 for registers, None for DRAM).
SOURCES = (("registers", 0), ("SRAM 8 KB", 8 * 1024), ("SRAM 32 KB", 32 * 1024), ("SRAM 1 MB", 1024 * 1024),
           ("DRAM (LPDDR)", None))
OPERANDS = 2  # a weight and an activation per multiply-accumulate


def mac_arithmetic_pj(kind: str) -> float:
    """Energy of the arithmetic of one MAC: 'fp32' (32b FP mult + add) or 'int8' (8b mult, 32b accumulate)."""
    e = {op.name: op.energy_pj for op in tech.OPERATIONS_45NM}
    return e["32b FP mult"] + e["32b FP add"] if kind == "fp32" else e["8b int mult"] + e["32b int add"]


def operand_pj(capacity: int | None, bits: int) -> float:
    """Energy of reading one `bits`-bit operand from registers (0: not in the table), SRAM of `capacity` bytes,
    or DRAM (None)."""
    if capacity == 0:
        return 0.0
    if capacity is None:
        return tech.dram_access_energy_pj(bits)
    return tech.sram_access_energy_pj(capacity, bits)


def mac_energy(kind: str) -> dict[str, float]:
    """pJ per MAC of `kind` ('fp32': 32-bit operands; 'int8': 8-bit) with both operands from each source."""
    bits = 32 if kind == "fp32" else 8
    return {label: mac_arithmetic_pj(kind) + OPERANDS * operand_pj(cap, bits) for label, cap in SOURCES}


def run(bench, study) -> None:
    """The 45 nm table with relative costs, the MAC energy by operand source, two figures and the claims."""
    ops = tech.OPERATIONS_45NM
    ref = tech.operation(REFERENCE_OP)
    study.table(f"Energy and area per operation, 45 nm ({tech.HOROWITZ_2014})",
                ["operation", "energy (pJ)", f"relative energy (x {REFERENCE_OP})", "area (um^2)",
                 f"relative area (x {REFERENCE_OP})"],
                [[o.name, o.energy_pj, round(o.energy_pj / ref.energy_pj, 1),
                  o.area_um2 if o.area_um2 is not None else "-",
                  round(o.area_um2 / ref.area_um2, 1) if o.area_um2 is not None else "-"] for o in ops])
    macs = {k: mac_energy(k) for k in ("fp32", "int8")}
    study.data["mac_pj"] = macs
    study.table("Energy of one multiply-accumulate by where its two operands come from (pJ)",
                ["operands from", "fp32 MAC (pJ)", "x registers", "int8 MAC (pJ)", "x registers"],
                [[label, round(macs["fp32"][label], 2), round(macs["fp32"][label] / macs["fp32"]["registers"], 1),
                  round(macs["int8"][label], 2), round(macs["int8"][label] / macs["int8"]["registers"], 1)]
                 for label, _ in SOURCES])
    _plot_table(study, ops, ref)
    _plot_local(study, macs)
    _claims(study, macs)


def _plot_table(study, ops, ref) -> None:
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    names = [o.name for o in ops]
    ax1.barh(names, [o.energy_pj / ref.energy_pj for o in ops], color="tab:red")
    ax1.set_xscale("log")
    ax1.set_xlabel(f"relative energy (x {REFERENCE_OP})")
    with_area = [o for o in ops if o.area_um2 is not None]
    ax2.barh([o.name for o in with_area], [o.area_um2 / ref.area_um2 for o in with_area], color="tab:blue")
    ax2.set_xscale("log")
    ax2.set_xlabel(f"relative area (x {REFERENCE_OP})")
    ax1.invert_yaxis()
    for ax in (ax1, ax2):
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Cost of operations, 45 nm (Horowitz, ISSCC 2014)")
    study.figure(fig, "cost_table.png", "Relative energy and area of each operation at 45 nm (the talk's table): "
                 "a DRAM read costs thousands of integer adds; memories have no area entry.")


def _plot_local(study, macs: dict) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    labels = [label for label, _ in SOURCES]
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], [macs["fp32"][l] for l in labels], 0.4, label="fp32 MAC, 32-bit operands")
    ax.bar([x + 0.2 for x in xs], [macs["int8"][l] for l in labels], 0.4, label="int8 MAC, 8-bit operands")
    ax.set_xticks(list(xs), labels)
    ax.set_yscale("log")
    ax.set_ylabel("pJ per multiply-accumulate")
    ax.set_title("The importance of staying local")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    study.figure(fig, "staying_local.png", "Energy of one MAC with both operands read from registers, SRAM of "
                 "8 KB / 32 KB / 1 MB (Horowitz's points), or DRAM: the memory, not the arithmetic, sets the cost.")


def _claims(study, macs: dict) -> None:
    fp = macs["fp32"]
    local = fp["DRAM (LPDDR)"] / fp["SRAM 8 KB"]
    study.claim("weights and activations from local memory cost 10-100x less energy than from DRAM",
                "10-100x less energy (summary slide)",
                f"{local:.0f}x per fp32 MAC (DRAM {fp['DRAM (LPDDR)']:.0f} pJ against 8 KB SRAM {fp['SRAM 8 KB']:.1f} pJ); "
                f"{fp['DRAM (LPDDR)'] / fp['SRAM 1 MB']:.0f}x against a 1 MB SRAM",
                10 <= local <= 100,
                "computed from the published 45 nm figures (tech.py), not measured; the ratio is DRAM's 640 pJ per "
                "32-bit read against SRAM's 5 pJ, diluted by the arithmetic both pay")
    dram_vs_mult = tech.operation("32b DRAM read (LPDDR)").energy_pj / tech.operation("32b FP mult").energy_pj
    study.claim("a DRAM access costs far more than the arithmetic it feeds",
                "32b DRAM read 640 pJ against 32b FP mult 3.7 pJ (cost of operations slide)",
                f"{dram_vs_mult:.0f}x; operands from registers: {fp['registers']:.1f} pJ per MAC, from DRAM "
                f"{fp['DRAM (LPDDR)'] / fp['registers']:.0f}x that",
                dram_vs_mult > 100, "the talk's own figures (tech.OPERATIONS_45NM), so this is arithmetic on them")
    mult = tech.operation("32b FP mult"), tech.operation("8b int mult")
    e_ratio, a_ratio = mult[0].energy_pj / mult[1].energy_pj, mult[0].area_um2 / mult[1].area_um2
    study.claim("reduced precision saves energy and area: 8b int multiply against 32b FP multiply",
                "0.2 pJ / 282 um^2 against 3.7 pJ / 7,700 um^2", f"{e_ratio:.1f}x less energy, {a_ratio:.1f}x less area",
                e_ratio > 10 and a_ratio > 10, "ratios of the talk's table entries")
