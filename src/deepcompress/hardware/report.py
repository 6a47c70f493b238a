"""Plain-text tables for the hardware commands (DianNao, roofline, model files, Table V, sub-problems)."""

from __future__ import annotations

from .diannao import (BINARY_GIGA, PAPER_CONVENTION, DianNaoConfig, ops_per_cycle, peak_gops,
                      published_ops_per_cycle)
from .tech import DIANNAO_PEAK_GOPS, DIANNAO_POWER_MW


def _num(v, fmt: str = ",.0f") -> str:
    return "-" if v is None else format(v, fmt)


def _width(rows: list[dict], key: str, least: int) -> int:
    """A text column for rows[i][key]: the longest value (at least `least`) and two spaces, so that names
    such as `layers.0.attn.query` are neither cut nor pushed into the next column."""
    return max([least, *(len(str(r[key])) for r in rows)]) + 2


def format_diannao(d: dict) -> str:
    """One DianNao layer result (DianNaoResult.to_dict())."""
    bound = "memory-bound" if d["memory_bound"] else "compute-bound"
    words = ", ".join(f"{k} {v:,}" for k, v in d["dram_words"].items())
    energy = ", ".join(f"{k} {v / 1e6:.3f} uJ" for k, v in d["energy_pj"].items())
    return "\n".join([
        f"DianNao: {d['layer']} ({d['kind']}), batch {d['batch']}, {d['clock_hz'] / 1e9:.2f} GHz, "
        f"DRAM {d['dram_gbps']:g} GB/s",
        f"  cycles {d['cycles']:,} (compute {d['compute_cycles']:,}, DRAM {d['memory_cycles']:,.0f}): "
        f"{d['time_us']:.2f} us, {bound}, NFU utilisation {d['utilization']:.3f}, "
        f"{d['gops_2_per_mac']:.1f} GOP/s (2 per MAC)",
        f"  tiling {d['schedule']}; DRAM words: {words} ({d['dram_bytes'] / 1e6:.3f} MB)",
        f"  energy: {energy}",
        f"  chip {d['chip_energy_j'] * 1e6:.3f} uJ ({d['chip_power_w'] * 1e3:.0f} mW), DRAM "
        f"{d['dram_energy_j'] * 1e6:.3f} uJ; at the published {DIANNAO_POWER_MW:g} mW: "
        f"{d['published_power_energy_j'] * 1e6:.3f} uJ",
        f"  frames/s {d['frames_per_s']:,.0f}  frames/J chip {d['frames_per_j_chip']:,.0f}, with DRAM "
        f"{d['frames_per_j_with_dram']:,.0f}, at {DIANNAO_POWER_MW:g} mW {d['frames_per_j_published_power']:,.0f}  "
        f"frames/s/mm^2 {d['frames_per_s_mm2']:,.0f} ({d['area_mm2']:.2f} mm^2)",
    ])


def format_diannao_peak(config: DianNaoConfig = DianNaoConfig()) -> str:
    """The op-counting conventions beside the published 452 GOP/s, in decimal and binary giga-ops."""
    lines = [f"DianNao peak at {config.clock_hz / 1e9:.2f} GHz (published {DIANNAO_PEAK_GOPS:g} GOP/s = "
             f"{published_ops_per_cycle():.1f} ops/cycle x 1e9, or {published_ops_per_cycle(BINARY_GIGA):.1f} "
             f"x 2^30):"]
    for conv, what in (("tree", "multiplies + adder-tree adds"), ("mac2", "2 per MAC"), ("mult", "multiplies")):
        g, gb = peak_gops(config, conv), peak_gops(config, conv, BINARY_GIGA)
        mark = "  <- the paper's count and unit" if conv == PAPER_CONVENTION else ""
        lines.append(f"  {what:<30}{ops_per_cycle(config, conv):>5} ops/cycle {g:>8.1f} GOP/s (1e9) "
                     f"{gb:>7.1f} GOP/s (2^30, {gb / DIANNAO_PEAK_GOPS:.3f} x published){mark}")
    return "\n".join(lines)


def format_layer_records(records: list[dict]) -> str:
    """Per-layer records of a model file (model_sim.simulate_model) and the total."""
    wl, wk, wa = _width(records, "layer", 8), _width(records, "kind", 4), _width(records, "arch", 12)
    head = f"{'layer':<{wl}}{'kind':<{wk}}{'arch':<{wa}}{'time us':>11}{'energy uJ':>12}{'frames/s':>13}{'frames/J':>13}  note"
    lines = [head, "-" * len(head)]
    for r in records:
        name = f"{r['layer']:<{wl}}{r['kind']:<{wk}}{r['arch']:<{wa}}"
        if r.get("skipped"):
            lines.append(f"{name}{'-':>11}{'-':>12}{'-':>13}{'-':>13}  {r['note']}")
            continue
        note = r.get("note", "")
        if r["arch"] in ("cpu", "gpu") and r["layer"] != "total" and r["kind"] != "matmul":
            note = (f"{r['kernel']} kernel; roofline dense {r['dense_roofline_us']:.2f} / sparse "
                    f"{r['sparse_roofline_us']:.2f} us") + (f"; {note}" if note else "")
        elif r["arch"] == "diannao" and r["layer"] != "total":
            note = ("memory-bound" if r["memory_bound"] else "compute-bound") + (f"; {note}" if note else "")
        fpj = r.get("frames_per_j")
        lines.append(f"{name}{r['time_us']:>11.2f}{r['energy_j'] * 1e6:>12.3f}"
                     f"{_num(r.get('frames_per_s')):>13}{_num(fpj):>13}  {note}")
    total = records[-1]
    if total.get("no_forward_pass"):
        lines.append("PARTIAL total: the file has no readable forward pass (weights only?), so each stored layer "
                     "is costed once on one input vector; how often it runs and the ops between layers are unknown")
    if total.get("layers_skipped"):
        matmuls = any(r.get("kind") == "matmul" and r.get("skipped") for r in records)
        what = "layer(s) or matmul(s)" if matmuls else "weight layer(s)"
        lines.append(f"PARTIAL total: {total['layers_skipped']} {what} not costed "
                     f"({', '.join(total['skipped_layers'])}); see their notes")
    if total.get("not_costed"):
        lines.append("not costed (no weights; the models cost weight layers only): "
                     + ", ".join(f"{n} x{c}" for n, c in total["not_costed"].items()))
    return "\n".join(lines)


def format_roofline_paper(records: list[dict]) -> str:
    """The nine layers on a paper platform: roofline and sustained predictions beside the measured times."""
    lines = [f"{records[0]['platform']}, batch 1, fp32; measured: EIE paper (REFERENCE.md s.5)"]
    for kernel in ("dense", "sparse"):
        head = (f"{kernel:<9}{'MB':>8}{'roofline us':>13}{'sustained us':>14}{'measured us':>13}"
                f"{'meas/roof':>11}{'sust/meas':>11}")
        lines += ["", head, "-" * len(head)]
        for r in records:
            lines.append(f"{r['layer']:<9}{r[kernel + '_bytes'] / 1e6:>8.2f}{r[kernel + '_roofline_us']:>13.1f}"
                         f"{r[kernel + '_sustained_us']:>14.1f}{r[kernel + '_measured_us']:>13.1f}"
                         f"{r[kernel + '_measured_over_roofline']:>11.2f}{r[kernel + '_sustained_over_measured']:>11.2f}")
    return "\n".join(lines)


def format_roofline_layer(r: dict) -> str:
    """One FC spec on a CPU/GPU platform, dense and sparse."""
    return "\n".join([f"{r['platform']}: {r['layer']}, batch {r['batch']}"] + [
        f"  {k:<7} roofline {r[k + '_roofline_us']:.2f} us, sustained {r[k + '_sustained_us']:.2f} us"
        for k in ("dense", "sparse")] + [
        f"  best ({r['kernel']}): frames/s {r['frames_per_s']:,.0f}, frames/J {r['frames_per_j']:,.1f}"])


def format_table_v(rows: list[dict]) -> str:
    """Frames/s, frames/J and frames/s/mm^2 per platform, Table V's values in brackets."""
    head = (f"{'platform':<14}{'model':<34}{'time us':>9}{'frames/s':>21}{'frames/J':>23}{'frames/s/mm^2':>20}")
    lines = ["AlexNet FC7 (Alex-7), batch 1; [paper: EIE Table V]", head, "-" * len(head)]
    for r in rows:
        p = r.get("paper") or {}

        def cell(key, fmt=",.0f"):
            ours = _num(r.get(key), fmt)
            return f"{ours} [{_num(p.get(key), fmt)}]" if p else ours
        lines.append(f"{r['platform']:<14}{r['model'][:33]:<34}{r['time_us']:>9.1f}{cell('frames_per_s'):>21}"
                     f"{cell('frames_per_j', ',.1f'):>23}{cell('frames_per_s_mm2', ',.1f'):>20}")
    return "\n".join(lines)


def format_subproblems(rows: list[dict], net: str) -> str:
    """The 4 sub-problems per layer, with the GPU training cost."""
    b = rows[0]["train"]["batch"]
    wl = _width(rows, "layer", 8)
    head = (f"{'layer':<{wl}}{'kind':<5}{'weights':>11}{'S':>7}{'infer reuse':>12}  {'infer (8b, B=1)':<28}"
            f"{'train reuse':>12}  {'train (fp32, B=' + str(b) + ')':<28}{'GPU train ms':>13}{'kept MB':>9}")
    lines = [f"{net}: the talk's 4 sub-problems; dominated = larger of weight and activation bytes", head,
             "-" * len(head)]
    for r in rows:
        i, t, c = r["infer"], r["train"], r["train_cost"]
        lines.append(f"{r['layer']:<{wl}}{r['kind']:<5}{r['weights']:>11,}{r['positions']:>7,}{i['weight_reuse']:>12,}  "
                     f"{i['subproblem'] + ': ' + i['dominated_by'] + ', ' + i['bound']:<28}{t['weight_reuse']:>12,}  "
                     f"{t['subproblem'] + ': ' + t['dominated_by'] + ', ' + t['bound']:<28}"
                     f"{c['sustained_total_us'] / 1e3:>13.2f}{c['kept_activation_bytes'] / 2**20:>9.1f}")
    total = sum(r["train_cost"]["sustained_total_us"] for r in rows) / 1e3
    lines.append(f"training step on {rows[0]['train_cost']['platform']} (sustained model): {total:.1f} ms "
                 f"for {b} images = {b / total * 1e3:,.0f} images/s")
    return "\n".join(lines)


def format_diannao_table(records: list[dict]) -> str:
    """Several DianNao layer results, one line each."""
    d0 = records[0]
    wl = _width(records, "layer", 8)
    head = (f"{'layer':<{wl}}{'compute cyc':>12}{'DRAM cyc':>12}{'time us':>10}{'bound':>9}{'util':>7}"
            f"{'frames/s':>11}{'frames/J chip':>15}{'w/ DRAM':>10}")
    lines = [f"DianNao, batch {d0['batch']}, DRAM {d0['dram_gbps']:g} GB/s, dense 16-bit weights", head, "-" * len(head)]
    for d in records:
        lines.append(f"{d['layer']:<{wl}}{d['compute_cycles']:>12,}{d['memory_cycles']:>12,.0f}{d['time_us']:>10.1f}"
                     f"{'memory' if d['memory_bound'] else 'compute':>9}{d['utilization']:>7.2f}"
                     f"{d['frames_per_s']:>11,.0f}{d['frames_per_j_chip']:>15,.0f}{d['frames_per_j_with_dram']:>10,.0f}")
    return "\n".join(lines)
