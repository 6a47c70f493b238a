"""Frames/s, frames/J and frames/s/mm^2 of every modelled platform on one FC layer (default AlexNet FC7,
batch 1), beside EIE's Table V.

CPU and GPU: the roofline (a lower bound on time) and the sustained model (roofline.py), dense weights, at
Table V's measured power and die area. DianNao: the analytical model (diannao.py), on-chip energy from
activity plus DRAM. EIE: the cycle-level simulator at 64 and 256 PEs (45 nm; the paper's 256-PE row is a
28 nm projection, so only its time compares).
"""

from __future__ import annotations

from .diannao import DianNaoConfig, simulate_layer
from .eie import EIEConfig, simulate_spec
from .eie_tables import TABLE_V_EIE_PES, TABLE_V_LAYER, benchmark, table_v_record
from .netspecs import benchmark_fc
from .roofline import I7_5930K, TITAN_X, Platform, from_probe, roofline_time, sustained_time, traffic


def _row(platform: str, model: str, time_s: float, energy_j: float | None, area: float | None,
         paper: str | None, **extra) -> dict:
    row = {"platform": platform, "model": model, "time_us": time_s * 1e6, "frames_per_s": 1 / time_s,
           "frames_per_j": 1 / energy_j if energy_j else None,
           "frames_per_s_mm2": 1 / time_s / area if area else None, "area_mm2": area,
           "power_w": energy_j / time_s if energy_j else None, "paper": None, **extra}
    if paper:
        row["paper"] = table_v_record(paper)
        row["fps_over_paper"] = row["frames_per_s"] / row["paper"]["frames_per_s"]
    return row


def _roofline_rows(plat: Platform, layer, paper: str | None) -> list[dict]:
    t = traffic(layer, 1, "dense")
    rows = []
    for model, seconds in (("roofline (lower bound)", roofline_time(plat, t)),
                           ("sustained (fitted)", sustained_time(plat, t, "dense"))):
        if model.startswith("sustained") and plat.dense.overhead_s == 0 and plat.dense.bw_eff == 1:
            continue  # a measured machine has no separate sustained model
        energy = plat.power_w * seconds if plat.power_w else None
        rows.append(_row(plat.name, model, seconds, energy, plat.area_mm2, paper, node=plat.node))
    return rows


def table_v_comparison(layer_name: str = TABLE_V_LAYER, diannao: DianNaoConfig | None = None,
                       probe: dict | None = None, seed: int = 0) -> list[dict]:
    """One row per platform and model on `layer_name` (a benchmark layer), with Table V's row beside;
    DianNao runs with `diannao` (default DianNaoConfig())."""
    bench = benchmark(layer_name)
    shape = benchmark_fc(bench.name)
    paper = bench.name == TABLE_V_LAYER
    rows = []
    for plat in (I7_5930K, TITAN_X):
        rows += _roofline_rows(plat, shape, plat.name if paper else None)
    if probe:
        rows += _roofline_rows(from_probe(probe), shape, None)
    d = simulate_layer(shape, 1, diannao).to_dict()
    rows.append(_row("DianNao", f"model, {d['dram_gbps']:g} GB/s, chip+DRAM J", d["time_us"] * 1e-6,
                     d["chip_energy_j"] + d["dram_energy_j"], d["area_mm2"], None, node="65 nm",
                     chip_only_frames_per_j=d["frames_per_j_chip"], memory_bound=d["memory_bound"]))
    for paper_row, pes in TABLE_V_EIE_PES.items():
        r = simulate_spec(bench.spec(seed), EIEConfig(num_pes=pes))
        rows.append(_row(f"EIE {pes} PE", "cycle-level simulator, 45 nm", r.time_s, r.energy_j, r.area_mm2,
                         paper_row if paper else None, node="45 nm"))
    for name in ("Tegra K1", "DaDianNao", "TrueNorth") if paper else ():
        p = table_v_record(name)
        row = _row(name, "paper only (not modelled)", 1 / p["frames_per_s"], p["power_w"] / p["frames_per_s"],
                   p["area_mm2"], name, node=p["node"])
        row.update(frames_per_j=p["frames_per_j"], frames_per_s_mm2=p["frames_per_s_mm2"], power_w=p["power_w"])
        rows.append(row)
    return rows


def diannao_benchmarks(config: DianNaoConfig | None = None, batch: int = 1) -> list[dict]:
    """EIE's nine benchmark layers on the DianNao model (dense weights), one record each."""
    from .roofline import benchmark_shapes

    return [simulate_layer(shape, batch, config).to_dict() for shape in benchmark_shapes()]
