"""The int cost model's calibration for benchmarks/runtime_layers.py (`--calibrate`, `--calibrate-layouts`,
`--refit`, `--calibrate-batched`): each int layout's ns per visited unit and per byte, fitted over EIE's
nine layers, which deepcompress.runtime.intpolicy.COST copies.

    python benchmarks/runtime_layers.py --calibrate --cpu-time          # -> results/runtime_calibration.json
    python benchmarks/runtime_layers.py --calibrate-batched --cpu-time  # -> results/runtime_calibration_batched.json
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

import runtime_methods as rm
from runtime_methods import BATCH, BATCH_LAYOUTS, PRECISIONS, batch_inputs, make_layer
from deepcompress import atomic
from deepcompress.hardware.eie_tables import BENCHMARKS
from deepcompress.runtime.int_fc import IntLinear
from deepcompress.runtime.intpolicy import LAYOUTS_FOR

# not fitted on EIE's 4-bit layers, which the cost model never gives it (intpolicy's docstring)
UNFITTED = ("rows-packed",)

RESULTS = Path(__file__).resolve().parent / "results"


def main(args, timer: rm.Timer, rounds: int, start: float) -> None:
    """Run what runtime_layers.py's flags ask for (batched, or fit / refit) and write its JSON."""
    if args.calibrate_batched:
        fit = calibrate_batched(timer, rounds)
        fit["setup"] = {"rounds": rounds, "clock": "thread CPU time" if args.cpu_time else "wall",
                        "load_average_end": os.getloadavg(), "wall_s": time.time() - start}
        atomic.write_json(RESULTS / "runtime_calibration_batched.json", fit)
        print({lay: round(v["ns_per_unit_median"], 4) for lay, v in fit.items() if lay != "setup"})
        return
    only = tuple(s.strip() for s in args.calibrate_layouts.split(",") if s.strip())
    cost = refit(RESULTS / "runtime_calibration.json") if args.refit else calibrate(timer, rounds, only)
    if only and not args.refit:  # the other layouts' fits stay as they were
        kept = json.loads((RESULTS / "runtime_calibration.json").read_text())
        for p, by_layout in cost.items():
            kept.setdefault(p, {}).update(by_layout)
        cost = kept
    atomic.write_json(RESULTS / "runtime_calibration.json", cost)
    for p, by_layout in cost.items():
        for lay, by_path in by_layout.items():
            print(p, lay, {path: (round(v["ns_per_unit"], 4), round(v["ns_per_byte"], 4))
                           for path, v in by_path.items()})


def calibrate(timer: rm.Timer, rounds: int, only: tuple = ()) -> dict:
    """(ns per unit, ns per byte) of each int layout, precision and dispatch path (intpolicy's cost
    model): a least-squares fit of relative error over the nine layers at batch 1, warm, at each layer's
    input density. The COST table of deepcompress.runtime.intpolicy is copied from this. `only`: just
    these layouts."""
    from deepcompress.runtime.intkernels import available_paths
    from deepcompress.runtime.intpolicy import runs_on, units_and_bytes
    per = {}
    for layer in BENCHMARKS:
        nz, x = make_layer(layer)
        methods = {}
        for p in PRECISIONS:
            for lay in LAYOUTS_FOR[p]:
                if only and lay not in only:
                    continue
                if lay in UNFITTED:
                    continue
                for path in filter(lambda path: runs_on(lay, path), available_paths()):
                    fc = IntLinear(nz, None, p, lay, path=path)
                    methods[(p, lay, path)] = (lambda fc=fc: fc(x))
        meds = rm.interleaved_medians(timer, methods, rounds, ("warm",))
        d = float((x != 0).mean())
        for (key, _), us in meds.items():
            u, b = units_and_bytes(nz, key[1], key[0], d)
            per.setdefault(key, {})[layer.name] = (u, b, 1e3 * us)
        print(f"{layer.name} calibrated", flush=True)
    cost = {}
    for (p, lay, path), by_layer in per.items():
        ub = np.array([v[:2] for v in by_layer.values()])
        ns = np.array([v[2] for v in by_layer.values()])
        coef = fit_nonnegative(ub / ns[:, None], np.ones(len(ns)))
        cost.setdefault(p, {}).setdefault(lay, {})[path] = {
            "ns_per_unit": coef[0], "ns_per_byte": coef[1],
            "per_layer": {n: {"units": u, "bytes": b, "ns": t, "predicted_ns": coef[0] * u + coef[1] * b}
                          for n, (u, b, t) in by_layer.items()}}
    return cost


def calibrate_batched(timer: rm.Timer, rounds: int) -> dict:
    """ns per unit and sample of the batched row-quad layouts (intpolicy.COST's 'rowquads' and
    'panelquads' per-unit constants): each layer's warm batch-BATCH time, less the model's byte term,
    over its units (intpolicy.units_and_bytes) x BATCH; the median over the nine layers."""
    from deepcompress.runtime.intpolicy import COST, units_and_bytes
    layouts = BATCH_LAYOUTS["int8"]
    per = {lay: {} for lay in layouts}
    for layer in BENCHMARKS:
        nz, _ = make_layer(layer)
        x = batch_inputs(layer, layer.act_density, BATCH)
        fcs = {lay: IntLinear(nz, None, "int8", lay, batch=BATCH) for lay in layouts}
        meds = rm.interleaved_medians(timer, {lay: (lambda fc=fc: fc(x)) for lay, fc in fcs.items()}, rounds,
                                      ("warm",))
        for lay in layouts:
            u, nbytes = units_and_bytes(nz, lay, "int8", layer.act_density)
            ns = 1e3 * meds[(lay, "warm")] - COST["int8"][lay]["avx2"][1] * nbytes / BATCH
            per[lay][layer.name] = {"median_us": meds[(lay, "warm")], "ns_per_unit": ns / (u * BATCH)}
        print(layer.name, {lay: round(v[layer.name]["ns_per_unit"], 4) for lay, v in per.items()}, flush=True)
    return {lay: {"ns_per_unit_median": float(np.median([v["ns_per_unit"] for v in by_layer.values()])),
                  "layers": by_layer} for lay, by_layer in per.items()}


def fit_nonnegative(a: np.ndarray, y: np.ndarray) -> list[float]:
    """Nonnegative least squares x >= 0 of a x = y for (per unit, per byte)."""
    from scipy.optimize import nnls
    return [float(v) for v in nnls(a, y)[0]]


def refit(path: Path) -> dict:
    """The calibration file's fits redone from its measured times, with the units and bytes of the
    current cost model (intpolicy.units_and_bytes) for each layer at its input density."""
    from deepcompress.runtime.intpolicy import units_and_bytes
    cost = json.loads(path.read_text())
    layers = {b.name: b for b in BENCHMARKS}
    built = {}
    for p, by_layout in cost.items():
        for lay, by_path in by_layout.items():
            for entry in by_path.values():
                rows = []
                for name, rec in entry["per_layer"].items():
                    if name not in built:
                        built[name] = make_layer(layers[name])
                    nz, x = built[name]
                    u, b = units_and_bytes(nz, lay, p, float((x != 0).mean()))
                    rec.update(units=u, bytes=b)
                    rows.append((u, b, rec["ns"]))
                ub = np.array([r[:2] for r in rows])
                ns = np.array([r[2] for r in rows])
                entry["ns_per_unit"], entry["ns_per_byte"] = fit_nonnegative(ub / ns[:, None], np.ones(len(ns)))
                for rec in entry["per_layer"].values():
                    rec["predicted_ns"] = entry["ns_per_unit"] * rec["units"] + entry["ns_per_byte"] * rec["bytes"]
    return cost
