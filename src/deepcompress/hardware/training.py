"""Training cost per layer on the GPU roofline, and the talk's "4 distinct sub-problems".

The talk splits the work into conv / FC x training / inference: training runs 32-bit floats in large
batches, inference 8-bit integers at batch 1; a conv weight is reused B x S times per fetch (S output
positions), an FC weight only B times, so conv layers are dominated by activations and FC layers by
weights. classify() derives the label from the layer's bytes rather than from its kind, so the table
shows where the rule holds and where it does not.

A training step of one layer is four calls (fp32): forward (2 B MACs), backward to the inputs (2 B MACs),
backward to the weights (2 B MACs), and an SGD-with-momentum update (v = m v - lr g, w += v: 3 FLOPs and
5 words per weight). Forward keeps its input activations for the weight gradient (B x inputs x 4 bytes).
"""

from __future__ import annotations

from .netspecs import LayerShape
from .roofline import TITAN_X, Platform, Traffic, bound, roofline_time, sustained_time

TRAIN_VALUE_BYTES = 4  # 32b FP
INFER_VALUE_BYTES = 1  # 8b int
DEFAULT_TRAIN_BATCH = 128
UPDATE_FLOPS_PER_WEIGHT = 3
UPDATE_WORDS_PER_WEIGHT = 5  # read w, g, v; write w, v


def classify(layer: LayerShape, phase: str, batch: int | None = None, plat: Platform = TITAN_X) -> dict:
    """Where `layer` falls among the 4 sub-problems in `phase` ('train' or 'infer'): weight reuse per fetch,
    weight and activation bytes, which dominates, FLOPs per byte and the roof that binds on `plat`."""
    if phase not in ("train", "infer"):
        raise ValueError(f"phase must be 'train' or 'infer', got {phase!r}")
    train = phase == "train"
    batch = batch or (DEFAULT_TRAIN_BATCH if train else 1)
    vb = TRAIN_VALUE_BYTES if train else INFER_VALUE_BYTES
    weight_bytes = vb * layer.weights
    act_bytes = vb * batch * (layer.input_values + layer.output_values)
    flops = (6 if train else 2) * batch * layer.macs
    t = Traffic(flops, weight_bytes + act_bytes)
    return {
        "layer": layer.name, "kind": layer.kind, "phase": phase, "batch": batch,
        "subproblem": f"{'Train' if train else 'Inference'} {'Conv' if layer.kind == 'conv' else 'FC'}",
        "weight_reuse": batch * layer.positions, "reuse_rule": "B x S" if layer.kind == "conv" else "B",
        "weight_bytes": weight_bytes, "activation_bytes": act_bytes,
        "dominated_by": "weights" if weight_bytes > act_bytes else "activations",
        "flops_per_byte": t.intensity, "bound_on": plat.name, "bound": bound(plat, t),
    }


def step_traffic(layer: LayerShape, batch: int) -> dict[str, Traffic]:
    """FLOPs and bytes of each call of one training step of `layer` at `batch` (fp32)."""
    vb, macs, w = TRAIN_VALUE_BYTES, batch * layer.macs, layer.weights
    acts_in, acts_out = batch * layer.input_values, batch * layer.output_values
    return {
        "forward": Traffic(2.0 * macs, vb * (w + acts_in + acts_out)),
        "backward_data": Traffic(2.0 * macs, vb * (w + acts_out + acts_in)),
        "backward_weights": Traffic(2.0 * macs, vb * (acts_in + acts_out + w)),
        "update": Traffic(float(UPDATE_FLOPS_PER_WEIGHT * w), vb * UPDATE_WORDS_PER_WEIGHT * w),
    }


def training_cost(layer: LayerShape, batch: int = DEFAULT_TRAIN_BATCH, plat: Platform = TITAN_X) -> dict:
    """Time of one training step of `layer` on `plat` (roofline lower bound and sustained, per call and
    total), the memory it holds (weights, gradient, momentum; kept activations), images/s and images/J."""
    calls = step_traffic(layer, batch)
    roof = {k: roofline_time(plat, t) for k, t in calls.items()}
    sus = {k: sustained_time(plat, t, "dense") for k, t in calls.items()}
    total = sum(sus.values())
    rec = {
        "layer": layer.name, "kind": layer.kind, "batch": batch, "platform": plat.name,
        "flops": sum(t.flops for t in calls.values()), "bytes": sum(t.bytes for t in calls.values()),
        "roofline_us": {k: v * 1e6 for k, v in roof.items()}, "sustained_us": {k: v * 1e6 for k, v in sus.items()},
        "roofline_total_us": sum(roof.values()) * 1e6, "sustained_total_us": total * 1e6,
        "state_bytes": 3 * TRAIN_VALUE_BYTES * layer.weights,
        "kept_activation_bytes": TRAIN_VALUE_BYTES * batch * layer.input_values,
        "images_per_s": batch / total,
    }
    rec["images_per_j"] = rec["images_per_s"] / plat.power_w if plat.power_w else None
    return rec


def network_table(layers, batch: int = DEFAULT_TRAIN_BATCH, plat: Platform = TITAN_X) -> list[dict]:
    """For each layer: the inference and training classification and the GPU training cost."""
    rows = []
    for layer in layers:
        infer, train = classify(layer, "infer", 1, plat), classify(layer, "train", batch, plat)
        cost = training_cost(layer, batch, plat)
        rows.append({"layer": layer.name, "kind": layer.kind, "weights": layer.weights, "macs": layer.macs,
                     "positions": layer.positions, "infer": infer, "train": train, "train_cost": cost})
    return rows
