"""Run compressed model files on every hardware model and print one frames/s, frames/J, frames/s/mm^2 table.

    python benchmarks/hardware_model.py runs/compress-lenet-300-100-mnist/model.dcz [more.dcz ...]
    python benchmarks/hardware_model.py          # a LeNet-5-shaped file with random weights (see below)
    python benchmarks/hardware_model.py FILE --standin   # both

Without arguments it writes a stand-in: the Caffe LeNet-5 shapes (conv 20 5x5, pool, conv 50 5x5, pool,
fc 800->500, fc 500->10) with uniform random weights at Deep Compression's kept fractions (66%, 12%, 8%,
19%) and a 16-entry codebook. Results go to benchmarks/results/hardware_model.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from deepcompress import format as dcz
from deepcompress.hardware.model_file import load_model
from deepcompress.hardware.model_sim import ARCHES, simulate_model

RESULTS = Path(__file__).resolve().parent / "results"
LENET5 = (("conv1", "conv", (20, 1, 5, 5), 0.66), ("conv2", "conv", (50, 20, 5, 5), 0.12),
          ("ip1", "fc", (500, 800), 0.08), ("ip2", "fc", (10, 500), 0.19))
LENET5_OPS = [{"op": "conv", "layer": "conv1", "stride": [1, 1], "padding": [0, 0]},
              {"op": "maxpool", "kernel": 2, "stride": 2},
              {"op": "conv", "layer": "conv2", "stride": [1, 1], "padding": [0, 0]},
              {"op": "maxpool", "kernel": 2, "stride": 2}, {"op": "flatten"}, {"op": "fc", "layer": "ip1"},
              {"op": "relu"}, {"op": "fc", "layer": "ip2"}]


def lenet5_standin(path: Path, seed: int = 0) -> Path:
    """Write the LeNet-5-shaped random stand-in to `path`."""
    rng = np.random.default_rng(seed)
    codebook = np.linspace(-0.5, 0.5, 16, dtype=np.float32)
    layers = []
    for name, kind, shape, density in LENET5:
        w = codebook[rng.integers(0, 16, size=shape)] * (rng.random(shape) < density)
        layers.append(dcz.QuantizedLayer.from_dense(name, kind, w.astype(np.float32), codebook))
    dcz.write(path, layers, {"model": "lenet5-standin", "input_shape": [1, 28, 28], "ops": LENET5_OPS})
    return path


def frames_table(results: dict) -> str:
    """One line per file and architecture: the totals."""
    head = f"{'model':<28}{'arch':<14}{'time us':>10}{'frames/s':>13}{'frames/J':>13}{'frames/s/mm^2':>15}"
    lines = [head, "-" * len(head)]
    for name, by_arch in results.items():
        for arch, records in by_arch.items():
            t = records[-1]
            fpsmm = t.get("frames_per_s_mm2")
            lines.append(f"{name[:27]:<28}{t['arch']:<14}{t['time_us']:>10.2f}{t['frames_per_s']:>13,.0f}"
                         f"{t['frames_per_j']:>13,.0f}{'-' if fpsmm is None else format(fpsmm, ',.0f'):>15}")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path, help=".dcz files (default: the LeNet-5 stand-in)")
    ap.add_argument("--standin", action="store_true", help="run the LeNet-5 stand-in as well as FILES")
    ap.add_argument("--act-density", type=float, default=0.5, help="EIE input activation density (default 0.5)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        files = list(args.files)
        if args.standin or not files:
            files.append(lenet5_standin(Path(tmp) / "lenet5-standin.dcz"))
        results = {}
        for path in files:
            name = path.stem if path.stem != "model" else path.parent.name
            model = load_model(path)  # read and parsed once for the four architectures
            results[name] = {arch: simulate_model(model, arch, act_density=args.act_density) for arch in ARCHES}
    print(frames_table(results))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hardware_model.json").write_text(json.dumps(
        {"act_density": args.act_density, "files": [str(f) for f in args.files] + (["lenet5 stand-in"] if
                                                                                  args.standin or not args.files else []),
         "results": results}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
