"""benchmarks/lstm_sensitivity.py: the one-layer magnitude cut against torch.nn.utils.prune, the knapsack
allocation against enumerating every choice, and the sweep leaving the model as it found it."""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path

import pytest
import torch
from torch.nn.utils import prune

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lstm_sensitivity as sens  # noqa: E402

from deepcompress.models_text import CharLSTM  # noqa: E402


@pytest.mark.parametrize("kept", [0.01, 0.1, 0.37, 1.0])
def test_magnitude_cut_equals_torch_l1_unstructured(kept):
    weight = torch.randn(40, 25, generator=torch.Generator().manual_seed(3))
    module = torch.nn.Linear(25, 40)
    with torch.no_grad():
        module.weight.copy_(weight)
    prune.l1_unstructured(module, "weight", amount=weight.numel() - round(kept * weight.numel()))
    assert torch.equal(sens.magnitude_cut(weight, kept), module.weight.detach())


def _brute_force(curves, sizes, budget):
    unit = sum(sizes.values()) / 1000
    cap = int(budget * sum(sizes.values()) / unit + 1e-9)
    names = list(curves)
    best = None
    for choice in itertools.product(*(curves[n].items() for n in names)):
        used = sum(math.ceil(kept * sizes[n] / unit) for n, (kept, _) in zip(names, choice))
        loss = sum(value for _, value in choice)
        if used <= cap and (best is None or loss < best[0]):
            best = (loss, {n: kept for n, (kept, _) in zip(names, choice)})
    return best


@pytest.mark.parametrize("seed", range(6))
def test_allocation_is_the_best_choice_under_the_budget(seed):
    gen = torch.Generator().manual_seed(seed)
    sizes = {f"m{i}": int(s) for i, s in enumerate(torch.randint(1_000, 50_000, (4,), generator=gen))}
    # loss falls as more is kept, at a rate of its own per layer
    curves = {n: {k: float(torch.rand(1, generator=gen)) / k for k in sens.KEPT} for n in sizes}
    choice = sens.allocate(curves, sizes, 0.1)
    loss, best = _brute_force(curves, sizes, 0.1)
    assert sum(curves[n][choice[n]] for n in sizes) == pytest.approx(loss)
    assert sum(choice[n] * sizes[n] for n in sizes) <= 0.1 * sum(sizes.values())


def test_allocation_refuses_a_budget_no_choice_meets():
    with pytest.raises(ValueError, match="keeps at most 1.0%"):
        sens.allocate({"a": {0.02: 1.0}}, {"a": 100}, 0.01)


def test_sweep_restores_every_weight_and_a_cut_raises_the_loss():
    torch.manual_seed(0)
    model = CharLSTM(30, embed=8, hidden=12)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randint(0, 30, (6, 9))
    y = torch.randint(0, 30, (6, 9))
    curves = sens.sensitivity(model, x, y, layers=("out", "lstm.weight_hh_l1"), fractions=(0.02, 1.0))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert curves["out"][1.0] == pytest.approx(sens.mean_loss(model, x, y))  # nothing cut: the dense loss
    assert curves["out"][0.02] != curves["out"][1.0]
