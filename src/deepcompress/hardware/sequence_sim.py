"""Costing a layer the forward pass runs T times per sample (an LSTM/GRU matrix, an fc over a sequence).

EIE simulates every step's matrix-vector product with its own input vector, as the EIE paper runs
NeuralTalk's LSTM (W_ih x_t and W_hh h_{t-1} per step): a W_hh's first step reads the zero initial
state, which EIE skips entirely, and the inputs of recurrent matrices are dense (embeddings, tanh and
sigmoid outputs; the paper's NT-LSTM has activation density 1.0, Table III). DianNao and the CPU/GPU
rooflines cost one FC of the layer times T (each step waits for the previous one's h).
"""

from __future__ import annotations

import numpy as np

RECURRENT_ACT_DENSITY = 1.0  # EIE Table III, NT-LSTM (and NT-We, NT-Wd): every activation nonzero


def step_vectors(n: int, steps: int, recurrent: bool, vector) -> list[np.ndarray]:
    """The `steps` input vectors of an n-input matrix: vector() each step, except the zero initial state
    a recurrent matrix reads at step 0."""
    return [np.zeros(n, np.float32) if recurrent and t == 0 else vector() for t in range(steps)]


def summed_steps(per_step: list[dict], note: str) -> dict:
    """One record for a layer's steps on EIE: the last step's description, cycles, times and energy
    summed over the steps, the cycles of each step listed."""
    d = dict(per_step[-1])
    for key in ("cycles", "sim_us", "theoretical_cycles", "theoretical_us", "time_us", "energy_j"):
        d[key] = sum(r[key] for r in per_step)
    d.update(steps=len(per_step), cycles_per_step=[r["cycles"] for r in per_step],
             act_density=float(np.mean([r["act_density"] for r in per_step])),
             frames_per_s=1 / (d["time_us"] * 1e-6), frames_per_j=1 / d["energy_j"] if d["energy_j"] else None)
    for key in ("energy_pj", "accesses", "pe_busy", "pe_idle", "power_w", "frames_per_s_mm2"):
        d.pop(key, None)  # per-run details of one step only
    d["note"] = "; ".join(filter(None, [note, d.get("note", "")]))
    return d


def repeated(record: dict, steps: int, batch: int = 1) -> dict:
    """A one-step record (DianNao or roofline) as `steps` sequential products: time and energy x steps."""
    d = dict(record)
    d.update(steps=steps, time_us=record["time_us"] * steps, energy_j=record["energy_j"] * steps,
             frames_per_s=batch / (record["time_us"] * steps * 1e-6))
    d["frames_per_j"] = batch / d["energy_j"] if d["energy_j"] else None
    d["note"] = "; ".join(filter(None, [f"one FC x {steps} steps", record.get("note", "")]))
    return d


def mean_record(per_vector: list[dict], note: str) -> dict:
    """One record for a layer's call on EIE from several input vectors simulated alone (real inputs): the
    mean cycles, times and energy of one call, the activation density over the vectors."""
    d = summed_steps(per_vector, note)
    n = len(per_vector)
    for key in ("cycles", "sim_us", "theoretical_cycles", "theoretical_us", "time_us", "energy_j"):
        d[key] /= n
    d.update(frames_per_s=1 / (d["time_us"] * 1e-6), frames_per_j=1 / d["energy_j"] if d["energy_j"] else None,
             vectors_simulated=n)
    for key in ("steps", "cycles_per_step"):
        d.pop(key)
    return d
