"""`deepcompress formats | costs | simulate`: number formats, the 45 nm cost table, the EIE simulator."""

from __future__ import annotations

import json

from .errors import UserError


def _formats(args) -> int:
    from .numerics import SEED_TABLE_FORMATS, format_representation_table, representation_table

    rows = representation_table(list(SEED_TABLE_FORMATS) + list(args.extra))
    print(json.dumps(rows, indent=1) if args.json else format_representation_table(rows))
    return 0


def _costs(args) -> int:
    from .hardware import tech

    if args.json:
        print(json.dumps({
            "source": tech.HOROWITZ_2014,
            "operations": [{"name": o.name, "energy_pj": o.energy_pj, "area_um2": o.area_um2}
                           for o in tech.OPERATIONS_45NM],
            "fixed16_mult_pj": tech.fixed16_mult_energy_pj(),
            "sram_64bit_pj_by_kb": {kb: tech.sram_access_energy_pj(kb * 1024) for kb in (2, 8, 32, 128, 1024)},
            "dram_64bit_pj": tech.dram_access_energy_pj(64),
            "ratios": tech.cost_ratios(),
        }, indent=1))
    else:
        print(tech.format_cost_table())
    return 0


def _config(args):
    from .hardware.eie import EIEConfig

    return EIEConfig(num_pes=args.pes, fifo_depth=args.fifo, spmat_width_bits=args.width,
                     clock_hz=args.clock_mhz * 1e6)


def _print_result(res) -> None:
    d = res.to_dict()
    print(f"EIE: {d['layer']} ({d['inputs']} inputs x {d['outputs']} outputs), {d['num_pes']} PEs, "
          f"FIFO {d['fifo_depth']}, {d['spmat_width_bits']}-bit lines, {d['clock_hz'] / 1e6:g} MHz")
    print(f"  cycles {d['cycles']:,}  time {d['sim_us']:.2f} us  (theoretical {d['theoretical_us']:.2f} us)")
    print(f"  load-balance efficiency {d['load_balance_efficiency']:.3f}  MAC utilisation {d['mac_utilization']:.3f}"
          f"  PE busy min/mean/max {d['pe_busy']['min']}/{d['pe_busy']['mean']:.0f}/{d['pe_busy']['max']}"
          f"  broadcast stalls {d['broadcast_stall_cycles']:,}")
    print(f"  nonzero weights {d['nonzero_weights']:,}  padding zeros {d['padding_zeros']:,} "
          f"(processed {d['padding_processed']:,})")
    print("  accesses: " + ", ".join(f"{k} {v:,}" for k, v in d["accesses"].items()))
    total = sum(d["energy_pj"].values())
    print("  energy: " + ", ".join(f"{k} {v / 1e6:.3f} uJ ({100 * v / total:.0f}%)" for k, v in d["energy_pj"].items()))
    print(f"  total {d['energy_j'] * 1e6:.3f} uJ, power {d['power_w']:.3f} W, area {d['area_mm2']:.2f} mm^2")
    print(f"  frames/s {d['frames_per_s']:,.0f}  frames/J {d['frames_per_j']:,.0f}  "
          f"frames/s/mm^2 {d['frames_per_s_mm2']:,.0f}")


def _simulate(args) -> int:
    from .hardware.eie import simulate_spec
    from .hardware.eie_paper import format_paper_table, paper_records
    from .hardware.layers import parse_layer_spec

    if args.arch != "eie":
        raise UserError(f"architecture {args.arch!r} is not modelled yet; use --arch eie")
    if args.paper == bool(args.layer):
        raise UserError("give exactly one of --layer in,out,wdens,adens or --paper")
    config = _config(args)
    if args.paper:
        records = paper_records(config, seed=args.seed)
        print(json.dumps(records, indent=1) if args.json else format_paper_table(records))
        return 0
    res = simulate_spec(parse_layer_spec(args.layer, seed=args.seed), config)
    if args.json:
        print(json.dumps(res.to_dict(), indent=1))
    else:
        _print_result(res)
    return 0


def register(sub) -> None:
    """Add the `formats`, `costs` and `simulate` commands."""
    f = sub.add_parser("formats", help="print the number representation table (range and accuracy)",
                       description="Range and accuracy of fp32, fp16, bf16, int32/16/8 and binary, computed.")
    f.add_argument("extra", nargs="*", help="more formats to list, e.g. Q7.8 or UQ0.8")
    f.add_argument("--json", action="store_true", help="print JSON rows")
    f.set_defaults(func=_formats)

    c = sub.add_parser("costs", help="print the 45 nm energy/area table and the ratios that matter",
                       description="Energy and area per operation at 45 nm (Horowitz, ISSCC 2014), SRAM energy "
                                   "by capacity, DRAM, and the DRAM : SRAM : arithmetic ratios.")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(func=_costs)

    s = sub.add_parser("simulate", help="simulate a fully connected layer on EIE",
                       description="Cycle-level EIE simulation of a uniform random layer (--layer) or of the "
                                   "paper's nine benchmark layers beside Table IV (--paper).")
    s.add_argument("--layer", metavar="IN,OUT,WDENS,ADENS", help="e.g. 4096,4096,0.09,0.353 (or 9%%,35.3%%)")
    s.add_argument("--paper", action="store_true", help="the nine benchmark layers beside the paper")
    s.add_argument("--arch", default="eie", choices=["eie"], help="hardware model (default eie)")
    s.add_argument("--pes", type=int, default=64, help="processing elements (default 64)")
    s.add_argument("--fifo", type=int, default=8, help="activation FIFO depth per PE (default 8)")
    s.add_argument("--width", type=int, default=64, help="sparse-matrix SRAM line in bits (default 64)")
    s.add_argument("--clock-mhz", type=float, default=800.0, help="clock in MHz (default 800)")
    s.add_argument("--seed", type=int, default=0, help="seed of the random layer (default 0)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_simulate)
