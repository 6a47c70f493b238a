"""EIE's nine benchmark layers (ISCA 2016, Tables III and IV; eie_tables.py) beside our simulation."""

from __future__ import annotations

import math

from .eie import EIEConfig, simulate_spec
from .eie_tables import BENCHMARKS, EIE_PAPER


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
