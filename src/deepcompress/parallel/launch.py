"""Start N local worker processes (spawned, on 127.0.0.1) and watch them with bounded waits.

Every start and every wait is bounded: a worker that hangs or dies is reported with its rank and how it
ended (exit code, signal, or the exception it raised) instead of blocking the caller forever.
"""

from __future__ import annotations

import os
import pickle
from contextlib import contextmanager
import signal
import socket
import time
from datetime import timedelta
from multiprocessing.connection import wait

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

LOOPBACK = "127.0.0.1"


class WorkerError(RuntimeError):
    """A worker process failed, died or ran past its deadline; the message says which and how.

    `failures` maps each failed rank to how it ended; `first` is the rank that failed first (the likely
    cause: the others usually fail because they lost that peer), or None after a timeout.
    """

    def __init__(self, message: str, failures: dict[int, str] | None = None, first: int | None = None):
        super().__init__(message)
        self.failures = failures or {}
        self.first = first


@contextmanager
def torchrun_group(timeout_s: float):
    """Join the gloo group that torchrun's environment describes (rank, world size, rendezvous) for the
    block; yields (rank, world). A peer that stops answering fails the next collective after timeout_s."""
    dist.init_process_group("gloo", timeout=timedelta(seconds=timeout_s))
    try:
        yield dist.get_rank(), dist.get_world_size()
    finally:
        dist.destroy_process_group()


def rank_failure(rank: int, world: int, what: str, exc: BaseException) -> str:
    """One line naming this rank (node, host) and how `what` failed, for a torchrun job's log."""
    first = str(exc).splitlines()[0] if str(exc) else ""
    where = f"node {os.environ.get('GROUP_RANK', '?')}, host {socket.gethostname()}"
    return f"rank {rank}/{world} ({where}): {what} failed: {type(exc).__name__}: {first}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def describe_exit(code: int | None) -> str:
    """How a process ended, from its exit code (negative: the signal that killed it)."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def init_local_group(rank: int, world: int, port: int, timeout_s: float = 60.0, threads: int = 1) -> None:
    """Join this process to a gloo group of `world` processes rendezvousing on 127.0.0.1:`port`."""
    torch.set_num_threads(threads)
    # Keep gloo's own connections on the loopback interface, whatever the host name resolves to.
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"tcp://{LOOPBACK}:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=timeout_s))


def start(fn, args: tuple, nprocs: int):
    """Spawn fn(i, *args) for i in 0..nprocs-1 without waiting; returns torch's ProcessContext."""
    return mp.start_processes(fn, args=args, nprocs=nprocs, join=False, start_method="spawn")


class _TextOnlyUnpickler(pickle.Unpickler):
    """Reads pickled plain data (the traceback string) and refuses every class or function."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing {module}.{name}: only a traceback string is expected")


def _raised(ctx, i: int) -> str | None:
    # torch's spawn wrapper pickles the traceback of an exception into the process's error file.
    try:
        with open(ctx.error_files[i], "rb") as fh:
            trace = _TextOnlyUnpickler(fh).load()
    except (OSError, EOFError, pickle.UnpicklingError):
        return None
    return trace if isinstance(trace, str) else None


def _ending(ctx, i: int) -> str:
    trace = _raised(ctx, i)
    if trace:
        return f"raised {trace.strip().splitlines()[-1]}"
    return describe_exit(ctx.processes[i].exitcode)


def stop(ctx) -> None:
    """Kill whatever is still running in `ctx` and reap it."""
    for proc in ctx.processes:
        if proc.is_alive():
            proc.kill()
    for proc in ctx.processes:
        proc.join(5)
    for path in ctx.error_files:
        if os.path.exists(path):
            os.unlink(path)


def watch(ctx, timeout_s: float | None, expendable: tuple[int, ...] = (), label=None,
          grace_s: float = 2.0, on_exit=None) -> dict[int, str]:
    """Wait for every process of `ctx` to end; returns {rank: how it ended} for expendable ranks that failed.

    A failure of any other rank raises WorkerError naming every failed rank and how it ended (signal,
    exit code or exception), after giving the survivors `grace_s` to fail of their own accord; then the
    rest are killed. So does passing `timeout_s` (None: no limit). `label(i)` names rank i in messages;
    `on_exit(i, exit_code)` is called as each process ends.
    """
    label = label or (lambda i: f"rank {i}")
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    running = {p.sentinel: i for i, p in enumerate(ctx.processes)}
    tolerated: dict[int, str] = {}
    try:
        while running:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                names = ", ".join(label(i) for i in sorted(running.values()))
                raise WorkerError(f"{names} still running after {timeout_s:.0f} s; stopped them")
            ready = wait(list(running), timeout=1.0 if left is None else min(1.0, left))
            failed = []
            for sentinel in ready:
                i = running.pop(sentinel)
                ctx.processes[i].join()
                if on_exit is not None:
                    on_exit(i, ctx.processes[i].exitcode)
                if ctx.processes[i].exitcode != 0:
                    failed.append(i)
            fatal = [i for i in failed if i not in expendable]
            tolerated.update({i: _ending(ctx, i) for i in failed if i in expendable})
            if fatal:
                _fail(ctx, running, fatal, tolerated, label, grace_s)
        return tolerated
    finally:
        stop(ctx)


def _fail(ctx, running: dict, fatal: list[int], tolerated: dict, label, grace_s: float) -> None:
    # Killed processes come first: a peer that raised most likely did so because it lost them.
    first = sorted(fatal, key=lambda i: (ctx.processes[i].exitcode >= 0, i))[0]
    late = wait(list(running), timeout=grace_s) if running else []
    for sentinel in late:
        i = running.pop(sentinel)
        ctx.processes[i].join()
        if ctx.processes[i].exitcode != 0:
            fatal.append(i)
    failures = {i: _ending(ctx, i) for i in fatal} | tolerated
    lines = [f"{label(first)} {failures[first]} (first to fail)"]
    lines += [f"{label(i)} {failures[i]}" for i in sorted(failures) if i != first]
    lines += [f"{label(i)} was still running and was stopped" for i in sorted(running.values())]
    trace = _raised(ctx, first)
    detail = f"\n{trace}" if trace else ""
    raise WorkerError("worker failure: " + "; ".join(lines) + detail, failures, first)


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
    ctx = start(_entry, (fn, workers, port, collective_timeout_s, threads, args), workers)
    watch(ctx, timeout_s)
