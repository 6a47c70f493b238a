"""all-MiniLM-L6-v2 written to a .dcz with every layer weight-shared (no pruning, no retraining) and run
from the file by the CPU runtime: file size, and the cosine of the file's pooled states to the dense
module's and to the weight-shared module's, on held-out lee_background windows of one length; then the
same file in the runtime's int16 and int8 modes against its fp32 run (the runtime issue's target: cosine
>= 0.999 in int16). A run of the whole model writes benchmarks/results/minilm_file.json unless --json says
otherwise; a run of fewer layers writes only where --json says.

    python benchmarks/minilm_file.py --bits 8 --out /tmp/minilm8.dcz [--windows 32] [--layers 1] [--length 16]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from deepcompress import atomic, text_eval
from deepcompress.compress.export import write_model
from deepcompress.compress.prune import Masks
from deepcompress.compress.quantize import SharedWeights
from deepcompress.minilm import fp32_weight_bytes, load_minilm
from deepcompress.minilm_distill import token_windows, untruncated
from deepcompress.minilm_text import TEXT_MODEL, load_tokenizer, positions_of
from deepcompress.runtime import load

RESULTS = Path(__file__).resolve().parent / "results" / "minilm_file.json"
INT16_TARGET = 0.999


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity."""
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def main(argv: list[str] | None = None) -> dict:
    """Write the file, run it, print and return the measurements."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bits", type=int, default=8, help="weight-sharing width of every layer")
    parser.add_argument("--out", required=True, help="the .dcz file to write")
    parser.add_argument("--layers", type=int, help="only the first this many transformer layers")
    parser.add_argument("--length", type=int, default=16, help="tokens per window (the file's length)")
    parser.add_argument("--windows", type=int, default=8, help="held-out windows compared")
    parser.add_argument("--json", help=f"where to write the results (default: {RESULTS.name} under "
                        "benchmarks/results for the whole model, nowhere for --layers; '' for nowhere)")
    args = parser.parse_args(argv)
    if args.json is None:
        args.json = "" if args.layers else str(RESULTS)  # a partial model never replaces the benchmark's result
    torch.set_num_threads(1)
    start = time.perf_counter()
    model = load_minilm(layers=args.layers)
    dense_bytes = fp32_weight_bytes(model)
    _, held = text_eval.split_background()
    ids = token_windows(untruncated(load_tokenizer()), held, args.length)[: args.windows]
    x = torch.from_numpy(positions_of(ids))
    with torch.no_grad():
        dense = model(x).numpy()
    masks = Masks(model)
    shared = SharedWeights(model, masks, dict.fromkeys(masks.modules, args.bits))
    with torch.no_grad():
        quantized = model(x).numpy()
    nbytes = write_model(args.out, model, shared, dict.fromkeys(masks.modules, "auto"), shared.bits(),
                         {"text_model": TEXT_MODEL}, example_input=x[:1])
    got = load(args.out)(x.numpy())
    res = {"bits": args.bits, "file_bytes": nbytes, "ratio": dense_bytes / nbytes,
           "cosine_to_dense_mean": float(cosine(got, dense).mean()),
           "cosine_to_dense_min": float(cosine(got, dense).min()),
           "cosine_to_shared_min": float(cosine(got, quantized).min()),
           "max_abs_to_shared": float(np.abs(got - quantized).max()),
           "precision": integer_modes(args.out, x.numpy(), got), "seconds": time.perf_counter() - start,
           "command": "benchmarks/minilm_file.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "layers": len(model.layers), "length": args.length, "windows": len(ids)}
    print(res)
    if args.json:
        atomic.write_json(Path(args.json), res)
    return res


def integer_modes(path: str, x: np.ndarray, fp32: np.ndarray) -> dict:
    """The file run in the runtime's int16 and int8 modes: cosine of their pooled states to the fp32 run's
    (mean and lowest), and whether int16 meets INT16_TARGET."""
    out = {}
    for precision in ("int16", "int8"):
        cos = cosine(load(path, precision=precision)(x), fp32)
        out[precision] = {"cosine_to_fp32_mean": float(cos.mean()), "cosine_to_fp32_min": float(cos.min())}
    out["int16"]["target"] = f"cosine to fp32 >= {INT16_TARGET} (every window)"
    out["int16"]["met"] = out["int16"]["cosine_to_fp32_min"] >= INT16_TARGET
    return out


if __name__ == "__main__":
    main()
