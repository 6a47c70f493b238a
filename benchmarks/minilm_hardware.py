"""all-MiniLM-L6-v2's compressed files on the hardware models: EIE runs every Linear layer per token on
the real activations the CPU runtime computes for held-out text (not an assumed density), DianNao costs
the whole model (Linear layers and the attention products), and so do the CPU and GPU models (their
element-wise ops listed as not costed); frames are sentences.

    python benchmarks/minilm_hardware.py                 # every setting in benchmarks/results/minilm.json
    python benchmarks/minilm_hardware.py --length 16 --settings prune20-fc5-table4

Adds to each record of benchmarks/results/minilm.json whose file exists: `hardware` = {"tokens": T,
"eie": {...}, "diannao": {...}, "cpu": {...}, "gpu": {...}} with frames_per_s, frames_per_j, partial and what was not costed. The
embedding lookup is not costed on either (a table read, not a matrix product); EIE does not run the
attention's activation x activation products, so its total is partial.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
RESULTS = ROOT / "benchmarks" / "results" / "minilm.json"
ARCHES = ("eie", "diannao", "cpu", "gpu")  # fc_inputs reach EIE only; the others cost dense work
KEYS = ("frames_per_s", "frames_per_j", "time_us", "energy_j", "partial", "skipped_layers", "no_forward_pass",
        "not_costed")


def costs(path, x: np.ndarray, max_vectors: int = 16) -> dict:
    """EIE (real FC inputs of the batch-1 input x [1, 2, T]), DianNao, CPU and GPU model totals for the file
    at `path`."""
    from deepcompress.hardware.model_file import load_model
    from deepcompress.hardware.model_sim import simulate_model
    from deepcompress.runtime import load

    model = load(path)
    inputs = model.fc_inputs(x)
    shape = tuple(x.shape[1:])
    file = load_model(path, shape if shape != model.input_shape else None)
    out = {"tokens": int(x.shape[-1]), "eie_vectors_per_layer": max_vectors}
    for arch in ARCHES:
        total = simulate_model(file, arch, fc_inputs=inputs, max_vectors=max_vectors)[-1]
        out[arch] = {k: total.get(k) for k in KEYS}
    return out


def held_out_input(length: int) -> np.ndarray:
    """One held-out lee_background window of `length` word pieces with its positions ([1, 2, T])."""
    from minilm import real_windows
    from deepcompress.minilm_text import load_tokenizer

    return real_windows(load_tokenizer(), length)[:1]


def main(argv: list[str] | None = None) -> int:
    """Cost the recorded settings' files and add the results to their records."""
    import json

    from deepcompress import atomic

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--length", type=int, default=16, help="tokens of the held-out sentence window (default 16)")
    p.add_argument("--settings", nargs="+", help="only these settings")
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    records = json.loads(args.results.read_text())
    x = held_out_input(args.length)
    for rec in records:
        path = rec.get("file")
        if not path or not Path(path).exists() or (args.settings and rec["setting"] not in args.settings):
            continue
        start = time.perf_counter()
        rec["hardware"] = costs(path, x)
        rec["hardware"]["wall_s"] = round(time.perf_counter() - start, 1)
        eie, dn = rec["hardware"]["eie"], rec["hardware"]["diannao"]
        print(f"{rec['setting']:<26} EIE {eie['frames_per_s']:>10,.0f} sentences/s {eie['frames_per_j']:>12,.0f} /J "
              f"(partial: {eie['partial'] or bool(eie['not_costed'])}); DianNao {dn['frames_per_s']:>8,.0f} /s "
              f"{dn['frames_per_j']:>10,.0f} /J; CPU {rec['hardware']['cpu']['frames_per_j']:,.1f} /J, GPU "
              f"{rec['hardware']['gpu']['frames_per_j']:,.1f} /J  [{rec['hardware']['wall_s']} s]", flush=True)
        atomic.write_json(args.results, records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
