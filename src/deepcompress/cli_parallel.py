"""`deepcompress train-parallel`: the `train` command run as N local data-parallel processes;
`deepcompress train-ps`: Downpour SGD with a sharded parameter server (deepcompress.parallel.param_server)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from . import atomic, cli_train
from .errors import UserError


def _train_parser() -> argparse.ArgumentParser:
    # Borrow every option of `train`, so the two commands cannot drift apart.
    scratch = argparse.ArgumentParser(add_help=False).add_subparsers()
    cli_train.register(scratch)
    return scratch.choices["train"]


def _run_under_torchrun(args, cfg, out, data) -> int:
    from .parallel.data_parallel import global_config, train_rank
    from .parallel.launch import rank_failure, torchrun_group
    from .train import load_checkpoint

    # A peer that stops answering (its host gone, its link cut) fails the next collective after --timeout s.
    with torchrun_group(args.timeout) as (rank, world):
        try:
            result = train_rank(args.model, data, global_config(cfg, world), out, resume=args.resume,
                                progress=not args.quiet and rank == 0)
        except UserError:
            raise
        except Exception as exc:  # gloo raises several types when a peer vanishes
            path = out / "checkpoint.pt"
            epoch = load_checkpoint(path)["epoch"] if path.exists() else 0
            print(f"{rank_failure(rank, world, 'training', exc)}\n"
                  f"rank {rank}/{world}: last checkpoint {path} is at epoch {epoch} of {cfg.epochs}; "
                  f"run the same command with --resume to continue from it", file=sys.stderr, flush=True)
            return 1
    print(f"rank {rank}/{world}: test error {100 * result.test_error:.2f}%")
    return 0


def run(args) -> int:
    """Run the `train` options in `args` data-parallel: args.workers local processes, or one torchrun rank."""
    from .data_torch import load_dataset
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
    """Add the `train-parallel` and `train-ps` commands."""
    p = sub.add_parser("train-parallel", parents=[_train_parser()], add_help=False,
                       help="train with N local data-parallel processes (DDP over gloo)",
                       description="Like `train`, split over N local processes that average gradients each "
                                   "step. --batch-size is per process: N workers with batch B train like one "
                                   "with batch N x B. Only rank 0 prints and writes OUT/checkpoint.pt.")
    p.set_defaults(workers=2, func=run)  # --workers comes from `train`
    p.add_argument("--threads", type=int, help="torch threads per process (default: cores / workers)")
    p.add_argument("--restarts", type=int, default=0,
                   help="when a worker dies, report it and restart from the last checkpoint up to this many times")
    cli_train.add_torchrun_args(p, "be one process of a torchrun job (several hosts); --workers is then ignored")
    register_ps(sub)


def staleness_lines(staleness: dict, width: int = 40) -> list[str]:
    """The staleness report as text: summary, then one bar per staleness value."""
    hist = staleness["histogram"]
    top = max(hist.values(), default=1)
    lines = [f"staleness (updates a shard applied between a worker's fetch and its gradient's arrival), "
             f"{staleness['gradients']:,} gradients: mean {staleness['mean']:.2f}, max {staleness['max']}"]
    lines += [f"  {k:>4}: {n:>9,}  {'#' * max(1, round(width * n / top))}" for k, n in hist.items()]
    return lines


def _ps_config(args):
    # The recipe's [train] table with the options on top; the servers always run SGD (see docs/PARALLEL.md).
    from dataclasses import replace

    return replace(cli_train.train_config(args), optimizer="sgd")


def run_ps(args) -> int:
    """`train-ps`: train with Downpour SGD, print the staleness report, write OUT/model.pt and OUT/ps.json."""
    from dataclasses import asdict

    import torch

    from .data_torch import load_dataset
    from .parallel.launch import WorkerError
    from .parallel.param_server import PSConfig, run_parameter_server

    cfg = _ps_config(args)
    ps = PSConfig(workers=args.workers, shards=args.shards, n_fetch=args.n_fetch, n_push=args.n_push)
    out = Path(args.out or f"runs/{args.model}-{args.data}-ps{args.workers}x{args.shards}")
    data = load_dataset(args.data, folder=args.data_dir)
    print(f"Downpour SGD: {args.model} on {args.data}, {ps.workers} workers x {ps.shards} shards, n_fetch "
          f"{ps.n_fetch}, n_push {ps.n_push}, batch {cfg.batch_size} per worker, sgd lr {cfg.lr} {cfg.schedule} "
          f"momentum {cfg.momentum}, {cfg.epochs} epochs; output in {out}", file=sys.stderr)
    try:
        result = run_parameter_server(args.model, data, cfg, ps, timeout_s=args.timeout)
    except WorkerError as exc:
        raise UserError(str(exc)) from None
    with atomic.atomic_path(out / "model.pt") as tmp:
        torch.save(result.state, tmp)
    record = {"model": args.model, "dataset": args.data, "test_error": result.test_error,
              "wall_s": round(result.wall_s, 1), "ps": asdict(ps), "config": vars(cfg), "updates": result.updates,
              "staleness": result.staleness, "steps": result.steps, "lost": result.lost, "exits": result.exits,
              "server_log": result.log, "command": "deepcompress " + shlex.join(args.argv)}
    atomic.write_json(out / "ps.json", record)
    print(f"{args.model} on {args.data}, Downpour {ps.workers} workers x {ps.shards} shards: test error "
          f"{100 * result.test_error:.2f}% ({result.wall_s:.0f} s)")
    print("updates per shard: " + ", ".join(f"{n:,}" for n in result.updates)
          + "; steps per worker: " + ", ".join(f"{w} {n:,}" for w, n in sorted(result.steps.items())))
    print("\n".join(staleness_lines(result.staleness)))
    for worker, info in sorted(result.lost.items()):
        print(f"lost {worker} ({result.exits.get(worker, 'unknown end')}): pushes per shard {info['pushes']}")
    return 0


def register_ps(sub) -> None:
    """Add the `train-ps` command."""
    p = sub.add_parser("train-ps", help="train with Downpour SGD on a sharded parameter server (rpc)",
                       description="Downpour SGD (Dean et al. 2012): W local worker processes each train a "
                                   "replica on their 1/W of the data, fetching parameters every n_fetch steps "
                                   "and pushing gradients every n_push steps to S server shards. Prints the "
                                   "test error and the staleness report; writes OUT/model.pt and OUT/ps.json.")
    cli_train.add_model_data_args(p)
    p.add_argument("--recipe", help="TOML recipe whose [train] table gives the defaults (default: the model's)")
    p.add_argument("--out", help="output folder (default runs/MODEL-DATA-psWxS)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default %(default)s)")
    p.add_argument("--shards", type=int, default=2, help="parameter-server shard processes (default %(default)s)")
    p.add_argument("--n-fetch", type=int, default=1, help="steps between parameter fetches (default %(default)s)")
    p.add_argument("--n-push", type=int, default=1, help="steps between gradient pushes (default %(default)s)")
    p.add_argument("--epochs", type=int, help="passes of each worker over its share of the data")
    p.add_argument("--batch-size", type=int, help="per worker")
    p.add_argument("--lr", type=float)
    p.add_argument("--momentum", type=float, default=0.0,
                   help="servers' SGD momentum (default 0: asynchrony already acts like momentum)")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--schedule", choices=("constant", "step", "cosine"))
    p.add_argument("--seed", type=int)
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds the whole run may take (default 3600)")
    p.set_defaults(func=run_ps, optimizer=None)


if __name__ == "__main__":  # python -m deepcompress.cli_parallel train-parallel ... (e.g. under torchrun)
    _parser = argparse.ArgumentParser(prog="deepcompress")
    register(_parser.add_subparsers(dest="command"))
    _args = _parser.parse_args()
    _args.argv = sys.argv[1:]
    sys.exit(_args.func(_args))
