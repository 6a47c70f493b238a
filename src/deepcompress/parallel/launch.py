"""Start N local worker processes joined in a torch.distributed (gloo) process group on 127.0.0.1.

Every start and every wait is bounded: a worker that hangs or dies is reported with its rank instead of
blocking the caller forever.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

LOOPBACK = "127.0.0.1"


class WorkerError(RuntimeError):
    """A worker process failed, died or ran past its deadline; the message says which and how."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def init_local_group(rank: int, world: int, port: int, timeout_s: float = 60.0, threads: int = 1) -> None:
    """Join this process to a gloo group of `world` processes rendezvousing on 127.0.0.1:`port`."""
    torch.set_num_threads(threads)
    # Keep gloo's own connections on the loopback interface, whatever the host name resolves to.
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"tcp://{LOOPBACK}:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=timeout_s))


def _entry(rank, fn, world, port, timeout_s, threads, args):
    init_local_group(rank, world, port, timeout_s, threads)
    try:
        fn(rank, world, *args)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def spawn(fn, args: tuple, workers: int, timeout_s: float | None = 120.0, threads: int = 1,
          collective_timeout_s: float = 300.0) -> None:
    """Run fn(rank, world, *args) in `workers` fresh processes inside one gloo group.

    `fn` must be importable by name (a module-level function). Waits at most `timeout_s` (None: no
    limit); a collective that waits more than `collective_timeout_s` for a peer fails. Raises WorkerError
    if any worker raises, dies, or the deadline passes (the remaining workers are then stopped).
    """
    port = free_port()
    if timeout_s is not None:
        collective_timeout_s = min(collective_timeout_s, max(10.0, timeout_s / 2))
    ctx = mp.start_processes(_entry, args=(fn, workers, port, collective_timeout_s, threads, args),
                             nprocs=workers, join=False, start_method="spawn")
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while not ctx.join(timeout=1.0):
            if deadline is not None and time.monotonic() > deadline:
                raise WorkerError(f"{workers} workers still running after {timeout_s:.0f} s; stopped them")
    except mp.ProcessRaisedException as exc:
        raise WorkerError(f"a worker raised an exception:\n{exc}") from None
    except mp.ProcessExitedException as exc:
        raise WorkerError(f"worker {exc.error_index} died (exit code {exc.exit_code}): {exc}") from None
    finally:
        for proc in ctx.processes:
            if proc.is_alive():
                proc.kill()
                proc.join(5)
