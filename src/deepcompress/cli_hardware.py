"""`deepcompress formats | costs | simulate | subproblems`: number formats, the 45 nm cost table, the hardware
models (EIE, DianNao, CPU/GPU roofline) and the talk's four sub-problems."""

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


def _given(**options) -> dict:
    """The options the user gave (not None); the config dataclass supplies the rest."""
    return {k: v for k, v in options.items() if v is not None}


def _clock_hz(args) -> float | None:
    return None if args.clock_mhz is None else args.clock_mhz * 1e6


def _config(args):
    from .hardware.eie import EIEConfig

    return EIEConfig(**_given(num_pes=args.pes, fifo_depth=args.fifo, spmat_width_bits=args.width,
                              clock_hz=_clock_hz(args)))


def _diannao_config(args):
    from .hardware.diannao import DianNaoConfig

    return DianNaoConfig(**_given(dram_gbps=args.dram_gbps, clock_hz=_clock_hz(args)))


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


def _emit(args, data, text: str) -> int:
    print(json.dumps(data, indent=1) if args.json else text)
    return 0


def _simulate_eie(args):
    from .hardware.eie import simulate_spec
    from .hardware.eie_paper import format_paper_table, paper_records
    from .hardware.layers import parse_layer_spec

    config = _config(args)
    if args.paper:
        records = paper_records(config, seed=args.seed)
        return _emit(args, records, format_paper_table(records))
    res = simulate_spec(parse_layer_spec(args.layer, seed=args.seed), config)
    if not args.json:
        _print_result(res)
        return 0
    return _emit(args, res.to_dict(), "")


def _fc_shape(text: str):
    from .hardware.layers import parse_layer_spec
    from .hardware.netspecs import fc

    spec = parse_layer_spec(text)
    return fc(spec.label, spec.inputs, spec.outputs, spec.weight_density)


def _simulate_other(args):
    from .hardware import report
    from .hardware.diannao import simulate_layer
    from .hardware.model_sim import roofline_record
    from .hardware.platforms import diannao_benchmarks
    from .hardware.roofline import paper_comparison

    if args.arch == "diannao":
        if args.paper:
            records = diannao_benchmarks(_diannao_config(args), args.batch)
            return _emit(args, records, report.format_diannao_peak() + "\n\n" + report.format_diannao_table(records))
        d = simulate_layer(_fc_shape(args.layer), args.batch, _diannao_config(args)).to_dict()
        return _emit(args, d, report.format_diannao(d))
    if args.paper:
        records = paper_comparison(args.arch)
        return _emit(args, records, report.format_roofline_paper(records))
    rec = roofline_record(_fc_shape(args.layer), args.arch, args.batch)
    return _emit(args, rec, report.format_roofline_layer(rec))


def _simulate(args) -> int:
    from .hardware import report

    chosen = [bool(args.file), bool(args.layer), args.paper, args.table_v]
    if sum(chosen) != 1:
        raise UserError("give exactly one of FILE, --layer in,out,wdens,adens, --paper or --table-v")
    if args.batch < 1:
        raise UserError(f"--batch must be at least 1, got {args.batch}")
    if args.table_v:
        from .hardware.diannao import DianNaoConfig
        from .hardware.platforms import table_v_comparison

        probe = _load_probe(args.machine) if args.machine else None
        # the platforms run at the paper's clocks; only DianNao's DRAM bandwidth, an assumption, is an option
        diannao = DianNaoConfig(**_given(dram_gbps=args.dram_gbps))
        rows = table_v_comparison(diannao=diannao, probe=probe, seed=args.seed)
        return _emit(args, rows, report.format_table_v(rows))
    if args.file:
        from .hardware.model_sim import simulate_model

        model, fc_inputs, what = _file_inputs(args)
        records = simulate_model(model, args.arch, eie_config=_config(args), diannao_config=_diannao_config(args),
                                 act_density=args.act_density, acts=args.acts, batch=args.batch, seed=args.seed,
                                 fc_inputs=fc_inputs)
        return _emit(args, records, f"{args.file} on {args.arch}{what}\n" + report.format_layer_records(records))
    if args.arch == "eie":
        return _simulate_eie(args)
    return _simulate_other(args)


def _file_inputs(args) -> tuple:
    """The file read for the cost models (at --length on its variable axis), EIE's real FC inputs from
    --data or --text (None: random at --act-density) and a note on them for the title."""
    from .hardware.model_file import load_model

    if args.data and args.text:
        raise UserError("give --data or --text, not both")
    if args.text:
        from . import format as dcz
        from .cli_text import is_text_model
        from .minilm_text import load_tokenizer, positions_of
        import numpy as np

        if not is_text_model(dcz.read(args.file)[1]):
            raise UserError(f"{args.file}: --text tokenizes for the MiniLM sentence encoder and this file is not "
                            f"one; pass its inputs with --data FILE.npz (x: token ids for a language model)")
        x = positions_of(np.array([load_tokenizer().encode(args.text).ids], dtype=np.int64))
        return _with_inputs(args, x, load_model, f" ({x.shape[-1]} tokens of --text)")
    if args.data:
        from .data import load_test_set

        if args.samples < 1:
            raise UserError(f"--samples must be at least 1, got {args.samples}")
        name, x, _ = load_test_set(args.data)
        return _with_inputs(args, x[:args.samples], load_model, f" (EIE inputs: {min(args.samples, len(x))} {name} "
                                                                f"test samples)")
    shape = _at_length(args.file, args.length) if args.length else None
    return load_model(args.file, shape), None, ""


def _with_inputs(args, x, load_model, what: str) -> tuple:
    """The file at the inputs' shape, the FC inputs the CPU runtime sees on them, the title note."""
    from .data import as_model_input
    from .runtime import load

    if args.length:
        raise UserError("--length is taken from the inputs with --data or --text")
    model = load(args.file)
    x = as_model_input(x, model.forward.input_dtype, args.data or "--text")
    inputs = model.fc_inputs(x)  # first: the runtime names what is wrong with the inputs
    shape = tuple(x.shape[1:])
    return load_model(args.file, shape if shape != model.input_shape else None), inputs, what


def _at_length(path, length: int) -> tuple:
    """The file's input_shape with its one variable axis set to `length`."""
    from . import format as dcz

    if length < 1:
        raise UserError(f"--length must be at least 1, got {length}")
    meta = dcz.read(path)[1]
    axes, shape = meta.get("variable_axes") or [], list(meta.get("input_shape") or [])
    if len(axes) != 1 or not shape:
        raise UserError(f"--length needs a file with one variable axis (meta variable_axes); {path} has "
                        f"{axes or 'none'}")
    shape[axes[0]] = length
    return tuple(shape)


def _load_probe(path) -> dict:
    """A machine probe from `path`: probe.measure_machine()'s dict, or the benchmarks' hardware_machine.json
    that holds it under "probe"."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read machine probe {path}: {exc}") from None
    probe = data.get("probe", data) if isinstance(data, dict) else None
    if not isinstance(probe, dict) or not {"gemm_flops", "copy_bandwidth"} <= probe.keys():
        raise UserError(f"{path} is not a machine probe: it needs gemm_flops and copy_bandwidth")
    return probe


def _subproblems(args) -> int:
    from .hardware.netspecs import network
    from .hardware.report import format_subproblems
    from .hardware.training import network_table

    nets = ["alexnet", "vgg16"] if args.net == "all" else [args.net]
    tables = {n: network_table(network(n), args.batch) for n in nets}
    text = "\n\n".join(format_subproblems(rows, n) for n, rows in tables.items())
    return _emit(args, tables, text)


def register(sub) -> None:
    """Add the `formats`, `costs`, `simulate` and `subproblems` commands."""
    from .hardware import tech
    from .hardware.diannao import DianNaoConfig

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

    s = sub.add_parser("simulate", help="simulate layers or a compressed model on EIE, DianNao, CPU or GPU",
                       description="Run a compressed model file (FILE), one FC layer spec (--layer), the paper's "
                                   "nine benchmark layers (--paper) or the AlexNet FC7 platform comparison "
                                   "beside Table V (--table-v) on a hardware model.")
    s.add_argument("file", nargs="?", help="a .dcz compressed model: every layer, then the total")
    s.add_argument("--layer", metavar="IN,OUT,WDENS,ADENS", help="e.g. 4096,4096,0.09,0.353 (or 9%%,35.3%%)")
    s.add_argument("--paper", action="store_true", help="the nine benchmark layers beside the paper")
    s.add_argument("--table-v", action="store_true", help="frames/s, frames/J, frames/s/mm^2 per platform (AlexNet FC7)")
    s.add_argument("--arch", default="eie", choices=["eie", "diannao", "cpu", "gpu"], help="hardware model (default eie)")
    s.add_argument("--pes", type=int, help=f"EIE processing elements (default {tech.EIE_DEFAULT_PES})")
    s.add_argument("--fifo", type=int, help=f"EIE activation FIFO depth per PE (default {tech.EIE_FIFO_DEPTH})")
    s.add_argument("--width", type=int,
                   help=f"EIE sparse-matrix SRAM line in bits (default {tech.EIE_SPMAT_WIDTH_BITS})")
    s.add_argument("--clock-mhz", type=float, help=f"clock in MHz (default: EIE {tech.EIE_CLOCK_HZ / 1e6:g}, "
                                                   f"DianNao {DianNaoConfig.clock_hz / 1e6:g})")
    s.add_argument("--dram-gbps", type=float,
                   help=f"DianNao DRAM bandwidth, GB/s (default {DianNaoConfig.dram_gbps:g})")
    s.add_argument("--batch", type=int, default=1, help="images per run for diannao, cpu, gpu (default 1)")
    s.add_argument("--act-density", type=float, default=0.5,
                   help="FILE on EIE: fraction of nonzero input activations (default 0.5, a ReLU output)")
    s.add_argument("--acts", default="random", choices=["random", "ones"], help="FILE on EIE: input activations")
    s.add_argument("--data", metavar="mnist|fashion|DIR|FILE.npz",
                   help="FILE on EIE: the real inputs each FC layer reads on these test samples (CPU runtime)")
    s.add_argument("--samples", type=int, default=4, help="with --data: how many test samples (default 4)")
    s.add_argument("--text", help="FILE on EIE (a text-model file): the real inputs of this text, at its length")
    s.add_argument("--length", type=int, help="FILE with a variable sequence axis: cost it at this length "
                                              "(default: the length it was captured at)")
    s.add_argument("--machine", metavar="PROBE.json", help="--table-v: add this machine's measured roofline "
                                                           "(benchmarks/results/hardware_machine.json)")
    s.add_argument("--seed", type=int, default=0, help="seed of random layers and activations (default 0)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_simulate)

    t = sub.add_parser("subproblems", help="classify AlexNet/VGG-16 layers into the talk's 4 sub-problems",
                       description="Conv/FC x training/inference per layer: weight reuse (B or B x S), weight- "
                                   "or activation-dominated, roofline bound, and the GPU training cost.")
    t.add_argument("--net", default="all", choices=["alexnet", "vgg16", "all"], help="network (default all)")
    t.add_argument("--batch", type=int, default=128, help="training batch (default 128)")
    t.add_argument("--json", action="store_true", help="print JSON")
    t.set_defaults(func=_subproblems)
