"""Sensitivity analysis: each point equals pruning that layer alone; suggestions follow the tolerance."""

from __future__ import annotations

import torch

from deepcompress.compress import TargetSparsity, prune_layers
from deepcompress.compress.sensitivity import plot_sensitivity, sensitivity, suggest_sparsity
from deepcompress.models import build_model
from deepcompress.train import TrainConfig, evaluate, train


def test_points_equal_pruning_one_layer_alone(tiny_data, tmp_path):
    torch.manual_seed(0)
    model = build_model("lenet-300-100")
    train(model, tiny_data, TrainConfig(epochs=1, batch_size=32), progress=False, verbose=False)
    curves = sensitivity(model, tiny_data.test_x, tiny_data.test_y, grid=(0.0, 0.9, 0.99))
    assert set(curves) == {"ip1", "ip2", "ip3"}
    assert curves["ip2"][0] == (0.0, evaluate(model, tiny_data.test_x, tiny_data.test_y))
    trial = build_model("lenet-300-100")
    trial.load_state_dict(model.state_dict())
    prune_layers(trial, {"ip1": TargetSparsity(0.9)})
    assert curves["ip1"][1] == (0.9, evaluate(trial, tiny_data.test_x, tiny_data.test_y))
    plot_sensitivity(curves, tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_suggestion_is_the_largest_sparsity_within_tolerance():
    curves = {"a": [(0.0, 0.02), (0.5, 0.021), (0.8, 0.024), (0.9, 0.03)],
              "b": [(0.0, 0.02), (0.5, 0.05)]}
    assert suggest_sparsity(curves, 0.005) == {"a": 0.8, "b": 0.0}
