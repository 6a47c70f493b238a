"""One parameter-server shard of Downpour SGD: a contiguous slice of the model's flattened parameters.

Workers call `fetch`, `push` and `finish` on it through torch.distributed.rpc; the RPC agent runs them
on its own threads, so every method takes the shard's lock. The shard applies each pushed gradient as
it arrives (SGD with the run's learning rate, momentum and weight decay) and records how stale it was:
how many updates the shard had applied since the parameters the gradient was computed from.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter

import torch

from ..train import TrainConfig, learning_rate

_SERVER: "ShardServer | None" = None  # this process's shard, reached by the RPC handlers below


class ShardServer:
    """Holds parameter slice `index` and applies pushed gradients to it in arrival order."""

    def __init__(self, index: int, values: torch.Tensor, cfg: TrainConfig, total_updates: int,
                 workers: list[str], liveness_s: float):
        self.index, self.cfg, self.total_updates = index, cfg, max(total_updates, 1)
        self.param = torch.nn.Parameter(values.detach().clone(), requires_grad=False)
        self.opt = torch.optim.SGD([self.param], lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        self.version = 0
        self.staleness: Counter[int] = Counter()
        self.pushes: Counter[str] = Counter()
        self.fetches: Counter[str] = Counter()
        self.steps: dict[str, int] = {}  # workers that finished, with the steps they report
        self.last_seen = dict.fromkeys(workers, time.monotonic())
        self.silent: dict[str, float] = {}  # workers flagged by the liveness check: worker -> seconds silent
        self.liveness_s = liveness_s
        self.log: list[str] = []
        self.lock = threading.Lock()

    def _seen(self, worker: str) -> None:
        self.last_seen[worker] = time.monotonic()
        if self.silent.pop(worker, None) is not None:
            self._say(f"{worker} is back")

    def _say(self, line: str) -> None:
        self.log.append(line)
        print(f"ps{self.index}: {line}", file=sys.stderr, flush=True)

    def fetch(self, worker: str) -> tuple[torch.Tensor, int]:
        """The current slice and its version (the number of updates applied so far)."""
        with self.lock:
            self._seen(worker)
            self.fetches[worker] += 1
            return self.param.detach().clone(), self.version

    def push(self, worker: str, grad: torch.Tensor, base_version: int) -> int:
        """Apply `grad`, computed from this slice at `base_version`; returns the new version."""
        with self.lock:
            self._seen(worker)
            self.staleness[self.version - base_version] += 1
            self.pushes[worker] += 1
            epoch = min(self.cfg.epochs - 1, self.version * self.cfg.epochs // self.total_updates)
            for group in self.opt.param_groups:
                group["lr"] = learning_rate(self.cfg, max(epoch, 0))
            self.param.grad = grad
            self.opt.step()
            self.version += 1
            return self.version

    def finish(self, worker: str, steps: int) -> None:
        """`worker` is done after `steps` steps and will not call again."""
        with self.lock:
            self._seen(worker)
            self.steps[worker] = steps

    def check_liveness(self) -> None:
        """Flag (and log, once) every unfinished worker silent for longer than the liveness limit."""
        now = time.monotonic()
        with self.lock:
            for worker, seen in self.last_seen.items():
                quiet = now - seen
                if worker not in self.steps and worker not in self.silent and quiet > self.liveness_s:
                    self.silent[worker] = quiet
                    self._say(f"{worker} silent for {quiet:.0f} s after {self.pushes[worker]} pushes; "
                              f"carrying on without it")

    def report(self) -> dict:
        """The slice, its version, the staleness histogram and what became of each worker."""
        with self.lock:
            now = time.monotonic()
            lost = {w: {"pushes": self.pushes[w], "silent_s": round(now - self.last_seen[w], 1)}
                    for w in self.last_seen if w not in self.steps}
            return {"index": self.index, "values": self.param.detach().clone(), "version": self.version,
                    "staleness": dict(self.staleness), "pushes": dict(self.pushes), "fetches": dict(self.fetches),
                    "finished": dict(self.steps), "lost": lost, "log": list(self.log)}


def install(server: ShardServer) -> None:
    """Make `server` the shard that this process's RPC handlers serve."""
    global _SERVER
    _SERVER = server


def serve_until(server: ShardServer, stop, deadline: float, poll_s: float = 0.2) -> None:
    """Run liveness checks until the `stop` event is set or the monotonic `deadline` passes."""
    while not stop.wait(poll_s) and time.monotonic() < deadline:
        server.check_liveness()


# RPC entry points: module-level so that rpc can name them on the worker side.
def fetch(worker: str) -> tuple[torch.Tensor, int]:
    """RPC: this process's shard's slice and version."""
    return _SERVER.fetch(worker)


def push(worker: str, grad: torch.Tensor, base_version: int) -> int:
    """RPC: apply a gradient to this process's shard."""
    return _SERVER.push(worker, grad, base_version)


def finish(worker: str, steps: int) -> None:
    """RPC: `worker` is done."""
    _SERVER.finish(worker, steps)
