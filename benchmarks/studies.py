"""Run the talk's experiments in full mode (all of MNIST / Fashion-MNIST, the recipes' baselines and files).

    python benchmarks/studies.py                         # every study (hours on 2 shared cores: trains baselines)
    python benchmarks/studies.py cost-of-operations pruning-plus-quantization   # some of them

Writes benchmarks/results/studies/NAME/study.json and its PNGs, and benchmarks/results/studies/index.json
(each study's wall time and how many of its claims agree). Baselines and compressed files are read from, or
made and kept in, runs/ (RUNS/MODEL-DATA/model.pt, RUNS/compress-MODEL-DATA/model.dcz); train them first with
benchmarks/baselines.sh and `deepcompress compress` to reuse the recorded ones. `deepcompress report
benchmarks/results/studies` makes the page.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from deepcompress import atomic
from deepcompress.cli_study import run_study
from deepcompress.studies import STUDIES

ROOT = Path(__file__).resolve().parent.parent
OUT = Path("benchmarks/results/studies")  # relative to the repository root, where this script runs


def main(argv: list[str] | None = None) -> int:
    """Run the named studies (default all) in full mode and update the index."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"studies to run (default all: {', '.join(STUDIES)})")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="baselines and compressed files (default runs)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"results folder (default {OUT})")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in STUDIES]
    if unknown:
        parser.error(f"unknown study {', '.join(unknown)}; choose from {', '.join(STUDIES)}")
    os.chdir(ROOT)
    torch.set_num_threads(1)  # torch's idle threads spin on a shared 2-core machine
    index_path = args.out / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    for name in args.names or STUDIES:
        start = time.perf_counter()
        print(f"study {name} (full) ...", file=sys.stderr, flush=True)
        doc = json.loads(run_study(name, args.out, quick=False, runs=args.runs).read_text())
        wall = time.perf_counter() - start
        claims = doc["claims"]
        index[name] = {"wall_s": round(wall, 1), "claims": len(claims), "agree": sum(c["agrees"] for c in claims),
                       "command": doc["command"], "torch_threads": 1}
        atomic.write_json(index_path, index)
        print(f"{name}: {sum(c['agrees'] for c in claims)}/{len(claims)} claims agree ({wall:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
