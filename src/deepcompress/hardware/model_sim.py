"""Run every layer of a compressed model file on one architecture and total the results.

- eie: FC layers through the cycle-level simulator with their real pruned weights; input activations
  random at `act_density` (default 0.5: a ReLU output is about half zeros), all ones, or the real inputs
  each layer reads on real data (`fc_inputs`). EIE runs FC layers only, so conv layers go to the DianNao
  model, marked as such.
- diannao: every layer, dense (DianNao does not skip zeros).
- cpu / gpu: every layer on the roofline of the paper's i7-5930K / Titan X, dense and sparse CSR kernels;
  the faster sustained kernel is the layer's time.
A conv layer whose input size cannot be traced from the file is skipped, with the reason, and so is an
embedding (a table lookup, not a matrix product).

Sequences: an LSTM/GRU matrix runs T sequential products per sample (sequence_sim.py: EIE simulates every
step; DianNao and the rooflines cost one FC x T). A plain fc layer on (T, in) per sample is T independent
input vectors: EIE simulates one and charges it T times; DianNao and the roofline run all batch x T vectors
against the weights at once. A matrix product between activations (attention) is costed on DianNao and the
roofline (dense kernel) as an fc workload whose "weights" are the second operand, once per sample and head;
EIE runs weight matrices only, so there it is listed as not costed and the total is partial.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..errors import UserError
from ..format import graph
from .diannao import DianNaoConfig, simulate_layer
from .eie import EIEConfig, simulate
from .model_file import FileLayer, MatmulWork, ModelFile, activation_matmuls, load_model
from .netspecs import LayerShape
from .roofline import Traffic, platform, roofline_time, sustained_time, traffic
from .sequence_sim import RECURRENT_ACT_DENSITY, mean_record, repeated, step_vectors, summed_steps

ARCHES = ("eie", "diannao", "cpu", "gpu")
DEFAULT_ACT_DENSITY = 0.5
MAX_REAL_VECTORS = 16  # real input vectors simulated per FC layer (the mean is charged per vector)


def input_vector(n: int, act_density: float, mode: str, rng: np.random.Generator) -> np.ndarray:
    """An input vector of `n`: 'random' has round(act_density x n) entries in [0.05, 1) at random places;
    'ones' is all ones."""
    if mode == "ones":
        return np.ones(n, dtype=np.float32)
    if mode != "random":
        raise UserError(f"activations must be 'random' or 'ones', got {mode!r}")
    if not 0.0 <= act_density <= 1.0:
        raise UserError(f"activation density must lie in [0, 1], got {act_density}")
    acts = np.zeros(n, dtype=np.float32)
    k = int(round(act_density * n))
    acts[rng.choice(n, size=k, replace=False)] = rng.uniform(0.05, 1.0, size=k)
    return acts


def _eie_record(layer: FileLayer, config: EIEConfig, acts: np.ndarray) -> dict:
    # EIE's codebook is 16 entries (4 bits); a wider file codebook widens each stored entry
    cfg = replace(config, weight_bits=max(config.weight_bits, layer.index_bits))
    d = simulate(layer.layer, acts, cfg, label=layer.name).to_dict()
    d.update(kind="fc", arch="eie", time_us=d["sim_us"], weight_density=layer.shape.weight_density,
             act_density=float(np.count_nonzero(acts)) / acts.size)
    if cfg.weight_bits != config.weight_bits:
        d["note"] = f"{layer.index_bits}-bit codebook indices: {cfg.entry_bits}-bit entries"
    return d


def _diannao_record(shape: LayerShape, config: DianNaoConfig, batch: int, note: str = "") -> dict:
    d = simulate_layer(shape, batch, config).to_dict()
    d.update(energy_j=d["chip_energy_j"] + d["dram_energy_j"], frames_per_j=d["frames_per_j_with_dram"])
    if note:
        d["note"] = note
    return d


def roofline_record(shape: LayerShape, which: str, batch: int = 1) -> dict:
    """`shape` on the paper's 'cpu' or 'gpu': roofline and sustained times of the dense and sparse kernels;
    the faster sustained one sets time, frames/s and frames/J (at Table V's power)."""
    plat = platform(which)
    d = {"layer": shape.name, "kind": shape.kind, "arch": which, "platform": plat.name, "batch": batch,
         "weight_density": shape.weight_density}
    for kernel in ("dense", "sparse"):
        t = traffic(shape, batch, kernel)
        d[f"{kernel}_roofline_us"] = roofline_time(plat, t) * 1e6
        d[f"{kernel}_sustained_us"] = sustained_time(plat, t, kernel) * 1e6
    d["kernel"] = min(("dense", "sparse"), key=lambda k: d[f"{k}_sustained_us"])
    d["time_us"] = d[f"{d['kernel']}_sustained_us"]
    d["energy_j"] = plat.power_w * d["time_us"] * 1e-6
    d["frames_per_s"] = batch / (d["time_us"] * 1e-6)
    d["frames_per_j"] = batch / d["energy_j"]
    return d


def simulate_model(path, arch: str = "eie", *, eie_config: EIEConfig | None = None,
                   diannao_config: DianNaoConfig | None = None, act_density: float = DEFAULT_ACT_DENSITY,
                   acts: str = "random", batch: int = 1, seed: int = 0, fc_inputs: dict | None = None,
                   max_vectors: int = MAX_REAL_VECTORS) -> list[dict]:
    """One record per layer of the file at `path` on `arch`, then a 'total' record (layers in sequence).
    `path` may be the file already read (load_model), to cost one file on several architectures.
    `fc_inputs` (layer name -> input vectors (..., in), e.g. runtime's CompressedModel.fc_inputs on real
    data) gives EIE real activations for those FC layers instead of random ones at `act_density`: up to
    `max_vectors` of them, spread evenly, are simulated and their mean call is charged per vector."""
    if arch not in ARCHES:
        raise UserError(f"architecture must be one of {', '.join(ARCHES)}, got {arch!r}")
    if arch == "eie" and batch != 1:
        raise UserError("EIE runs one input vector at a time: use --batch 1")
    model = path if isinstance(path, ModelFile) else load_model(path)
    layers, meta = model.layers, model.meta
    eie_config, diannao_config = eie_config or EIEConfig(), diannao_config or DianNaoConfig()
    rng = np.random.default_rng(seed)
    records = []
    for layer in layers:
        if layer.shape is None:
            records.append({"layer": layer.name, "kind": layer.kind, "arch": arch, "skipped": True,
                            "note": f"skipped: {layer.note}"})
        elif arch == "eie" and layer.kind == "fc" and layer.role:
            records.append(_eie_steps(layer, eie_config, act_density, acts, rng))
        elif arch == "eie" and layer.kind == "fc" and fc_inputs and layer.name in fc_inputs:
            records.append(_per_sample(_eie_real(layer, eie_config, fc_inputs[layer.name], max_vectors),
                                       layer.steps, 1))
        elif arch == "eie" and layer.kind == "fc":
            vec = input_vector(layer.layer.matrix_shape[1], act_density, acts, rng)
            records.append(_per_sample(_eie_record(layer, eie_config, vec), layer.steps, 1))
        elif layer.role:  # an LSTM/GRU matrix: its steps run one after the other
            records.append(repeated(_dense_record(layer, arch, diannao_config, batch), layer.steps, batch))
        else:  # independent input vectors (a batch, the positions of a sequence) run in one call
            records.append(_per_sample(_dense_record(layer, arch, diannao_config, batch * layer.steps), 1, batch))
    records += [_matmul_record(work, arch, diannao_config, batch) for work in activation_matmuls(model.forward)]
    total = _total(records, arch, batch, meta)
    if model.forward is None:  # how often each layer runs, and on what, is unknown: the total is a guess
        total.update(partial=True, no_forward_pass=True)
    total["not_costed"] = not_costed_ops(model.forward)
    if arch != "eie":
        total["not_costed"].pop("matmul", None)  # costed above
    return records + [total]


def _dense_record(layer: FileLayer, arch: str, config: DianNaoConfig, vectors: int) -> dict:
    """The layer on DianNao (EIE's conv layers too) or a roofline, for `vectors` input vectors in one call."""
    if arch in ("eie", "diannao"):
        note = "conv layer: DianNao model (EIE runs FC layers only)" if arch == "eie" else ""
        return _diannao_record(layer.shape, config, vectors, note)
    return roofline_record(layer.shape, arch, vectors)


def _eie_steps(layer: FileLayer, config: EIEConfig, act_density: float, acts: str, rng) -> dict:
    """Every step's product of a layer run T times per sample (sequence_sim.py)."""
    n = layer.layer.matrix_shape[1]
    density = RECURRENT_ACT_DENSITY if layer.role else act_density
    hh = layer.role == "w_hh"
    vectors = step_vectors(n, layer.steps, hh, lambda: input_vector(n, density, acts, rng))
    note = f"{layer.steps} steps" + (", step 0 reads the zero initial state" if hh else "") + \
        ("; dense recurrent inputs" if layer.role else "")
    return summed_steps([_eie_record(layer, config, v) for v in vectors], note)


def _eie_real(layer: FileLayer, config: EIEConfig, vectors, max_vectors: int) -> dict:
    """One call of an FC layer on EIE, the mean over up to `max_vectors` of the real input `vectors`."""
    vecs = np.asarray(vectors, np.float32)
    n_in = layer.layer.matrix_shape[1]
    if vecs.ndim == 0 or vecs.shape[-1] != n_in or vecs.size == 0:
        raise UserError(f"{layer.name}: real input vectors of shape {vecs.shape}; the layer takes {n_in} inputs")
    vecs = vecs.reshape(-1, n_in)
    pick = np.unique(np.linspace(0, len(vecs) - 1, min(max_vectors, len(vecs))).round().astype(int))
    note = (f"real inputs: {len(pick)} of {len(vecs)} vectors simulated, density "
            f"{np.count_nonzero(vecs) / vecs.size:.3f} over all")
    return mean_record([_eie_record(layer, config, vecs[k]) for k in pick], note)


EIE_MATMUL_NOTE = "not costed: activation x activation matmul, EIE runs weight matrices only"


def _per_sample(d: dict, calls: int, batch: int) -> dict:
    """A record of one call scaled to `calls` calls for `batch` samples: time and energy multiplied, frame
    rates per sample (the other fields describe one call)."""
    d = {**d, "time_us": d["time_us"] * calls, "energy_j": d["energy_j"] * calls, "batch": batch}
    d.update(frames_per_s=batch / (d["time_us"] * 1e-6), frames_per_j=batch / d["energy_j"])
    if calls > 1:
        d["calls"] = calls
        d["note"] = "; ".join(filter(None, [d.get("note"), f"time and energy of {calls} calls"]))
    return d


def _matmul_record(work: MatmulWork, arch: str, config: DianNaoConfig, batch: int) -> dict:
    """A matrix product between activations: per sample and head one dense fc workload on `rows` vectors
    (on a CPU or GPU one batched kernel call does them all)."""
    if arch == "eie":
        return {"layer": work.name, "kind": "matmul", "arch": arch, "skipped": True, "note": EIE_MATMUL_NOTE}
    k, n = work.shape.in_channels, work.shape.out_channels
    calls = work.count * batch
    what = f"{calls} products ({work.rows}x{k}) x ({k}x{n})"
    if arch == "diannao":
        return _per_sample({**_diannao_record(work.shape, config, work.rows), "kind": "matmul", "note": what},
                           calls, batch)
    plat, one = platform(arch), traffic(work.shape, work.rows, "dense")
    t = Traffic(one.flops * calls, one.bytes * calls)
    time_us = sustained_time(plat, t, "dense") * 1e6
    d = {"layer": work.name, "kind": "matmul", "arch": arch, "platform": plat.name, "batch": batch,
         "kernel": "dense", "dense_roofline_us": roofline_time(plat, t) * 1e6, "dense_sustained_us": time_us,
         "time_us": time_us, "energy_j": plat.power_w * time_us * 1e-6,
         "note": f"dense kernel, one batched call: {what}"}
    return _per_sample(d, 1, batch)


def not_costed_ops(forward: graph.ForwardPass | None) -> dict[str, int]:
    """How many ops of each kind of the parsed forward pass the models leave out (no weights: activations,
    pooling, normalisation, element-wise arithmetic, reshapes); empty without a pass."""
    if forward is None:
        return {}
    counts: dict[str, int] = {}
    for op in forward.ops:
        if not isinstance(op, (graph.LayerOp, graph.Recurrent)):
            counts[op.name] = counts.get(op.name, 0) + 1
    return counts


def _total(records: list[dict], arch: str, batch: int, meta: dict) -> dict:
    run = [r for r in records if not r.get("skipped")]
    time_us = sum(r["time_us"] for r in run)
    energy = sum(r["energy_j"] for r in run)
    archs = sorted({r["arch"] for r in run})
    total = {"layer": "total", "kind": "-", "arch": "+".join(archs) or arch, "batch": batch,
             "model": meta.get("model"), "layers_run": len(run), "layers_skipped": len(records) - len(run),
             "partial": len(run) < len(records), "skipped_layers": [r["layer"] for r in records if r.get("skipped")],
             "time_us": time_us, "energy_j": energy}
    if run and time_us > 0:
        total.update(frames_per_s=batch / (time_us * 1e-6), frames_per_j=batch / energy if energy else None)
        if arch in ("eie", "diannao"):
            area = sum({r["arch"]: r["area_mm2"] for r in run}.values())  # one chip per architecture used
        else:
            area = platform(arch).area_mm2
        total.update(area_mm2=area, frames_per_s_mm2=total["frames_per_s"] / area)
    return total
