"""`deepcompress compress`: the Deep Compression pipeline from a model name to a .dcz file and a report."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import atomic
from .errors import UserError, check_parallelism, one_line_os_errors
from .cli_train import add_model_data_args, add_torchrun_args, checked_recipe, fresh_output, interrupted

if TYPE_CHECKING:
    from .train import TrainConfig


COLLECTIVE_TIMEOUT_S = 6 * 3600.0


def baseline(args, settings: TrainConfig | None, data, out: Path, team=None):
    """The trained starting model: from --checkpoint, or trained with `settings` (the recipe's [train]).

    `team` (default: this process alone) is who trains it; see deepcompress.compress.pipeline.Team.
    """
    from .models import build_model
    from .train import load_weights, make_deterministic

    model = build_model(args.model)
    if args.checkpoint:
        return load_weights(model, Path(args.checkpoint), args.model)
    from .compress.pipeline import Run, Team

    if settings is None:
        raise UserError("training a baseline needs a recipe with a [train] table, or pass --checkpoint")
    run = Run(out, data, args.resume, not args.quiet, team or Team())
    make_deterministic(settings.seed)
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
    outcome = compress_model(model, data, recipe, out, meta=meta, resume=args.resume, overwrite=args.overwrite,
                             progress=not args.quiet, team=team, command="deepcompress " + shlex.join(args.argv))
    if outcome is None:  # a data-parallel rank other than 0
        return 0
    rec = outcome["record"]
    return _done(args, out, f"{args.model} on {args.data}: {rec['file_bytes']:,} bytes, ratio {rec['ratio']:.1f}x, "
                            f"test error from the file {100 * rec['test_error']:.2f}% (baseline "
                            f"{100 * rec['baseline_error']:.2f}%); report: {out / 'report.md'}")


def _done(args, out: Path, summary: str) -> int:
    """Print a finished run's summary and what became of its stage files."""
    print(summary, flush=True)
    print(_tidy(out, "all" if args.keep_stages else "none" if args.clean else "resume"), flush=True)
    return 0


def _megabytes(paths) -> str:
    return f"{sum(p.stat().st_size for p in paths) / 1e6:.1f} MB"


def _tidy(out: Path, keep: str) -> str:
    """Remove the finished run's stage files that `keep` lets go; one line saying what stayed and why."""
    from .compress.run_folder import tidy_stages

    sizes = {p: p.stat().st_size for p in out.iterdir()}  # before any is removed
    kept, removed = tidy_stages(out, keep)
    gone = f"removed {len(removed)} intermediate stage files ({sum(sizes[p] for p in removed) / 1e6:.1f} MB)"
    if not kept:
        return f"stages: {gone}; --resume would start over"
    names = ", ".join(p.name for p in kept)
    if keep == "all":
        return f"stages: kept all ({names}; {_megabytes(kept)}) as --keep-stages asked"
    return (f"stages: kept {names} ({_megabytes(kept)}) so that --resume can re-encode without retraining "
            f"(e.g. after changing [encode]); {gone}; --clean removes them all, --keep-stages keeps every one")


def _saved_stages(out: Path) -> str:
    """What an interrupted `compress` left behind, in words."""
    from .compress.run_folder import stage_files

    files = stage_files(out)
    if not files:
        return "no stage had saved anything yet"
    return f"finished stages and training checkpoints in {out}: {', '.join(p.name for p in files)}"


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


@one_line_os_errors
def _run(args) -> int:
    check_parallelism("--workers", args.workers, refuse_per_core=4)
    if args.clean and args.keep_stages:
        raise UserError("--clean removes the stage files and --keep-stages keeps them: give one of them")
    if args.model == "minilm":
        return _run_minilm(args)
    recipe = checked_recipe(args, ("prune", "quantize") if args.checkpoint else ("prune", "quantize", "train"),
                            "compress needs [prune] and [quantize], and [train] unless --checkpoint gives the "
                            "trained model ([encode] is optional)")
    from .compress.run_folder import RESULT_FILES, STAGE_FILES

    out = fresh_output(Path(args.out or f"runs/compress-{args.model}-{args.data}"), args,
                       (*STAGE_FILES, *RESULT_FILES), "a compression run")
    try:
        return _run_checked(args, recipe, out)
    except KeyboardInterrupt:
        return interrupted(args, _saved_stages(out))


def _run_minilm(args) -> int:
    """`compress --model minilm`: the pretrained sentence encoder, distilled on the recipe's text."""
    from .compress.run_folder import RESULT_FILES, STAGE_FILES
    from .minilm_compress import compress_minilm, minilm_recipe

    if args.checkpoint or args.workers != 1 or args.torchrun:
        raise UserError("--model minilm starts from the pretrained weights in one process: --checkpoint, "
                        "--workers and --torchrun do not apply")
    recipe = minilm_recipe(args.recipe)
    out = fresh_output(Path(args.out or "runs/compress-minilm"), args, (*STAGE_FILES, *RESULT_FILES),
                       "a compression run")
    try:
        outcome = compress_minilm(out, recipe, resume=args.resume, overwrite=args.overwrite,
                                  progress=not args.quiet, command="deepcompress " + shlex.join(args.argv))
    except KeyboardInterrupt:
        return interrupted(args, _saved_stages(out))
    rec, cosine = outcome["record"], 1 - outcome["test_" + outcome["metric"]]
    return _done(args, out, f"all-MiniLM-L6-v2: {rec['file_bytes']:,} bytes, ratio {rec['ratio']:.1f}x, mean cosine "
                            f"to the uncompressed model on held-out text {cosine:.4f}; report: {out / 'report.md'}\n"
                            f"try: deepcompress run {out / 'model.dcz'} --text \"A sentence.\" --text \"Another one.\"")


def _run_checked(args, recipe, out: Path) -> int:
    from .data_torch import load_dataset

    data = load_dataset(args.data, folder=args.data_dir)
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
    add_model_data_args(p, pretrained=("minilm",))
    p.add_argument("--checkpoint", help="trained weights to start from (model.pt or a training checkpoint)")
    p.add_argument("--recipe", help="TOML recipe (default: the model's built-in recipe)")
    p.add_argument("--out", help="output folder (default runs/compress-MODEL-DATA)")
    p.add_argument("--resume", action="store_true",
                   help="skip finished stages and continue interrupted ones (refused if the recipe's [prune] or "
                        "[quantize], the model or the data differ from what the stages were made with)")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in an OUT that holds an earlier run (its stage files and results are removed)")
    p.add_argument("--keep-stages", action="store_true",
                   help="keep every stage file after a finished run (by default only what --resume needs "
                        "to re-encode stays)")
    p.add_argument("--clean", action="store_true", help="remove every stage file after a finished run")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.add_argument("--workers", type=int, default=1,
                   help="local data-parallel processes for the training stages (DDP over gloo; default "
                        "%(default)s); the recipe's batch sizes are global and split among them, so the "
                        "result matches one process (see docs/PARALLEL.md)")
    add_torchrun_args(p, "be one rank of a torchrun job (several hosts; OUT on storage every host sees); "
                         "--workers is then ignored")
    p.set_defaults(func=_run)
    register_sensitivity(sub)


@one_line_os_errors
def _sensitivity(args) -> int:
    from .compress.sensitivity import plot_sensitivity, sensitivity, suggest_sparsity
    from .data_torch import load_dataset

    if not args.checkpoint:
        raise UserError("sensitivity needs --checkpoint with trained weights (e.g. runs/MODEL-DATA/model.pt)")
    out = atomic.writable_folder(args.out)
    data = load_dataset(args.data, folder=args.data_dir)
    model = baseline(args, None, data, out)
    # `train` fits every training image (deepcompress.data), so the test set is the data its baselines have
    # not seen; the validation split (the last 10,000 training images) would report almost no error.
    print(f"sensitivity of {args.model}: error measured on the {args.data} test set ({len(data.test_y):,} images "
          f"the baseline was not trained on)", flush=True)
    curves = sensitivity(model, data.test_x, data.test_y)
    suggestion = suggest_sparsity(curves, args.tolerance)
    atomic.write_json(out / "sensitivity.json", {"model": args.model, "dataset": args.data, "split": "test",
                                                 "curves": curves, "suggested_sparsity": suggestion,
                                                 "tolerance": args.tolerance})
    plot_sensitivity(curves, out / "sensitivity.png", f"{args.model} on {args.data} (test set)")
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
                                   "test error (data the baseline was not trained on), plot the curves and suggest "
                                   "per-layer sparsities. Writes OUT/sensitivity.png and OUT/sensitivity.json.")
    add_model_data_args(p)
    p.add_argument("--checkpoint", help="trained weights (model.pt or a training checkpoint)")
    p.add_argument("--out", default="runs/sensitivity", help="output folder")
    p.add_argument("--tolerance", type=float, default=0.005, help="allowed error increase for a suggestion")
    p.set_defaults(func=_sensitivity)
