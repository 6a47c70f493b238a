"""Do the headline recipes meet their targets over seeds, not one lucky run?

For each model, trains baselines with several seeds (`deepcompress train --seed S`), compresses each one
with every headline recipe (the built-in `src/deepcompress/recipes/MODEL.toml` and, where it exists, the
stretch recipe `benchmarks/recipes/MODEL-stretch.toml`), and reports per recipe the mean and range of the
baseline error, the file's test error, its bytes and ratio. A target (benchmarks/compression.py TARGETS)
is called met only when the *mean* error and the *mean* ratio meet it.

    python benchmarks/seeds.py                                  # LeNet-300-100, seeds 0 1 2
    python benchmarks/seeds.py --models lenet-300-100 lenet-5 --seeds 0 1 2

Runs go to runs/seeds/ (a finished run is reused when the script is started again, so an interrupted
sweep continues); the records and the summary go to benchmarks/results/seeds.json after every run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "src"))

from compression import TARGETS  # noqa: E402

from deepcompress import atomic  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "seeds.json"
RUNS = ROOT / "runs" / "seeds"


def recipes(model: str) -> dict[str, Path | None]:
    """The headline recipes of `model`: variant name -> recipe file (None: the built-in one)."""
    found: dict[str, Path | None] = {"default": None}
    stretch = ROOT / "benchmarks" / "recipes" / f"{model}-stretch.toml"
    if stretch.exists():
        found["stretch"] = stretch
    return found


def deepcompress(*args: str, env: dict | None = None) -> None:
    """Run the deepcompress command from this checkout's source (with `env` added to this environment)."""
    env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT / "src")}
    subprocess.run([sys.executable, "-m", "deepcompress.cli", *args], cwd=ROOT, env=env, check=True)


def baseline(model: str, seed: int, runs: Path = RUNS, env: dict | None = None) -> tuple[Path, dict]:
    """Train (or reuse) the baseline of `model` with `seed` in `runs`; its weights and train.json record
    (test_error, torch_threads, ...)."""
    out = runs / f"{model}-seed{seed}"
    if not (out / "train.json").exists():
        deepcompress("train", "--model", model, "--data", "mnist", "--seed", str(seed), "--out", str(out),
                     "--quiet", "--resume", env=env)
    return out / "model.pt", json.loads((out / "train.json").read_text())


def compress(model: str, seed: int, variant: str, recipe: Path | None, weights: Path, runs: Path = RUNS,
             env: dict | None = None) -> dict:
    """Compress the baseline `weights` with `recipe` in `runs` (or reuse the finished run); its results record."""
    out = runs / f"{model}-seed{seed}-{variant}"
    if not (out / "results.json").exists():
        args = ["compress", "--model", model, "--data", "mnist", "--checkpoint", str(weights),
                "--out", str(out), "--quiet", "--resume"]
        deepcompress(*args, *(["--recipe", str(recipe)] if recipe else []), env=env)
    return json.loads((out / "results.json").read_text())


def spread(values: list[float]) -> dict:
    """Mean, min and max of `values`."""
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}


def summarize(runs: list[dict], seeds: list[int]) -> list[dict]:
    """Per (model, variant): mean and range over seeds, and whether the mean meets the target."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["model"], r["variant"]), []).append(r)
    rows = []
    for (model, variant), group in groups.items():
        row = {"model": model, "variant": variant, "seeds": [r["seed"] for r in group]}
        for key in ("baseline_error", "test_error", "file_bytes", "ratio"):
            row[key] = spread([r[key] for r in group])
        target = TARGETS.get((model, "mnist", variant))
        row["target"] = {"max_error": target[0], "min_ratio": target[1]} if target else None
        if target is None:
            row["verdict"] = "-"
        elif len(group) < len(seeds):
            row["verdict"] = f"incomplete ({len(group)} of {len(seeds)} seeds)"
        else:
            met = row["test_error"]["mean"] <= target[0] and row["ratio"]["mean"] >= target[1]
            row["verdict"] = "met (mean)" if met else "missed (mean)"
        rows.append(row)
    return rows


def save(runs: list[dict], seeds: list[int], command: str) -> list[dict]:
    """Write the runs and their summary to benchmarks/results/seeds.json; return the summary."""
    summary = summarize(runs, seeds)
    # torch_threads: this process's; each run has its baseline's (a sweep started without OMP_NUM_THREADS=1
    # trained with 2 threads, so a seed's numbers depend on how it was started)
    atomic.write_json(RESULTS, {"command": command, "seeds": seeds, "torch_threads": _threads(),
                                "summary": summary, "runs": runs})
    return summary


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def print_table(summary: list[dict]) -> None:
    """One line per recipe: means and ranges."""
    def pct(s):
        return f"{100 * s['mean']:.2f}% [{100 * s['min']:.2f}, {100 * s['max']:.2f}]"

    for row in summary:
        print(f"{row['model']:<14} {row['variant']:<8} baseline {pct(row['baseline_error'])}  "
              f"file {pct(row['test_error'])}  {row['file_bytes']['mean']:,.0f} B "
              f"[{row['file_bytes']['min']:,}, {row['file_bytes']['max']:,}]  "
              f"ratio {row['ratio']['mean']:.1f}x [{row['ratio']['min']:.1f}, {row['ratio']['max']:.1f}]  "
              f"{row['verdict']}", flush=True)


def main(argv: list[str]) -> int:
    """Train the baselines, compress each with every headline recipe, save and print the summary."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["lenet-300-100"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = p.parse_args(argv)
    command = "python benchmarks/seeds.py " + " ".join(argv)
    runs: list[dict] = []
    for model in args.models:
        for seed in args.seeds:
            start = time.perf_counter()
            weights, trained = baseline(model, seed)
            base_error = trained["test_error"]
            print(f"{model} seed {seed}: baseline {100 * base_error:.2f}% ({time.perf_counter() - start:.0f} s)",
                  flush=True)
            for variant, recipe in recipes(model).items():
                start = time.perf_counter()
                rec = compress(model, seed, variant, recipe, weights)
                runs.append({"model": model, "seed": seed, "variant": variant, "baseline_error": base_error,
                             "baseline_threads": trained["torch_threads"],
                             "test_error": rec["test_error"], "file_bytes": rec["file_bytes"],
                             "ratio": rec["ratio"], "wall_s": round(time.perf_counter() - start, 1),
                             "command": rec["command"]})
                print(f"  {variant}: {rec['file_bytes']:,} B, {rec['ratio']:.1f}x, "
                      f"{100 * rec['test_error']:.2f}%", flush=True)
                save(runs, args.seeds, command)
    print_table(save(runs, args.seeds, command))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
