"""`deepcompress study NAME [--quick] [--out RESULTS_DIR]`: re-run one of the talk's experiments on real data."""

from __future__ import annotations

import importlib
import shlex
import sys
import time
from pathlib import Path

from .studies import STUDIES, module_name

DEFAULT_OUT = "results"


def study_command(name: str, out: Path, quick: bool, runs: Path = Path("runs")) -> str:
    """The command line that reproduces study `name` with these settings."""
    words = ["study", name, *(["--quick"] if quick else []), "--out", str(out)]
    if not quick and Path(runs) != Path("runs"):
        words += ["--runs", str(runs)]
    return "deepcompress " + shlex.join(words)


def run_study(name: str, out: Path, quick: bool, runs: Path = Path("runs")) -> Path:
    """Run study `name` and write OUT/NAME/study.json with its figures; returns that file's path."""
    from .studies.bench import Bench
    from .studies.common import Study

    module = importlib.import_module(module_name(name))
    study = Study(name, module.TITLE, study_command(name, out, quick, runs), Path(out) / name)
    module.run(Bench(quick, Path(runs)), study)
    return study.write()


def _run(args) -> int:
    import torch

    # one thread: torch's idle threads spin on a shared 2-core machine (see cli_runtime._limit_threads)
    torch.set_num_threads(1)
    names = list(STUDIES) if args.name == "all" else [args.name]
    for name in names:
        start = time.perf_counter()
        print(f"study {name}{' (quick)' if args.quick else ''} ...", file=sys.stderr, flush=True)
        path = run_study(name, Path(args.out), args.quick, Path(args.runs))
        print(f"{name}: {path} ({time.perf_counter() - start:.0f} s)")
    return 0


def register(sub) -> None:
    """Add the `study` command."""
    p = sub.add_parser("study", help="re-run one of the talk's experiments on real data (JSON + PNG)",
                       description="Run one of the talk's experiments on MNIST / Fashion-MNIST / Jane Austen and write "
                                   "RESULTS_DIR/NAME/study.json (claims, tables, figures) and its PNG plots; "
                                   "`deepcompress report RESULTS_DIR` turns them into a page. See docs/STUDIES.md.")
    p.add_argument("name", choices=[*STUDIES, "all"], help="the study (all: every one in turn)")
    p.add_argument("--quick", action="store_true",
                   help="tiny subsets, one epoch, the committed fixture files (seconds to a minute; for tests)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"results folder (default {DEFAULT_OUT})")
    p.add_argument("--runs", default="runs",
                   help="full mode: where trained baselines (RUNS/MODEL-DATA/model.pt) and compressed files "
                        "(RUNS/compress-MODEL-DATA/model.dcz) are read from, or made and kept (default runs)")
    p.set_defaults(func=_run)
