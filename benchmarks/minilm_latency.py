"""Batch-1 latency of compressed all-MiniLM-L6-v2 files run by the CPU runtime against dense PyTorch.

    python benchmarks/minilm_latency.py FILE [FILE ...]            # writes benchmarks/results/minilm_latency.json
    python benchmarks/minilm_latency.py FILE --rounds 9 --out F   # fewer rounds, another results file

Each FILE is a setting's model.dcz (benchmarks/minilm.py writes them under runs/minilm/SETTING/). One thread
(numpy's BLAS, numba and torch), held-out lee_background windows of SEQ_LENGTHS tokens (benchmarks/minilm.py's
`real_windows`), one warm-up call each, then `rounds` rounds in which the file's model and dense PyTorch each
run the same window back to back (interleaved, so both see the same machine load); medians per length and
their ratio (dense / ours: above 1 means the file is faster). Also records each file's FC policy per row
count (`summary()`: layout, sgemm from how many rows, decoded bytes after the run).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from deepcompress import atomic  # noqa: E402
from deepcompress.minilm import load_minilm  # noqa: E402
from deepcompress.minilm_text import load_tokenizer, torch_model  # noqa: E402
from deepcompress.runtime import load  # noqa: E402

from minilm import SEQ_LENGTHS, real_windows  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "minilm_latency.json"


def timed(run, x) -> float:
    """Seconds of one call."""
    start = time.perf_counter()
    run(x)
    return time.perf_counter() - start


def interleaved_us(ours, dense, windows: np.ndarray, rounds: int) -> tuple[float, float]:
    """Median microseconds of `ours` and `dense`, each run once per round on the same window."""
    ours(windows[:1])
    dense(windows[:1])
    a, b = [], []
    for i in range(rounds):
        x = windows[i % len(windows)][None]
        a.append(timed(ours, x))
        b.append(timed(dense, x))
    return 1e6 * float(np.median(a)), 1e6 * float(np.median(b))


def fc_policy(model) -> list[dict]:
    """Per FC layer of a loaded model: layout for few rows, sgemm from how many rows, decoded bytes held."""
    return [{"name": s["name"], "layout": s["layout"], "gemm_from_rows": s.get("gemm_from_rows"),
             "decoded_bytes": s.get("decoded_bytes", 0)} for s in model.summary() if s["kind"] == "fc"]


def file_record(path: Path, dense, tokenizer, rounds: int) -> dict:
    """One file's latencies against dense PyTorch at every sequence length, same run."""
    model = load(path)
    record = {"file": str(path), "file_bytes": path.stat().st_size, "latency_us": {}, "dense_latency_us": {},
              "dense_over_ours": {}}
    for t in SEQ_LENGTHS:
        ours, theirs = interleaved_us(model, dense, real_windows(tokenizer, t), rounds)
        record["latency_us"][str(t)], record["dense_latency_us"][str(t)] = ours, theirs
        record["dense_over_ours"][str(t)] = theirs / ours
    record["fc_policy"] = fc_policy(model)
    print(f"{path}: " + ", ".join(f"T={t} {record['latency_us'][str(t)] / 1e3:.1f} ms vs dense "
                                  f"{record['dense_latency_us'][str(t)] / 1e3:.1f} ms "
                                  f"({record['dense_over_ours'][str(t)]:.2f}x)" for t in SEQ_LENGTHS), flush=True)
    return record


def main(argv=None) -> dict:
    """Measure every file; write and return the records."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="compressed all-MiniLM-L6-v2 files (.dcz)")
    parser.add_argument("--rounds", type=int, default=25, help="rounds per sequence length (default 25)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results file (default {RESULTS.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    tokenizer = load_tokenizer()
    dense = torch_model(load_minilm())
    result = {"threads": 1, "rounds": args.rounds, "torch": torch.__version__,
              "command": "python benchmarks/minilm_latency.py " + " ".join(str(f) for f in args.files),
              "records": [file_record(path, dense, tokenizer, args.rounds) for path in args.files]}
    atomic.write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
