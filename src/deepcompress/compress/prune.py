"""Magnitude pruning (Han et al. 2015): per-layer masks that stay applied through retraining.

A class per threshold rule behind a thin functional API, in the manner of torch.nn.utils.prune:

- `StdThreshold(quality)`: prune |w| < quality x std(w) of the layer (the paper's rule);
- `TargetSparsity(sparsity)`: prune the smallest-magnitude fraction `sparsity` of the layer;
- `prune_global(model, sparsity)`: one magnitude threshold across all pruned layers.

Masks live in a `Masks` object that is also a training hook: gradients of pruned weights are zeroed after
backward and the weights are re-zeroed after every step, so pruned weights stay exactly zero. Its
`agree` function decides whose masks count after each pruning: this process's own, or, in a
data-parallel run, rank 0's on every rank.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UserError
from ..train import TrainHook
from .slots import ParameterSlot, weight_layers


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The model's Linear and Conv2d layers by qualified name, in definition order, and the weight slots
    of its Embedding, LSTM and GRU modules (compress/slots.py: an Embedding under its own name, an LSTM's
    matrices as NAME.weight_ih_l0, NAME.weight_hh_l0, ...) and the parameters its own modules hold directly
    (NAME.ATTR); a weight tied to an earlier layer's (slots.weight_layers) is that layer."""
    return weight_layers(model)


def matrix_layers(model: nn.Module) -> dict[str, nn.Module]:
    """prunable_layers without the parameters a module reads itself (a layer-scale vector, a temperature):
    what global pruning and the sensitivity scans consider."""
    return {n: m for n, m in prunable_layers(model).items() if not isinstance(m, ParameterSlot)}


def _kth_magnitude(values: torch.Tensor, fraction: float) -> float:
    """Magnitude below which `fraction` of `values` lie (0 keeps everything)."""
    k = int(round(fraction * values.numel()))
    if k <= 0:
        return 0.0
    return values.abs().flatten().kthvalue(min(k, values.numel())).values.item()


@dataclass
class StdThreshold:
    """Prune weights with |w| below quality x std(w) of their layer (Han et al.'s rule)."""

    quality: float

    def threshold(self, weight: torch.Tensor, alive: torch.Tensor) -> float:
        """Magnitude threshold for one layer given its currently surviving weights."""
        return self.quality * weight[alive].std().item() if alive.sum() > 1 else 0.0


@dataclass
class TargetSparsity:
    """Prune the smallest-magnitude `sparsity` fraction of the layer's weights."""

    sparsity: float

    def threshold(self, weight: torch.Tensor, alive: torch.Tensor) -> float:
        """Magnitude threshold that leaves (1 - sparsity) of the layer's weights."""
        return _kth_magnitude(weight, self.sparsity)


def _own(masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A single process keeps the masks it computed."""
    return masks


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise UserError(f"sparsity for {name} must be in [0, 1), got {value}")


def _initial_mask(layer) -> torch.Tensor:
    """Keep everything, except what a weight slot says must stay zero (an Embedding's padding row)."""
    if hasattr(layer, "initial_mask"):
        return layer.initial_mask()
    return torch.ones_like(layer.weight, dtype=torch.bool)


class Masks(TrainHook):
    """Boolean keep-masks per layer; as a hook, keeps pruned weights at exactly zero during training."""

    def __init__(self, model: nn.Module, layers: list[str] | None = None):
        found = prunable_layers(model)
        names = layers if layers is not None else list(found)
        missing = [n for n in names if n not in found]
        if missing:
            raise UserError(f"no prunable layer named {', '.join(missing)}; layers: {', '.join(found)}")
        self.modules = {n: found[n] for n in names}
        self.masks = {n: _initial_mask(m) for n, m in self.modules.items()}
        self.agree = _own  # maps the masks this process computed to the masks every process keeps

    def prune(self, rules: dict[str, object]) -> None:
        """Apply a threshold rule per layer (`rules` maps layer name to a rule object)."""
        for name, rule in rules.items():
            if isinstance(rule, TargetSparsity):
                _check_fraction(name, rule.sparsity)
            weight = self.modules[name].weight.detach()
            cut = rule.threshold(weight, self.masks[name])
            self.masks[name] &= weight.abs() > cut if cut > 0 else torch.ones_like(self.masks[name])
        self.masks = self.agree(self.masks)
        self.apply()

    def prune_global(self, sparsity: float) -> None:
        """Prune to `sparsity` overall with one magnitude threshold shared by all layers (not the parameters
        a module reads itself: a layer-scale vector of small values would be cut whole)."""
        _check_fraction("the model", sparsity)
        matrices = {n: m for n, m in self.modules.items() if not isinstance(m, ParameterSlot)}
        weights = torch.cat([m.weight.detach().flatten() for m in matrices.values()])
        cut = _kth_magnitude(weights, sparsity)
        for name, module in matrices.items():
            self.masks[name] &= module.weight.detach().abs() > cut
        self.masks = self.agree(self.masks)
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        """Zero every pruned weight."""
        for name, module in self.modules.items():
            module.weight.mul_(self.masks[name])

    def after_backward(self, model: nn.Module) -> None:
        """Zero the gradients of pruned weights so neither SGD nor momentum can revive them."""
        for name, module in self.modules.items():
            if module.weight.grad is not None:
                module.weight.grad.mul_(self.masks[name])

    def after_step(self, model: nn.Module) -> None:
        """Re-zero pruned weights (weight decay or Adam's state could otherwise move them)."""
        self.apply()

    def density(self) -> dict[str, float]:
        """Fraction of weights kept, per layer."""
        return {n: m.float().mean().item() for n, m in self.masks.items()}

    def kept(self) -> int:
        """Total number of weights kept across the masked layers."""
        return int(sum(m.sum().item() for m in self.masks.values()))


def prune_layers(model: nn.Module, rules: dict[str, object], masks: Masks | None = None) -> Masks:
    """Prune `model` in place with one rule per layer; returns the (updated) masks."""
    masks = masks or Masks(model, list(rules))
    masks.prune(rules)
    return masks


def prune_global(model: nn.Module, sparsity: float, masks: Masks | None = None) -> Masks:
    """Prune all Linear/Conv2d layers of `model` to `sparsity` overall with one shared threshold."""
    masks = masks or Masks(model)
    masks.prune_global(sparsity)
    return masks


def polynomial_sparsity(step: int, total_steps: int, final: float, initial: float = 0.0,
                        power: float = 3.0) -> float:
    """Gradual pruning schedule (Zhu & Gupta 2017): sparsity at `step` rising from initial to final."""
    t = min(max(step / max(total_steps, 1), 0.0), 1.0)
    return final + (initial - final) * (1.0 - t) ** power


class GradualPruning(TrainHook):
    """During training, raise each layer's sparsity along the polynomial schedule every `every` steps."""

    def __init__(self, masks: Masks, final: dict[str, float], total_steps: int, every: int = 100,
                 initial: dict[str, float] | None = None):
        self.masks, self.final, self.total, self.every, self.step = masks, final, total_steps, every, 0
        self.initial = initial or {}  # sparsity each layer starts from (already pruned to it)
        above = [n for n, s in self.initial.items() if s > final.get(n, s)]
        if above:  # masks only grow: the layer would stay above the target it was asked for
            raise UserError(f"gradual pruning of {', '.join(above)}: starts above its final sparsity")

    def after_step(self, model: nn.Module) -> None:
        """Advance the schedule; prune when a pruning step is reached, then keep masks applied."""
        self.step += 1
        if self.step % self.every == 0 or self.step == self.total:
            target = {n: polynomial_sparsity(self.step, self.total, s, self.initial.get(n, 0.0))
                      for n, s in self.final.items()}
            self.masks.prune({n: TargetSparsity(s) for n, s in target.items()})
        self.masks.after_step(model)

    def after_backward(self, model: nn.Module) -> None:
        """Mask gradients like the static masks do."""
        self.masks.after_backward(model)


class L1Penalty(TrainHook):
    """Adds strength x sign(w) to the gradient of each masked layer's weights (L1 regularisation)."""

    def __init__(self, masks: Masks, strength: float):
        self.masks, self.strength = masks, strength

    def after_backward(self, model: nn.Module) -> None:
        """Add the L1 subgradient before the masks zero the pruned entries."""
        for module in self.masks.modules.values():
            if module.weight.grad is not None:
                module.weight.grad.add_(self.strength * module.weight.detach().sign())


def adjusted_dropout(original_rate: float, kept_fraction: float) -> float:
    """Dropout rate for retraining after pruning (Han et al., NIPS 2015, eq. 2): D_r = D_o x sqrt(C_ir / C_io),
    with `kept_fraction` = C_ir / C_io, the layer's connections after pruning over those before.

    Example: adjusted_dropout(0.5, 0.09) gives 0.15 (a 0.5 dropout before a layer pruned to 9%).
    """
    if not 0.0 <= original_rate <= 1.0:
        raise UserError(f"dropout rate must be in [0, 1], got {original_rate}")
    if not 0.0 <= kept_fraction <= 1.0:
        raise UserError(f"fraction of connections kept must be in [0, 1], got {kept_fraction}")
    return original_rate * kept_fraction ** 0.5


def adjust_dropout(model: nn.Module, masks: Masks, original_rates: dict[str, float]) -> dict[str, float]:
    """Set each named dropout module's rate from the density of the masked layer it feeds (adjusted_dropout).

    A library function: the built-in recipes do not call it (the LeNets have no dropout).

    Args:
        model: the pruned model; its dropout modules are changed in place.
        masks: the pruning masks; the layer a dropout feeds is the next masked layer in definition order.
        original_rates: dropout module name -> its rate before pruning.

    Returns:
        The new rate of each named dropout module.
    """
    modules = dict(model.named_modules())
    names = list(modules)
    new = {}
    for drop_name, rate in original_rates.items():
        if not isinstance(modules.get(drop_name), nn.modules.dropout._DropoutNd):
            raise UserError(f"{drop_name!r} is not a dropout module of the model")
        after = [n for n in names[names.index(drop_name):] if n in masks.masks]
        if not after:
            raise UserError(f"dropout {drop_name} feeds no pruned layer")
        new[drop_name] = adjusted_dropout(rate, masks.density()[after[0]])
        modules[drop_name].p = new[drop_name]
    return new
