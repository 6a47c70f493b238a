"""Parameter server (Downpour SGD on torch.distributed.rpc): shard logic, training, a worker that dies."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import replace

import pytest
import torch

from conftest import separable_dataset
from deepcompress.data import DataError, Dataset
from deepcompress.data_torch import load_dataset
from deepcompress.models import build_model
from deepcompress.parallel.param_server import (PSConfig, run_parameter_server, shard_bounds, staleness_summary,
                                                total_updates)
from deepcompress.parallel.ps_server import ShardServer, serve_until
from deepcompress.train import TrainConfig, train

# Plain SGD on the servers: asynchrony already acts like momentum (Mitliagkas et al. 2016).
CFG = TrainConfig(epochs=2, batch_size=16, optimizer="sgd", lr=0.05, momentum=0.0, weight_decay=5e-4,
                  schedule="cosine", seed=0)


def _synchronous(data, cfg: TrainConfig, workers: int) -> float:
    """Test error of synchronous data-parallel SGD with the same per-worker batch (one process, global batch)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(cfg.seed)
        model = build_model("lenet-300-100")
        return train(model, data, replace(cfg, batch_size=cfg.batch_size * workers), progress=False,
                     verbose=False).test_error
    finally:
        torch.set_num_threads(threads)


def test_shard_bounds_staleness_summary_and_update_count():
    assert shard_bounds(10, 3) == [(0, 3), (3, 6), (6, 10)]
    summary = staleness_summary(Counter({0: 1, 2: 3}))
    assert summary == {"histogram": {0: 1, 2: 3}, "mean": 1.5, "max": 2, "gradients": 4}
    # 97 samples over 2 workers (49 and 48), batch 16: 4 and 3 steps per epoch; pushes every 2 steps.
    assert total_updates(97, replace(CFG, epochs=3), PSConfig(workers=2, n_push=2)) == 6 + 5


def test_shard_applies_gradients_in_arrival_order_and_measures_staleness():
    cfg = TrainConfig(epochs=1, lr=0.5, momentum=0.0, weight_decay=0.0, schedule="constant")
    server = ShardServer(0, torch.zeros(3), cfg, total_updates=4, workers=["worker0", "worker1"], liveness_s=0.05)
    values, version = server.fetch("worker0")
    assert version == 0 and torch.equal(values, torch.zeros(3))
    assert server.push("worker1", torch.ones(3), 0) == 1  # fresh
    assert server.push("worker0", torch.ones(3), 0) == 2  # one update behind
    torch.testing.assert_close(server.fetch("worker1")[0], torch.full((3,), -1.0))
    values.add_(5)  # a fetched slice is a copy
    assert server.fetch("worker1")[0][0] == -1.0
    server.finish("worker1", steps=7)
    time.sleep(0.1)
    server.check_liveness()
    report = server.report()
    assert report["staleness"] == {0: 1, 1: 1} and report["version"] == 2
    assert report["finished"] == {"worker1": 7} and set(report["lost"]) == {"worker0"}
    assert report["log"] == ["worker0 silent for 0 s after 1 pushes; carrying on without it"]
    stop = threading.Event()
    stop.set()
    serve_until(server, stop, deadline=time.monotonic() + 5)  # returns at once once told to stop


def test_two_workers_two_shards_match_synchronous_training():
    data = separable_dataset(n_train=2048, n_test=512, seed=1)
    result = run_parameter_server("lenet-300-100", data, CFG, PSConfig(workers=2, shards=2), timeout_s=150)
    sync = _synchronous(data, CFG, workers=2)
    assert result.test_error <= sync + 0.003, (result.test_error, sync)
    expected = total_updates(2048, CFG, PSConfig(workers=2))
    assert result.updates == [expected, expected] and result.staleness["gradients"] == 2 * expected
    assert 0 <= result.staleness["mean"] <= result.staleness["max"]
    assert result.steps == {"worker0": 128, "worker1": 128} and not result.lost and not result.exits


def test_server_survives_a_worker_that_is_killed():
    data = separable_dataset(n_train=1024, n_test=256, seed=2)
    result = run_parameter_server("lenet-300-100", data, CFG, PSConfig(workers=2, shards=2), timeout_s=150,
                                  kill=(1, 10))
    assert result.exits == {"worker1": "killed by SIGKILL"}
    assert result.steps == {"worker0": 64}  # the survivor ran all its steps
    assert set(result.lost) == {"worker1"} and all(n <= 10 for n in result.lost["worker1"]["pushes"])
    assert result.updates == [64 + n for n in result.lost["worker1"]["pushes"]]
    assert result.test_error < 0.25  # mostly the survivor's work, on half the data: it still learns


def _mnist_subset(n_train: int) -> Dataset:
    try:
        data = load_dataset("mnist")
    except DataError:
        pytest.skip("MNIST is not installed (deepcompress data fetch mnist)")
    return Dataset("mnist", data.train_x[:n_train], data.train_y[:n_train], data.test_x, data.test_y)


@pytest.mark.slow
def test_two_workers_two_shards_within_0_3_percent_of_synchronous_on_mnist():
    data = _mnist_subset(20_000)
    cfg = replace(CFG, epochs=3, batch_size=32, lr=0.1)
    result = run_parameter_server("lenet-300-100", data, cfg, PSConfig(workers=2, shards=2), timeout_s=600)
    sync = _synchronous(data, cfg, workers=2)
    assert result.test_error <= sync + 0.003, (result.test_error, sync)
