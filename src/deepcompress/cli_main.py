"""`deepcompress main [--quick]`: the main job (`./run.sh`): train or reuse the baseline, compress it, run the
file with the CPU runtime against dense PyTorch, cost it on the hardware models, write the report, and print
a five-line summary."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from .errors import UserError, check_parallelism
from .cli_train import add_model_data_args, checked_recipe


def _recipe(args):
    """The checked recipe and its name: --recipe, else the model's built-in one (its -quick twin with --quick)."""
    from .recipes import recipe_path

    if args.quick and not args.recipe:
        quick = recipe_path(f"{args.model}-quick")
        if not quick.is_file():
            raise UserError(f"--quick: no quick recipe for {args.model} (built in for lenet-300-100); "
                            f"give --recipe FILE")
        args.recipe = str(quick)
    recipe = checked_recipe(args, ("prune", "quantize") if args.checkpoint else ("prune", "quantize", "train"),
                            "the main job needs [prune] and [quantize], and [train] unless --checkpoint is given")
    name = Path(args.recipe).name if args.recipe else "built-in"
    return recipe.for_dataset(args.data), name


def summary_lines(found: dict) -> list[str]:
    """The five lines the main job ends with: size, error, CPU speed-up, EIE frames/J, the report's path."""
    rec, lat = found["compression"], found["latency"]
    eie = found["hardware"]["arches"]["eie"][-1]
    return [
        f"size    {rec['file_bytes']:,} bytes, {rec['ratio']:.1f}x smaller than dense fp32 ({rec['dense_bytes']:,} bytes)",
        f"error   {100 * rec['baseline_error']:.2f}% dense -> {100 * found['runtime']['error']:.2f}% from the file "
        f"(CPU runtime, {found['runtime']['images']:,} test images)",
        f"CPU     {lat['speedup']:.2f}x faster than dense PyTorch at batch 1 ({lat['runtime']['median_us']:.1f} vs "
        f"{lat['torch']['median_us']:.1f} us per image, 1 thread, this machine)",
        f"EIE     {eie['frames_per_j']:,.0f} frames/J, {eie['frames_per_s']:,.0f} frames/s (model: 64 PEs, 45 nm, "
        f"input activations {100 * found['hardware']['act_density']:.0f}% nonzero)",
        f"report  {found['report']}",
    ]


def _run(args) -> int:
    import torch

    from .data_torch import load_dataset
    from .mainjob import MainJob, run

    check_parallelism("--threads", args.threads, refuse_per_core=4)
    torch.set_num_threads(args.threads)

    if args.latency_images is None:
        args.latency_images = 300 if args.quick else 1000
    if args.latency_images < 1:
        raise UserError(f"--latency-images must be at least 1, got {args.latency_images}")
    recipe, recipe_name = _recipe(args)
    tail = "-quick" if args.quick else ""
    runs = Path(args.runs)
    print(f"main job: {args.model} on {args.data}, {recipe_name} recipe; checkpoints in {runs}, results in "
          f"{args.results}", file=sys.stderr, flush=True)
    data = load_dataset(args.data, folder=args.data_dir)
    job = MainJob(model=args.model, data=data, recipe=recipe, recipe_name=recipe_name,
                  baseline_dir=runs / f"{args.model}-{args.data}{tail}",
                  compress_dir=runs / f"compress-{args.model}-{args.data}{tail}", results=Path(args.results),
                  command="deepcompress " + shlex.join(args.argv),
                  checkpoint=Path(args.checkpoint) if args.checkpoint else None,
                  latency_images=args.latency_images, progress=not args.quiet)
    found = run(job)
    print(f"main job done in {found['wall_s']:.0f} s", file=sys.stderr)
    print("\n".join(summary_lines(found)), flush=True)
    return 0


def register(sub) -> None:
    """Add the `main` command."""
    p = sub.add_parser("main", help="the main job: baseline, compress, run on the CPU, cost on hardware, report",
                       description="Train (or reuse) the baseline, compress it with Deep Compression, measure the "
                                   "file's test error and batch-1 latency against dense PyTorch with the CPU "
                                   "runtime, cost it on the EIE, DianNao, CPU and GPU models, and write "
                                   "RESULTS/main/study.json and RESULTS/report.html. ./run.sh runs this.")
    add_model_data_args(p)
    p.add_argument("--quick", action="store_true",
                   help="the quick recipe (few epochs; src/deepcompress/recipes/MODEL-quick.toml) and fewer "
                        "timed images: a first look in about two minutes")
    p.add_argument("--recipe", help="TOML recipe (default: the model's built-in recipe)")
    p.add_argument("--checkpoint", help="trained weights to start from instead of training the baseline")
    p.add_argument("--runs", default="runs", help="folder for checkpoints and the .dcz file (default %(default)s)")
    p.add_argument("--results", default="results",
                   help="folder of study folders; the job writes RESULTS/main and RESULTS/report.html "
                        "(default %(default)s)")
    p.add_argument("--latency-images", type=int,
                   help="test images timed one at a time for each of the two methods (default 1000, 300 "
                        "with --quick)")
    p.add_argument("--threads", type=int, default=1,
                   help="PyTorch threads for training (default 1: on a shared machine a second thread that "
                        "spin-waits made training 25x slower; see the README). Latency is always timed on 1")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.set_defaults(func=_run)
