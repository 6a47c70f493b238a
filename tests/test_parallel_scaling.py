"""The scaling model against closed-form answers on small cases."""

from __future__ import annotations

import math

import pytest

from deepcompress.parallel.scaling import (Link, StepModel, fit_ring_link, halo_exchange_time, parameter_server_time,
                                           ring_allreduce_time, ring_bytes_per_worker, spatial_step_time)

LINK = Link(bandwidth=1e9, latency=1e-5)


def test_ring_allreduce_closed_form():
    assert ring_allreduce_time(1e6, 1, LINK) == 0.0
    # P = 4: 2 x 3 / 4 x 1 MB at 1 GB/s = 1.5 ms, plus 6 latencies.
    assert ring_allreduce_time(1e6, 4, LINK) == pytest.approx(1.5e-3 + 6e-5)
    assert ring_bytes_per_worker(1e6, 4) == pytest.approx(1.5e6)
    # Bandwidth term tends to 2 x bytes / bw, whatever P.
    assert ring_allreduce_time(1e6, 1024, Link(1e9, 0.0)) == pytest.approx(2e-3, rel=1e-3)


def test_parameter_server_bottleneck_moves_to_the_servers():
    # One shard serving 8 workers: the server link carries 8 MB each way.
    assert parameter_server_time(1e6, 8, LINK, shards=1) == pytest.approx(2 * (8e-3 + 8e-5))
    # As many shards as workers: each end moves 1 MB each way, the worker pays one message per shard.
    assert parameter_server_time(1e6, 8, LINK, shards=8) == pytest.approx(2 * (1e-3 + 8e-5))


def test_step_time_speedup_and_overlap():
    m = StepModel(compute_s=0.01, model_bytes=1e6, link=LINK)
    assert m.step_time(1) == 0.01 and m.speedup(1) == 1.0
    assert m.step_time(2) == pytest.approx(0.01 + 1e-3 + 2e-5)
    assert m.speedup(2) == pytest.approx(2 * 0.01 / m.step_time(2))
    hidden = StepModel(compute_s=0.01, model_bytes=1e6, link=LINK, overlap=1.0)
    assert hidden.step_time(16) == pytest.approx(0.01)  # all communication behind compute
    assert StepModel(0.01, 1e6, LINK).efficiency(256) < StepModel(0.01, 1e3, LINK).efficiency(256) <= 1.0
    assert m.step_time(4, scheme="none") == 0.01
    with pytest.raises(ValueError):
        m.step_time(2, scheme="carrier-pigeon")


def test_shared_cores_slow_compute_once_oversubscribed():
    m = StepModel(compute_s=0.01, model_bytes=1e6, link=LINK, cores_per_host=2)
    assert [m.compute_time(p) for p in (1, 2, 4)] == [0.01, 0.01, 0.02]
    assert m.communication_time(4) == pytest.approx(2 * ring_allreduce_time(1e6, 4, LINK))


def test_spatial_and_halo_times():
    assert halo_exchange_time(0, 0, LINK) == 0.0
    assert halo_exchange_time(1e6, 2, LINK) == pytest.approx(2 * (1e-3 + 2e-5))
    assert spatial_step_time(0.04, 4, 1e6, 2, LINK) == pytest.approx(0.01 + 2 * (1e-3 + 2e-5))


def test_fit_recovers_the_link_it_was_given():
    sizes = [4.0, 1e5, 1e6, 4e6]
    times = [ring_allreduce_time(n, 3, LINK) for n in sizes]
    fitted = fit_ring_link(sizes, times, workers=3)
    assert math.isclose(fitted.bandwidth, LINK.bandwidth, rel_tol=1e-9)
    assert math.isclose(fitted.latency, LINK.latency, rel_tol=1e-6)
