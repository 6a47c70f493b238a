"""`deepcompress train`: train a baseline model and report its test error."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from . import atomic
from .data import DATASETS
from .errors import UserError, check_parallelism, one_line_os_errors

if TYPE_CHECKING:
    from .train import TrainConfig

# The --model choices, named here so that building the command line does not import torch (models.py
# does); tests/test_cli.py checks they are models.MODELS.
MODEL_NAMES = ("lenet-300-100", "lenet-5")
def model_name(value: str) -> str:
    """--model's value: a built-in model name, or FILE.py:FUNCTION (checked when the model is built)."""
    path, sep, func = value.rpartition(":")
    if value in MODEL_NAMES or (sep and path.endswith(".py") and func.isidentifier()):
        return value
    raise argparse.ArgumentTypeError(f"{value!r}: choose one of {', '.join(MODEL_NAMES)} or give FILE.py:FUNCTION")


OVERRIDES = ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "schedule", "seed")


def checked_recipe(args, tables: tuple[str, ...], purpose: str):
    """The --recipe file (or the model's built-in recipe), checked whole before any work: every table and
    key, the layers it names against --model, and that it has `tables` (`purpose` says who needs them)."""
    from .compress.prune import prunable_layers
    from .compress.recipe import read_recipe
    from .models import build_model

    if args.model not in MODEL_NAMES and not args.recipe:
        raise UserError(f"--model {args.model}: your own model needs --recipe (the built-in recipes are for "
                        f"{', '.join(MODEL_NAMES)})")
    recipe = read_recipe(args.model, args.recipe)
    recipe.require(tables, purpose)
    recipe.check_layers(prunable_layers(build_model(args.model)), args.model)
    return recipe


def train_config(args) -> TrainConfig:
    """The model's recipe [train] table, with any option given on the command line on top."""
    recipe = checked_recipe(args, ("train",), "training needs [train]")
    overrides = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
    return replace(recipe.for_dataset(args.data).train, **overrides)


def record_result(path: Path, record: dict) -> None:
    """Add `record` to the JSON list at `path`, replacing any record for the same model and dataset."""
    records = []
    if path.exists():
        try:
            records = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: not valid JSON ({exc}); refusing to overwrite it") from None
        if not isinstance(records, list):
            raise UserError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
    key = (record["model"], record["dataset"])
    records = [r for r in records if (r.get("model"), r.get("dataset")) != key] + [record]
    atomic.write_json(path, records)


RUN_FILES = ("checkpoint.pt", "model.pt", "train.json")


def resume_command(args) -> str:
    """The command line that continues this run: the same options with --resume (and without --overwrite)."""
    argv = [a for a in args.argv if a != "--overwrite"]
    return "deepcompress " + shlex.join(argv + ([] if "--resume" in argv else ["--resume"]))


def interrupted(args, saved: str) -> int:
    """Report a Ctrl-C in one line (what was saved, how to resume); the exit status for it."""
    print(f"deepcompress {args.command}: interrupted; {saved}; to continue: {resume_command(args)}",
          file=sys.stderr, flush=True)
    return 130


def fresh_output(out: Path, args, files, what: str) -> Path:
    """`out`, checked writable before any work; a previous run in it (any of `files`, names or glob
    patterns) is refused unless --resume continues it or --overwrite removes it first."""
    atomic.writable_folder(out)
    found = sorted({p for pattern in files for p in out.glob(pattern)})
    if found and not args.resume:
        if not getattr(args, "overwrite", False):
            raise UserError(f"--out {out} already holds {what} ({found[0].name}); pass --resume to continue it "
                            f"or --overwrite to start over")
        for path in found:
            path.unlink(missing_ok=True)  # torchrun: another host's rank may have removed it already
    return out


def _saved_training(out: Path) -> str:
    """What an interrupted `train` left behind, in words."""
    from .train import load_checkpoint

    path = out / "checkpoint.pt"
    try:
        state = load_checkpoint(path)
        return f"{path} holds epoch {state['epoch']} of {state['config']['epochs']}"
    except (UserError, KeyError, TypeError):
        return "no epoch had finished, so nothing was saved"


@one_line_os_errors
def _run(args) -> int:
    check_parallelism("--workers", args.workers, refuse_per_core=4)
    default = f"runs/{args.model}-{args.data}" + (f"-x{args.workers}" if args.workers != 1 else "")
    out = Path(args.out or default)
    cfg = train_config(args)  # the recipe and options are checked before anything is written
    fresh_output(out, args, RUN_FILES, "a training run")
    args.out = str(out)
    try:
        return _train(args, cfg, out)
    except KeyboardInterrupt:
        return interrupted(args, _saved_training(out))


def _train(args, cfg, out: Path) -> int:
    if args.workers != 1:
        from .cli_parallel import run as run_parallel

        return run_parallel(args)
    import torch

    from .data_torch import load_dataset
    from .models import build_model
    from .train import make_deterministic, train

    data = load_dataset(args.data, folder=args.data_dir)
    make_deterministic(cfg.seed)
    model = build_model(args.model)
    print(f"training {args.model} on {args.data} ({len(data.train_y)} train / {len(data.test_y)} test), "
          f"{cfg.epochs} epochs, {cfg.optimizer} lr {cfg.lr} {cfg.schedule}; output in {out}", file=sys.stderr)
    result = train(model, data, cfg, checkpoint=out / "checkpoint.pt", resume=args.resume,
                   progress=not args.quiet, verbose=not args.quiet)
    with atomic.atomic_path(out / "model.pt") as tmp:
        torch.save(model.state_dict(), tmp)
    record = {
        "model": args.model, "dataset": args.data, "test_error": result.test_error, "epochs": cfg.epochs,
        "wall_s": round(result.wall_s, 1), "config": vars(cfg),
        "command": "deepcompress " + shlex.join(args.argv),
        "torch_threads": torch.get_num_threads(),
    }
    atomic.write_json(out / "train.json", {**record, "history": result.history})
    if args.record:
        record_result(Path(args.record), record)
    print(f"{args.model} on {args.data}: test error {100 * result.test_error:.2f}% "
          f"({cfg.epochs} epochs, {result.wall_s:.0f} s)")
    return 0


def add_torchrun_args(p, torchrun_help: str) -> None:
    """The --torchrun flag (be one rank of a multi-host torchrun job) and its --timeout."""
    p.add_argument("--torchrun", action="store_true", help=torchrun_help)
    p.add_argument("--timeout", type=float, default=300.0,
                   help="with --torchrun: seconds a collective waits for a silent peer before failing "
                        "(default %(default)s)")


def add_model_data_args(p) -> None:
    """The --model, --data and --data-dir options every model command shares."""
    p.add_argument("--model", type=model_name, default="lenet-300-100", metavar="|".join(MODEL_NAMES) + "|FILE.py:FN",
                   help="a built-in model, or FILE.py:FN, a function of yours returning an nn.Module "
                        "(then give --recipe)")
    p.add_argument("--data", choices=DATASETS, default="mnist")
    p.add_argument("--data-dir", help="folder of IDX files to use instead of the installed data set")


def register(sub) -> None:
    """Add the `train` command."""
    p = sub.add_parser("train", help="train a baseline model and print its test error",
                       description="Train a model with its recipe's [train] settings (options override them), "
                                   "checkpoint every epoch, and print the test error.")
    add_model_data_args(p)
    p.add_argument("--recipe", help="TOML recipe file (default: the model's built-in recipe)")
    p.add_argument("--out", help="output folder (default runs/MODEL-DATA)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if it exists")
    p.add_argument("--overwrite", action="store_true", help="start over in an OUT that holds an earlier run")
    p.add_argument("--record", help="add the result to this JSON list (e.g. benchmarks/results/baselines.json)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no per-epoch lines")
    p.add_argument("--epochs", type=int, help="(at most 10,000)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--optimizer", choices=("sgd", "adam"))
    p.add_argument("--lr", type=float)
    p.add_argument("--momentum", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--schedule", choices=("constant", "step", "cosine"))
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=int, default=1,
                   help="local data-parallel processes (DDP over gloo; default %(default)s); --batch-size is then per "
                        "process and the output folder defaults to runs/MODEL-DATA-xN (see docs/PARALLEL.md); "
                        "more than the cores warns, more than 4 per core is refused")
    p.set_defaults(func=_run)

