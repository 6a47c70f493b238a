"""Fault drills: kill one worker for real (SIGKILL) at a chosen step, once, to exercise recovery."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import torch.distributed as dist

from ..train import TrainHook


def kill_self() -> None:
    """End this process at once with SIGKILL, as a crash or the OOM killer would (no clean-up runs)."""
    os.kill(os.getpid(), signal.SIGKILL)


def claim_once(marker: str | Path) -> bool:
    """True for the first caller only (any process): creates `marker` atomically."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True


class KillAtStep(TrainHook):
    """Kill this process after optimizer step `step` (counted from the process's start) if it is `rank`.

    Fires once per `marker` file, so the restarted job runs through.
    """

    def __init__(self, rank: int, step: int, marker: str | Path):
        self.rank, self.step, self.marker, self.steps = rank, step, Path(marker), 0

    def after_step(self, model) -> None:
        """Count the step; at the chosen one, on the chosen rank, die (the first time only)."""
        self.steps += 1
        rank = dist.get_rank() if dist.is_initialized() else 0
        if rank == self.rank and self.steps == self.step and claim_once(self.marker):
            kill_self()


class FaultDrill:
    """A picklable `make_hooks` for data-parallel runs: `inner`'s hooks (if any) plus a KillAtStep."""

    def __init__(self, rank: int, step: int, marker: str | Path, inner=None):
        self.rank, self.step, self.marker, self.inner = rank, step, str(marker), inner

    def __call__(self, model) -> tuple[TrainHook, ...]:
        """The hooks for one rank's model."""
        hooks = tuple(self.inner(model)) if self.inner is not None else ()
        return hooks + (KillAtStep(self.rank, self.step, self.marker),)
