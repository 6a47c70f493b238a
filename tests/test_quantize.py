"""Trained quantization: 1-D k-means against closed forms, centroid fine-tuning as Deep Compression defines it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deepcompress.compress import Masks, SharedWeights, TargetSparsity, kmeans_1d, prune_layers, uniform_levels
from deepcompress.models import build_model


def test_kmeans_recovers_separated_clusters():
    rng = np.random.default_rng(0)
    centers = np.array([-1.0, -0.2, 0.3, 1.5])
    values = np.concatenate([c + 0.01 * rng.standard_normal(500) for c in centers])
    for init in ("linear", "density"):  # random init may merge clusters (why the paper prefers linear)
        cb, labels = kmeans_1d(values, 4, init=init, seed=1)
        assert np.allclose(np.sort(cb), centers, atol=0.005), init
        assert np.array_equal(np.repeat(np.arange(4), 500), labels)


@pytest.mark.parametrize("init", ["linear", "density", "random"])
def test_kmeans_fixed_point_each_centroid_is_its_members_mean(init):
    values = np.random.default_rng(1).standard_normal(5000)
    cb, labels = kmeans_1d(values, 16, init=init, iters=5000)  # run Lloyd to convergence
    for k, c in enumerate(cb):
        assert c == pytest.approx(values[labels == k].mean(), abs=1e-6)
    nearest = np.abs(values[:, None] - cb[None, :].astype(np.float64)).argmin(1)
    assert np.mean(nearest == labels) > 0.999  # float32 centroids can flip exact ties only


def test_kmeans_edge_cases():
    cb, labels = kmeans_1d(np.array([]), 4)
    assert cb.size == 0 and labels.size == 0
    cb, labels = kmeans_1d(np.array([0.5, 0.5, 0.5]), 8)
    assert cb.tolist() == [0.5] and labels.tolist() == [0, 0, 0]


def test_uniform_levels_are_evenly_spaced():
    levels, labels = uniform_levels(np.array([-1.0, 0.1, 1.0]), 5)
    assert np.allclose(levels, [-1, -0.5, 0, 0.5, 1]) and labels.tolist() == [0, 2, 4]


def _shared(bits=3):
    torch.manual_seed(0)
    model = build_model("lenet-300-100")
    masks = prune_layers(model, {"ip2": TargetSparsity(0.8), "ip3": TargetSparsity(0.5)})
    return model, masks, SharedWeights(model, masks, {"ip2": bits, "ip3": bits})


def test_weights_snap_to_at_most_2_to_the_bits_values():
    model, masks, shared = _shared(bits=3)
    for n in ("ip2", "ip3"):
        w = getattr(model, n).weight.detach()
        values = torch.unique(w[masks.masks[n]])
        assert len(values) <= 8 and torch.count_nonzero(w[~masks.masks[n]]) == 0
        assert set(values.tolist()) <= set(shared.codes[n].codebook.tolist())


def test_centroid_update_is_the_sum_of_member_gradients():
    model, masks, shared = _shared(bits=2)
    before = shared.codes["ip2"].codebook.clone()
    labels = shared.codes["ip2"].labels
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    F.cross_entropy(model(x), y).backward()
    raw = model.ip2.weight.grad.clone()
    expected = torch.stack([raw[labels == k].sum() for k in range(len(before))])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for hook in (masks, shared):
        hook.after_backward(model)
    opt.step()
    for hook in (masks, shared):
        hook.after_step(model)
    assert torch.allclose(shared.codes["ip2"].codebook, before - 0.1 * expected, atol=1e-6)
    w = model.ip2.weight.detach()
    assert torch.count_nonzero(w[~masks.masks["ip2"]]) == 0
    assert torch.equal(w[labels >= 0], shared.codes["ip2"].codebook[labels[labels >= 0]])
