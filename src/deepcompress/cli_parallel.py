"""`deepcompress train-parallel`: the `train` command run as N local data-parallel processes."""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import sys
from pathlib import Path

from . import atomic, cli_train
from .data import load_dataset
from .errors import UserError


def _train_parser() -> argparse.ArgumentParser:
    # Borrow every option of `train`, so the two commands cannot drift apart.
    scratch = argparse.ArgumentParser(add_help=False).add_subparsers()
    cli_train.register(scratch)
    return scratch.choices["train"]


def _run_under_torchrun(args, cfg, out, data) -> int:
    from datetime import timedelta

    import torch.distributed as dist

    from .parallel.data_parallel import global_config, train_rank
    from .train import load_checkpoint

    # Rank, world size and rendezvous come from torchrun's environment; a peer that stops answering
    # (its host gone, its link cut) fails the next collective after --timeout seconds.
    dist.init_process_group("gloo", timeout=timedelta(seconds=args.timeout))
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        result = train_rank(args.model, data, global_config(cfg, world), out, resume=args.resume,
                            progress=not args.quiet and rank == 0)
    except UserError:
        raise
    except Exception as exc:  # gloo raises several types when a peer vanishes
        path = out / "checkpoint.pt"
        epoch = load_checkpoint(path)["epoch"] if path.exists() else 0
        print(f"rank {rank}/{world} (node {os.environ.get('GROUP_RANK', '?')}, host {socket.gethostname()}): "
              f"training failed: {type(exc).__name__}: "
              f"{str(exc).splitlines()[0] if str(exc) else ''}\n"
              f"rank {rank}/{world}: last checkpoint {path} is at epoch {epoch} of {cfg.epochs}; "
              f"run the same command with --resume to continue from it", file=sys.stderr, flush=True)
        return 1
    finally:
        dist.destroy_process_group()
    print(f"rank {rank}/{world}: test error {100 * result.test_error:.2f}%")
    return 0


def run(args) -> int:
    """Run the `train` options in `args` data-parallel: args.workers local processes, or one torchrun rank."""
    from .parallel.data_parallel import global_config, run_data_parallel

    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    cfg = cli_train.train_config(args)
    if getattr(args, "torchrun", False):
        return _run_under_torchrun(args, cfg, Path(args.out or f"runs/{args.model}-{args.data}-torchrun"),
                                   load_dataset(args.data, folder=args.data_dir))
    out = Path(args.out or f"runs/{args.model}-{args.data}-x{args.workers}")
    data = load_dataset(args.data, folder=args.data_dir)
    print(f"training {args.model} on {args.data} with {args.workers} processes x batch {cfg.batch_size} "
          f"(global batch {cfg.batch_size * args.workers}); output in {out}", file=sys.stderr)
    result = run_data_parallel(args.model, data, cfg, args.workers, out, resume=args.resume,
                               progress=not args.quiet, threads=getattr(args, "threads", None),
                               restarts=getattr(args, "restarts", 0))
    record = {
        "model": args.model, "dataset": args.data, "test_error": result.test_error, "epochs": cfg.epochs,
        "workers": args.workers, "wall_s": round(result.wall_s, 1), "restarts": len(result.faults),
        "config": vars(global_config(cfg, args.workers)), "command": "deepcompress " + shlex.join(args.argv),
    }
    atomic.write_json(out / "train.json", {**record, "history": result.history, "faults": result.faults})
    if args.record:
        cli_train.record_result(Path(args.record), record)
    print(f"{args.model} on {args.data}, {args.workers} workers: test error {100 * result.test_error:.2f}% "
          f"({cfg.epochs} epochs, {result.wall_s:.0f} s)")
    return 0


def register(sub) -> None:
    """Add the `train-parallel` command."""
    p = sub.add_parser("train-parallel", parents=[_train_parser()], add_help=False,
                       help="train with N local data-parallel processes (DDP over gloo)",
                       description="Like `train`, split over N local processes that average gradients each "
                                   "step. --batch-size is per process: N workers with batch B train like one "
                                   "with batch N x B. Only rank 0 prints and writes OUT/checkpoint.pt.")
    p.set_defaults(workers=2, func=run)  # --workers comes from `train`
    p.add_argument("--threads", type=int, help="torch threads per process (default: cores / workers)")
    p.add_argument("--restarts", type=int, default=0,
                   help="when a worker dies, report it and restart from the last checkpoint up to this many times")
    p.add_argument("--torchrun", action="store_true",
                   help="be one process of a torchrun job (several hosts); --workers is then ignored")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="with --torchrun: seconds a collective waits for a silent peer before failing (default 300)")


if __name__ == "__main__":  # python -m deepcompress.cli_parallel train-parallel ... (e.g. under torchrun)
    _parser = argparse.ArgumentParser(prog="deepcompress")
    register(_parser.add_subparsers(dest="command"))
    _args = _parser.parse_args()
    _args.argv = sys.argv[1:]
    sys.exit(_args.func(_args))
