"""Downpour SGD (Dean et al. 2012): a parameter server sharded over processes, asynchronous workers.

The model's parameters, flattened, are cut into S contiguous slices, one per server process
(deepcompress.parallel.ps_server). Each of W worker processes trains a replica on its own 1/W of the
training set: every `n_fetch` steps it starts fetching fresh parameters from all shards (installed when
they arrive, without waiting), every `n_push` steps it sends the gradient it accumulated since the last
push, and in between it updates its own replica with plain SGD, as in the paper. The shards apply
gradients as they arrive. Everything travels over torch.distributed.rpc (TensorPipe on 127.0.0.1).

A worker that dies is tolerated: the servers log it once it has been silent for `liveness_s` and carry
on with the others; when every worker process has ended (the launcher sets an event), they report which
workers finished and which were lost, and the launcher adds how each lost process ended. A server that
dies ends the run with WorkerError.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import warnings
from collections import Counter, deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed.rpc as rpc
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from ..errors import UserError
from ..models import build_model
from ..train import TrainConfig, evaluate, learning_rate
from . import ps_server
from .faults import kill_self
from .launch import LOOPBACK, WorkerError, free_port, start, watch


@dataclass
class PSConfig:
    """Shape of a Downpour run: worker and shard counts, fetch and push periods (in worker steps)."""

    workers: int = 2
    shards: int = 2
    n_fetch: int = 1
    n_push: int = 1
    max_in_flight: int = 2  # pushes per worker not yet acknowledged before it waits
    liveness_s: float = 20.0  # a worker silent this long is reported lost
    rpc_timeout_s: float = 60.0

    def __post_init__(self):
        if min(self.workers, self.shards, self.n_fetch, self.n_push, self.max_in_flight) < 1:
            raise UserError(f"workers, shards, n_fetch, n_push and max_in_flight must be >= 1: {self}")


@dataclass
class PSResult:
    """A Downpour run: final test error, staleness of the applied gradients, and what became of workers."""

    test_error: float
    wall_s: float
    state: dict
    updates: list[int]  # updates applied by each shard
    staleness: dict  # histogram {staleness: count} over all shards, mean, max
    steps: dict[str, int]  # steps of each worker that finished
    lost: dict[str, dict] = field(default_factory=dict)  # workers the servers lost: pushes, silence
    exits: dict[str, str] = field(default_factory=dict)  # how each failed worker process ended
    log: list[str] = field(default_factory=list)


def shard_bounds(n: int, shards: int) -> list[tuple[int, int]]:
    """Cut n flattened parameters into `shards` contiguous, near-equal ranges."""
    return [(n * s // shards, n * (s + 1) // shards) for s in range(shards)]


def staleness_summary(histogram: Counter) -> dict:
    """Histogram, mean and max of a staleness count."""
    total = sum(histogram.values())
    mean = sum(k * v for k, v in histogram.items()) / total if total else float("nan")
    return {"histogram": {int(k): int(v) for k, v in sorted(histogram.items())}, "mean": mean,
            "max": max(histogram, default=0), "gradients": total}


def _batches(n: int, cfg: TrainConfig, epoch: int, worker: int, workers: int):
    gen = torch.Generator().manual_seed((cfg.seed * 1_000_003 + epoch) * workers + worker)
    order = torch.randperm(n, generator=gen)
    return [order[i : i + cfg.batch_size] for i in range(0, n, cfg.batch_size)]


class _Replica:
    """A worker's model and its conversation with the shards."""

    def __init__(self, name: str, model, servers: list[str], bounds: list[tuple[int, int]], ps: PSConfig):
        self.name, self.model, self.servers, self.bounds, self.ps = name, model, servers, bounds, ps
        self.params = list(model.parameters())
        self.versions = [0] * len(servers)
        self.pushing: deque = deque()

    def start_fetch(self) -> list:
        """Ask every shard for its slice (futures)."""
        return [rpc.rpc_async(s, ps_server.fetch, args=(self.name,), timeout=self.ps.rpc_timeout_s)
                for s in self.servers]

    def install(self, futures: list) -> None:
        """Replace the replica's parameters by fetched slices."""
        answers = [f.wait() for f in futures]
        with torch.no_grad():
            vector_to_parameters(torch.cat([values for values, _ in answers]), self.params)
        self.versions = [version for _, version in answers]

    def push(self, grad: torch.Tensor, base: list[int]) -> None:
        """Send each shard its part of `grad`, computed from parameters at versions `base`."""
        while len(self.pushing) >= self.ps.max_in_flight:
            for f in self.pushing.popleft():
                f.wait()
        self.pushing.append([rpc.rpc_async(s, ps_server.push, args=(self.name, grad[lo:hi].clone(), v),
                                           timeout=self.ps.rpc_timeout_s)
                             for s, (lo, hi), v in zip(self.servers, self.bounds, base)])

    def finish(self, steps: int) -> None:
        """Wait until every push is applied, then tell every shard this worker is done."""
        while self.pushing:
            for f in self.pushing.popleft():
                f.wait()
        for f in [rpc.rpc_async(s, ps_server.finish, args=(self.name, steps), timeout=self.ps.rpc_timeout_s)
                  for s in self.servers]:
            f.wait()


def run_worker(index: int, model_name: str, data, cfg: TrainConfig, ps: PSConfig, kill_step: int | None) -> int:
    """Worker `index`'s Downpour loop over its share of the data; returns the steps it took."""
    model = build_model(model_name)  # its initial values are overwritten by the first fetch
    bounds = shard_bounds(sum(p.numel() for p in model.parameters()), ps.shards)
    replica = _Replica(f"worker{index}", model, [f"ps{s}" for s in range(ps.shards)], bounds, ps)
    x, y = data.train_x[index :: ps.workers], data.train_y[index :: ps.workers]
    replica.install(replica.start_fetch())
    fetching, acc, base, step = None, None, None, 0
    for epoch in range(cfg.epochs):
        lr = learning_rate(cfg, epoch)
        for idx in _batches(len(y), cfg, epoch, index, ps.workers):
            if fetching is not None and all(f.done() for f in fetching):
                replica.install(fetching)
                fetching = None
            if step % ps.n_fetch == 0 and step > 0 and fetching is None:
                fetching = replica.start_fetch()
            replica.model.zero_grad(set_to_none=True)
            F.cross_entropy(replica.model(x[idx]), y[idx]).backward()
            grad = parameters_to_vector(p.grad for p in replica.params)
            acc, base = (grad, list(replica.versions)) if acc is None else (acc.add_(grad), base)
            with torch.no_grad():
                for p in replica.params:
                    p.add_(p.grad, alpha=-lr)
            step += 1
            if step % ps.n_push == 0:
                replica.push(acc, base)
                acc = None
            if step == kill_step:
                kill_self()
    if acc is not None:
        replica.push(acc, base)
    replica.finish(step)
    return step


def total_updates(n_train: int, cfg: TrainConfig, ps: PSConfig) -> int:
    """How many gradients each shard receives in a run where no worker fails."""
    per_epoch = [math.ceil(len(range(w, n_train, ps.workers)) / cfg.batch_size) for w in range(ps.workers)]
    return sum(math.ceil(steps * cfg.epochs / ps.n_push) for steps in per_epoch)


def _process(i, model_name, data, cfg, ps, flat, out, port, stop, timeout_s, kill):
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="You are using a Backend")  # torch's own use inside init_rpc
    os.environ.setdefault("TP_SOCKET_IFNAME", "lo")  # TensorPipe stays on the loopback interface
    opts = rpc.TensorPipeRpcBackendOptions(init_method=f"tcp://{LOOPBACK}:{port}",
                                           rpc_timeout=ps.rpc_timeout_s, num_worker_threads=8)
    world = ps.shards + ps.workers
    if i < ps.shards:
        lo, hi = shard_bounds(len(flat), ps.shards)[i]
        server = ps_server.ShardServer(i, flat[lo:hi], cfg, total_updates(len(data.train_y), cfg, ps),
                                       [f"worker{w}" for w in range(ps.workers)], ps.liveness_s)
        ps_server.install(server)
        rpc.init_rpc(f"ps{i}", rank=i, world_size=world, rpc_backend_options=opts)
        ps_server.serve_until(server, stop, time.monotonic() + timeout_s)
        torch.save(server.report(), Path(out) / f"ps{i}.pt")
    else:
        w = i - ps.shards
        rpc.init_rpc(f"worker{w}", rank=i, world_size=world, rpc_backend_options=opts)
        run_worker(w, model_name, data, cfg, ps, kill[1] if kill and kill[0] == w else None)
    # Not graceful: a graceful shutdown waits for every peer, and a dead worker never answers.
    rpc.shutdown(graceful=False)


@contextmanager
def _quiet_tensorpipe():
    # An ungraceful shutdown makes every TensorPipe agent warn about its closed pipes; the children
    # read the log level from the environment they are spawned with.
    before = os.environ.get("TORCH_CPP_LOG_LEVEL")
    os.environ["TORCH_CPP_LOG_LEVEL"] = "ERROR"
    try:
        yield
    finally:
        if before is None:
            del os.environ["TORCH_CPP_LOG_LEVEL"]
        else:
            os.environ["TORCH_CPP_LOG_LEVEL"] = before


def _name(i: int, shards: int) -> str:
    return f"ps{i}" if i < shards else f"worker{i - shards}"


def _merge(reports: list[dict], failed: dict[str, str]) -> tuple[dict, dict]:
    """Workers that finished (steps) and those the shards lost (pushes per shard, silence)."""
    finished = reports[0]["finished"]
    if not finished:
        raise WorkerError("no worker finished: " + "; ".join(f"{w} {how}" for w, how in sorted(failed.items())))
    lost = {w: {"pushes": [r["lost"][w]["pushes"] for r in reports], "silent_s": info["silent_s"]}
            for w, info in reports[0]["lost"].items()}
    return finished, lost


def run_parameter_server(model_name: str, data, cfg: TrainConfig, ps: PSConfig | None = None, *,
                         timeout_s: float = 600.0, kill: tuple[int, int] | None = None) -> PSResult:
    """Train `model_name` on `data` with Downpour SGD and return the shards' final model and report.

    `cfg.batch_size` is per worker; each worker runs cfg.epochs passes over its share of the training
    set; the servers use cfg's learning rate (and schedule, by progress), momentum and weight decay.
    `kill=(w, k)` is a fault drill: worker w kills itself (SIGKILL) after its k-th step. Raises
    WorkerError if a server fails, no worker finishes, or the run passes `timeout_s`.
    """
    ps = ps or PSConfig()
    torch.manual_seed(cfg.seed)
    model = build_model(model_name)
    flat = parameters_to_vector(model.parameters()).detach().clone()
    stop = mp.get_context("spawn").Event()
    ended: list[int] = []

    def on_exit(i: int, code: int) -> None:
        if i >= ps.shards:
            ended.append(i)
            if len(ended) == ps.workers:
                stop.set()  # every worker is done or gone: the shards can report

    start_time = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="deepcompress-ps-") as tmp, _quiet_tensorpipe():
        ctx = start(_process, (model_name, data, cfg, ps, flat, tmp, free_port(), stop, timeout_s, kill),
                    ps.shards + ps.workers)
        failed = watch(ctx, timeout_s, expendable=tuple(range(ps.shards, ps.shards + ps.workers)),
                       label=lambda i: _name(i, ps.shards), on_exit=on_exit)
        reports = [torch.load(Path(tmp) / f"ps{s}.pt", weights_only=True) for s in range(ps.shards)]
    wall = time.perf_counter() - start_time
    exits = {_name(i, ps.shards): how for i, how in failed.items()}
    finished, lost = _merge(reports, exits)
    vector_to_parameters(torch.cat([r["values"] for r in reports]), list(model.parameters()))
    histogram = sum((Counter(r["staleness"]) for r in reports), Counter())
    return PSResult(evaluate(model, data.test_x, data.test_y), wall, model.state_dict(),
                    [r["version"] for r in reports], staleness_summary(histogram), finished, lost, exits,
                    [line for r in reports for line in r["log"]])
