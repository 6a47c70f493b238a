"""`deepcompress compress`: the Deep Compression pipeline from a model name to a .dcz file and a report."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UserError
from .cli_train import add_model_data_args, add_torchrun_args, checked_recipe

if TYPE_CHECKING:
    from .train import TrainConfig


COLLECTIVE_TIMEOUT_S = 6 * 3600.0


def baseline(args, settings: TrainConfig | None, data, out: Path, team=None):
    """The trained starting model: from --checkpoint, or trained with `settings` (the recipe's [train]).

    `team` (default: this process alone) is who trains it; see deepcompress.compress.pipeline.Team.
    """
    import torch

    from .models import build_model
    from .train import load_weights

    model = build_model(args.model)
    if args.checkpoint:
        return load_weights(model, Path(args.checkpoint), args.model)
    from .compress.pipeline import Run, Team

    if settings is None:
        raise UserError("training a baseline needs a recipe with a [train] table, or pass --checkpoint")
    run = Run(out, data, args.resume, not args.quiet, team or Team())
    torch.manual_seed(settings.seed)
    model = build_model(args.model)
    if run.team.writes:
        print(f"training the {args.model} baseline ({settings.epochs} epochs); pass --checkpoint to skip",
              file=sys.stderr)
    run.fit(model, settings, "baseline")
    return model


def _compress(args, recipe, data, out: Path, team=None) -> int:
    """The command's work in this process: baseline, compress_model, report (the writing rank only)."""
    from .compress import compress_model

    model = baseline(args, recipe.for_dataset(args.data).train, data, out, team)
    meta = {"model": args.model, "dataset": args.data, "input_shape": list(data.test_x.shape[1:])}
    outcome = compress_model(model, data, recipe, out, meta=meta, resume=args.resume, progress=not args.quiet,
                             team=team, command="deepcompress " + shlex.join(args.argv))
    if outcome is None:  # a data-parallel rank other than 0
        return 0
    rec = outcome["record"]
    print(f"{args.model} on {args.data}: {rec['file_bytes']:,} bytes, ratio {rec['ratio']:.1f}x, "
          f"test error from the file {100 * rec['test_error']:.2f}% (baseline {100 * rec['baseline_error']:.2f}%); "
          f"report: {out / 'report.md'}", flush=True)
    return 0


def _rank(rank: int, world: int, args, recipe, data, out: Path) -> None:
    """One data-parallel process of `compress --workers N`, inside the gloo group the launcher made."""
    from .parallel.compression import RankTeam

    _compress(args, recipe, data, out, RankTeam())


def _run_under_torchrun(args, recipe, data, out: Path) -> int:
    """This process as one rank of a torchrun job (rank, world and rendezvous from its environment)."""
    from .parallel.compression import RankTeam
    from .parallel.launch import rank_failure, torchrun_group

    # The other ranks leave after the last broadcast (the codebooks) while rank 0 encodes alone, so no
    # collective waits on rank 0's local work; --timeout bounds the wait for a silent peer during training.
    with torchrun_group(args.timeout) as (rank, world):
        try:
            return _compress(args, recipe, data, out, RankTeam())
        except UserError:
            raise
        except Exception as exc:  # gloo raises several types when a peer vanishes
            print(f"{rank_failure(rank, world, 'compression', exc)}\n"
                  f"rank {rank}/{world}: finished stages and checkpoints are in {out}; run the same command "
                  f"with --resume to continue from them", file=sys.stderr, flush=True)
            return 1


def _run(args) -> int:
    from .data_torch import load_dataset

    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    recipe = checked_recipe(args, ("prune", "quantize") if args.checkpoint else ("prune", "quantize", "train"),
                            "compress needs [prune] and [quantize], and [train] unless --checkpoint gives the "
                            "trained model ([encode] is optional)")
    data = load_dataset(args.data, folder=args.data_dir)
    out = Path(args.out or f"runs/compress-{args.model}-{args.data}")
    if args.torchrun:
        return _run_under_torchrun(args, recipe, data, out)
    if args.workers == 1:
        return _compress(args, recipe, data, out)
    from .parallel.data_parallel import default_threads
    from .parallel.launch import WorkerError, spawn

    if args.checkpoint:
        baseline(args, None, data, out)  # a checkpoint that does not fit is one clear error, here
    print(f"compressing {args.model} on {args.data} with {args.workers} data-parallel processes (the recipe's "
          f"batch sizes are split among them); output in {out}", file=sys.stderr)
    try:
        # Ranks 1.. wait in a collective while rank 0 alone encodes, evaluates and writes; a dead rank is
        # caught by the launcher's watch, so the collective timeout is only a backstop and must outlast that.
        spawn(_rank, (args, recipe, data, out), args.workers, timeout_s=None,
              threads=default_threads(args.workers), collective_timeout_s=COLLECTIVE_TIMEOUT_S)
    except WorkerError as exc:
        raise UserError(str(exc)) from None
    return 0


def register(sub) -> None:
    """Add the `compress` command."""
    p = sub.add_parser("compress", help="prune, quantize and encode a model to a .dcz file, with a report",
                       description="Run Deep Compression: baseline (or --checkpoint), prune + retrain, "
                                   "quantize + fine-tune centroids, encode to OUT/model.dcz, and measure the "
                                   "test error of the file itself. Writes OUT/report.md and OUT/results.json.")
    add_model_data_args(p)
    p.add_argument("--checkpoint", help="trained weights to start from (model.pt or a training checkpoint)")
    p.add_argument("--recipe", help="TOML recipe (default: the model's built-in recipe)")
    p.add_argument("--out", help="output folder (default runs/compress-MODEL-DATA)")
    p.add_argument("--resume", action="store_true", help="skip finished stages and continue interrupted ones")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.add_argument("--workers", type=int, default=1,
                   help="local data-parallel processes for the training stages (DDP over gloo; default "
                        "%(default)s); the recipe's batch sizes are global and split among them, so the "
                        "result matches one process (see docs/PARALLEL.md)")
    add_torchrun_args(p, "be one rank of a torchrun job (several hosts; OUT on storage every host sees); "
                         "--workers is then ignored")
    p.set_defaults(func=_run)
    register_sensitivity(sub)


def _sensitivity(args) -> int:
    from . import atomic
    from .compress.sensitivity import plot_sensitivity, sensitivity, suggest_sparsity
    from .data_torch import load_dataset

    if not args.checkpoint:
        raise UserError("sensitivity needs --checkpoint with trained weights (e.g. runs/MODEL-DATA/model.pt)")
    data = load_dataset(args.data, folder=args.data_dir, validation=True)
    model = baseline(args, None, data, Path(args.out))
    curves = sensitivity(model, data.valid_x, data.valid_y)
    out = Path(args.out)
    suggestion = suggest_sparsity(curves, args.tolerance)
    atomic.write_json(out / "sensitivity.json", {"model": args.model, "dataset": args.data, "split": "validation",
                                                 "curves": curves, "suggested_sparsity": suggestion,
                                                 "tolerance": args.tolerance})
    plot_sensitivity(curves, out / "sensitivity.png", f"{args.model} on {args.data} (validation split)")
    for name, points in curves.items():
        print(f"{name:>8}: " + "  ".join(f"{100 * s:.0f}%:{100 * e:.2f}" for s, e in points))
    print("suggested [prune.layers] (error within "
          f"{100 * args.tolerance:.1f}% of unpruned, before retraining):")
    for name, s in suggestion.items():
        print(f"{name} = {s}")
    return 0


def register_sensitivity(sub) -> None:
    """Add the `sensitivity` command."""
    p = sub.add_parser("sensitivity", help="prune one layer at a time and plot error against sparsity",
                       description="Prune each layer alone at increasing sparsity (no retraining), measure the "
                                   "validation error (last 10k training images), plot the curves and suggest "
                                   "per-layer sparsities. Writes OUT/sensitivity.png and OUT/sensitivity.json.")
    add_model_data_args(p)
    p.add_argument("--checkpoint", help="trained weights (model.pt or a training checkpoint)")
    p.add_argument("--out", default="runs/sensitivity", help="output folder")
    p.add_argument("--tolerance", type=float, default=0.005, help="allowed error increase for a suggestion")
    p.set_defaults(func=_sensitivity)
