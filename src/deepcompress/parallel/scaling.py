"""How a training step's time grows with the number of workers: compute plus communication.

A step of synchronous data-parallel SGD is one worker's compute on its own batch followed by averaging
the gradients. Communication is counted with the standard alpha-beta cost: a message of n bytes over
a link takes latency + n / bandwidth.
- Ring all-reduce: 2(P-1) messages of bytes/P each per worker: 2(P-1)/P x bytes / bandwidth +
  2(P-1) x latency.
- Parameter server (S shards, synchronous): every worker pushes its gradient and pulls the parameters;
  each shard's link carries P x bytes / S each way, each worker's link bytes each way; the slower binds.
- Output-region model parallelism: compute splits P ways; each tile exchanges its halo with its
  neighbours forward and sends the halo gradient back.
A fraction `overlap` of the communication can hide behind the backward pass (DDP overlaps buckets).
Weak scaling keeps the per-worker batch: throughput is P x batch / step time.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMES = ("ring", "ps", "none")


@dataclass(frozen=True)
class Link:
    """A network link: `bandwidth` in bytes/s and `latency` in seconds per message."""

    bandwidth: float
    latency: float
    name: str = ""

    def message(self, nbytes: float) -> float:
        """Seconds to send one message of `nbytes`."""
        return self.latency + nbytes / self.bandwidth


def ring_allreduce_time(nbytes: float, workers: int, link: Link) -> float:
    """Seconds to all-reduce `nbytes` over `workers` with a ring: 2(P-1)/P x bytes / bw + 2(P-1) x latency."""
    if workers <= 1:
        return 0.0
    steps = 2 * (workers - 1)
    return steps / workers * nbytes / link.bandwidth + steps * link.latency


def ring_bytes_per_worker(nbytes: float, workers: int) -> float:
    """Bytes each worker sends per ring all-reduce of `nbytes`."""
    return 2 * (workers - 1) / workers * nbytes if workers > 1 else 0.0


def parameter_server_time(nbytes: float, workers: int, link: Link, shards: int = 1) -> float:
    """Seconds for every worker to push a gradient and pull the parameters (`nbytes` each) from `shards` servers.

    Push and pull are sequential; within each, the busier end binds: a worker moves `nbytes` over its
    link (in messages to all shards), a shard moves workers x nbytes / shards over its own.
    """
    if workers <= 1 and shards <= 1:
        return 0.0
    worker_side = nbytes / link.bandwidth + shards * link.latency
    server_side = workers * nbytes / shards / link.bandwidth + workers * link.latency
    return 2 * max(worker_side, server_side)


def halo_exchange_time(halo_bytes: float, neighbours: int, link: Link) -> float:
    """Seconds for one tile's forward halo exchange plus the matching backward one."""
    return 2 * (halo_bytes / link.bandwidth + neighbours * link.latency) if neighbours else 0.0


@dataclass(frozen=True)
class StepModel:
    """A training step: `compute_s` of one worker's compute on its batch, `model_bytes` of gradients to
    average, over `link`. `cores_per_host` > 0 models all workers on one host sharing its cores: once
    there are more workers x threads than cores, compute and the (CPU-driven, loopback) communication
    both slow by that ratio. `overlap` is the fraction of communication hidden behind compute."""

    compute_s: float
    model_bytes: float
    link: Link
    overlap: float = 0.0
    cores_per_host: int = 0
    threads_per_worker: int = 1

    def contention(self, workers: int) -> float:
        """Slow-down from sharing one host's cores (1.0 when each worker has its own)."""
        if self.cores_per_host <= 0:
            return 1.0
        return max(1.0, workers * self.threads_per_worker / self.cores_per_host)

    def compute_time(self, workers: int) -> float:
        """One worker's compute per step with `workers` of them running."""
        return self.compute_s * self.contention(workers)

    def communication_time(self, workers: int, scheme: str = "ring", shards: int = 1) -> float:
        """Seconds of gradient exchange per step (before any overlap)."""
        if scheme == "ring":
            t = ring_allreduce_time(self.model_bytes, workers, self.link)
        elif scheme == "ps":
            t = parameter_server_time(self.model_bytes, workers, self.link, shards)
        elif scheme == "none":
            t = 0.0
        else:
            raise ValueError(f"scheme {scheme!r}: expected one of {', '.join(SCHEMES)}")
        return t * self.contention(workers)

    def step_time(self, workers: int, scheme: str = "ring", shards: int = 1) -> float:
        """Seconds per synchronous step with `workers` workers (weak scaling: fixed per-worker batch)."""
        compute = self.compute_time(workers)
        comm = self.communication_time(workers, scheme, shards)
        hidden = min(self.overlap * comm, compute)
        return compute + comm - hidden

    def speedup(self, workers: int, scheme: str = "ring", shards: int = 1) -> float:
        """Throughput with `workers` relative to one worker (ideal: `workers`)."""
        return workers * self.step_time(1, scheme, shards) / self.step_time(workers, scheme, shards)

    def efficiency(self, workers: int, scheme: str = "ring", shards: int = 1) -> float:
        """Speedup divided by the number of workers (1.0 is linear scaling)."""
        return self.speedup(workers, scheme, shards) / workers


def spatial_step_time(compute_s: float, workers: int, halo_bytes: float, neighbours: int, link: Link) -> float:
    """Seconds per step of one layer cut into `workers` output tiles (strong scaling of its compute)."""
    return compute_s / workers + halo_exchange_time(halo_bytes, neighbours, link)


def fit_ring_link(sizes: list[float], seconds: list[float], workers: int, name: str = "fitted") -> Link:
    """The Link whose ring all-reduce time best fits all-reduces of `sizes` bytes measured at `seconds`
    over `workers` processes (least squares on ring_allreduce_time)."""
    if workers < 2 or len(sizes) < 2:
        raise ValueError("need at least two workers and two message sizes to fit latency and bandwidth")
    xs = [ring_bytes_per_worker(n, workers) for n in sizes]
    mx, my = sum(xs) / len(xs), sum(seconds) / len(seconds)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, seconds)) / sum((x - mx) ** 2 for x in xs)
    if slope <= 0:
        raise ValueError("measured times do not grow with message size; cannot fit a bandwidth")
    latency = max(my - slope * mx, 0.0) / (2 * (workers - 1))
    return Link(bandwidth=1.0 / slope, latency=latency, name=name)
