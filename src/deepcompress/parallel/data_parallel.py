"""Data-parallel training: N processes, each a share of every batch, gradients averaged by DDP over gloo.

Each process runs the package's one training loop (deepcompress.train.train) on a
DistributedDataParallel-wrapped copy of the model. Every global batch of the single-process loop (same
seed, same order) is dealt out among the ranks DistributedSampler-style (rank r takes positions
r, r + N, ...), and each rank's loss is weighted by its share, so the averaged gradient is exactly the
global batch's: N workers with batch B train like one worker with batch N x B. Training hooks (pruning
masks, shared-weight centroids) run on every rank after the averaged gradient arrives, on identical
weights, so they stay identical everywhere. Only rank 0 prints and writes checkpoints.

Batch size convention: `cfg.batch_size` is per worker (as in PyTorch DDP); the global batch, which is
what checkpoints record, is workers x batch_size.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .. import atomic
from ..errors import UserError
from ..models import build_model
from ..train import BatchShard, TrainConfig, TrainResult, load_checkpoint, train
from .launch import WorkerError, spawn


class RankShard(BatchShard):
    """Rank `rank` of `world`'s part of every global batch, with its loss weighted by the share's size."""

    def __init__(self, rank: int, world: int, group=None):
        self.rank, self.world, self.group = rank, world, group
        self.writes = rank == 0

    def select(self, batch: torch.Tensor) -> torch.Tensor:
        """Positions rank, rank + world, ... of the global batch (shares differ in size by at most one)."""
        return batch[self.rank :: self.world]

    def objective(self, loss: torch.Tensor, out: torch.Tensor, batch_size: int) -> torch.Tensor:
        """The mean loss scaled by world x share / batch, so DDP's average is the global batch's mean gradient."""
        if len(out) == 0:
            # Still take part in the gradient all-reduce, contributing zeros.
            return out.sum() * 0.0
        scale = self.world * len(out) / batch_size
        return loss if scale == 1.0 else loss * scale

    def totals(self, values: list[float]) -> list[float]:
        """Sum the epoch's loss, error and sample counts over all ranks (the errors are sums of per-sample
        fractions, so not whole numbers)."""
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t, group=self.group)
        return [v if i < 2 else int(v) for i, v in enumerate(t.tolist())]


@dataclass
class ParallelResult(TrainResult):
    """A data-parallel run's history, final test error and wall time, plus the trained weights."""

    workers: int = 1
    state: dict = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)  # one report per failed attempt that was restarted


def global_config(cfg: TrainConfig, workers: int) -> TrainConfig:
    """The single-process configuration that N workers with `cfg` (per-worker batch) reproduce."""
    return replace(cfg, batch_size=cfg.batch_size * workers)


def train_rank(model_name: str, data, cfg: TrainConfig, out: Path, resume: bool = False,
               init_state: dict | None = None, make_hooks=None, progress: bool = False) -> TrainResult:
    """This process's part of a data-parallel run in an initialised process group; `cfg` has the global batch.

    Used by the local launcher and under torchrun (one call per process, any number of hosts).
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(cfg.seed)
    model = build_model(model_name)
    if init_state is not None:
        model.load_state_dict(init_state)
    hooks = tuple(make_hooks(model)) if make_hooks is not None else ()
    ddp = DistributedDataParallel(model)
    result = train(ddp, data, cfg, checkpoint=out / "checkpoint.pt", resume=resume, hooks=hooks,
                   progress=progress, verbose=progress, shard=RankShard(rank, world))
    if rank == 0:
        with atomic.atomic_path(out / "model.pt") as tmp:
            torch.save(model.state_dict(), tmp)
    return result


def _worker(rank, world, *args):
    train_rank(*args)


def default_threads(workers: int) -> int:
    """Torch threads per worker so that the workers together use the machine's cores once."""
    return max(1, (os.cpu_count() or 1) // workers)


def _checkpoint_epoch(path: Path) -> int:
    return int(load_checkpoint(path)["epoch"]) if path.exists() else 0


def run_data_parallel(model_name: str, dataset, cfg: TrainConfig, workers: int, out: str | Path, *,
                      resume: bool = False, init_state: dict | None = None, make_hooks=None,
                      progress: bool = False, threads: int | None = None,
                      timeout_s: float | None = None, restarts: int = 0) -> ParallelResult:
    """Train model `model_name` on `dataset` with `workers` local processes; per-worker batch cfg.batch_size.

    Equals train() with batch workers x cfg.batch_size up to float rounding. Rank 0 writes
    OUT/checkpoint.pt after every epoch (resumable with `resume`, also by a single-process run with the
    global batch size) and OUT/model.pt at the end. `init_state` is a state dict to start from;
    `make_hooks(model)`, a picklable function, builds each rank's training hooks. `timeout_s` bounds
    each attempt (None: no bound; a dead or stuck worker is still detected). When a worker dies or
    fails, the failure (which rank, how) is reported on stderr and the job starts again from the last
    checkpoint, up to `restarts` times; the result then equals an uninterrupted run's. Raises WorkerError
    once the restarts are used up.
    """
    if workers < 1:
        raise UserError(f"need at least one worker, got {workers}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "checkpoint.pt"
    if not resume:  # a fresh run: a restart must never pick up an older run's checkpoint
        checkpoint.unlink(missing_ok=True)
    gcfg = global_config(cfg, workers)
    faults: list[str] = []
    start = time.perf_counter()
    while True:
        args = (model_name, dataset, gcfg, out, resume or bool(faults), init_state, make_hooks, progress)
        try:
            spawn(_worker, args, workers, timeout_s=timeout_s, threads=threads or default_threads(workers))
            break
        except WorkerError as exc:
            report = str(exc).splitlines()[0]
            if len(faults) >= restarts:
                raise
            faults.append(report)
            print(f"{report}\nrestarting {workers} workers from {checkpoint} (epoch "
                  f"{_checkpoint_epoch(checkpoint)} of {cfg.epochs}), restart {len(faults)} of {restarts}",
                  file=sys.stderr)
    wall = time.perf_counter() - start
    history = load_checkpoint(checkpoint)["history"] if checkpoint.exists() else []
    state = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    test_error = history[-1]["test_error"] if history else float("nan")
    return ParallelResult(history, test_error, wall, workers, state, faults)
