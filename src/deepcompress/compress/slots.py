"""The weight matrices of sequence modules as layers for pruning, weight sharing and export: an
nn.Embedding's table, and each nn.LSTM / nn.GRU layer's input-to-hidden and hidden-to-hidden matrix
(PyTorch's weight_ih_l{k} and weight_hh_l{k}, `_reverse` for the backward direction), each with its
bias; and an nn.MultiheadAttention's packed input projection (in_proj_weight, with in_proj_bias: its
out_proj is a Linear). A `WeightSlot` looks like a Linear to the code that prunes and shares weights:
`.weight`, `.bias` (None when absent), `.parameters()`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import UserError
from ..format.graph import weight_names


class WeightSlot:
    """One weight matrix of `module` (attribute `weight`) and its bias (attribute `bias`, or None)."""

    def __init__(self, module: nn.Module, weight: str, bias: str | None = None, zero_rows: tuple = ()):
        self.module, self.weight_name, self.bias_name, self.zero_rows = module, weight, bias, zero_rows

    @property
    def weight(self) -> nn.Parameter:
        """The weight matrix (the module's own parameter: changing it changes the module)."""
        return getattr(self.module, self.weight_name)

    @property
    def bias(self) -> nn.Parameter | None:
        """The bias that goes with it, or None."""
        return getattr(self.module, self.bias_name) if self.bias_name else None

    def parameters(self):
        """The weight, then the bias if there is one."""
        return iter([self.weight] + ([self.bias] if self.bias is not None else []))

    def initial_mask(self) -> torch.Tensor:
        """What pruning keeps from the start: everything but rows that must stay zero (an all-zero
        padding_idx row)."""
        mask = torch.ones_like(self.weight, dtype=torch.bool)
        for row in self.zero_rows:
            mask[row] = False
        return mask

    def __repr__(self) -> str:
        return f"WeightSlot({type(self.module).__name__}.{self.weight_name})"


def sequence_slots(name: str, module: nn.Module) -> dict[str, WeightSlot]:
    """The module's weight slots by layer name ({} for a module that is not an Embedding, LSTM, GRU or
    MultiheadAttention); an LSTM's projection (proj_size) has none, nor attention with kdim/vdim: capture
    refuses both."""
    if isinstance(module, nn.MultiheadAttention) and module._qkv_same_embed_dim:
        bias = "in_proj_bias" if module.in_proj_bias is not None else None
        return {f"{name}.in_proj_weight": WeightSlot(module, "in_proj_weight", bias)}
    if isinstance(module, nn.Embedding):
        pad = () if module.padding_idx is None else (module.padding_idx % module.num_embeddings,)
        # the row gets no gradient through the lookup, but a tied output layer (or loaded weights) can fill
        # it, and forward() returns it as it is: only a row that is zero now stays zero
        pad = tuple(row for row in pad if not module.weight[row].any())
        return {name: WeightSlot(module, "weight", None, pad)}
    if type(module) not in (nn.LSTM, nn.GRU):
        return {}
    slots = {}
    for pair in weight_names(name, module.num_layers, module.bidirectional):
        for qualified in pair:
            attr = qualified[len(name) + 1:]
            bias = attr.replace("weight", "bias") if module.bias else None
            slots[qualified] = WeightSlot(module, attr, bias)
    return slots


class ParameterSlot(WeightSlot):
    """A parameter registered directly on a user's own module (`self.pos = nn.Parameter(...)`), which
    forward() reads itself; the file stores it as a 2-D fc-kind layer (`file_shape`). Only a recipe that
    names it prunes it."""

    @property
    def file_shape(self) -> tuple:
        """(rows, columns) of its values in the file: its last axis is the columns (1 x 1 for a number)."""
        shape = tuple(self.weight.shape)
        return (math.prod(shape[:-1]), shape[-1]) if shape else (1, 1)

    def __repr__(self) -> str:
        return f"ParameterSlot({type(self.module).__name__}.{self.weight_name})"


def parameter_slots(name: str, module: nn.Module) -> dict[str, ParameterSlot]:
    """The slots of the parameters registered directly on `module` (named NAME.ATTR, or ATTR at the top),
    unless the module is, or derives from, one of PyTorch's modules, whose own ops read its parameters."""
    if any(c.__module__.startswith("torch.") for c in type(module).__mro__ if c not in (nn.Module, object)):
        return {}
    return {f"{name}.{attr}" if name else attr: ParameterSlot(module, attr)
            for attr, _ in module.named_parameters(recurse=False)}


PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)


def weight_layers(model: nn.Module) -> dict:
    """The model's weight layers by name, in definition order (Linear/Conv modules, sequence slots,
    parameter slots), each weight tensor once: a weight tied to an earlier layer's is that layer
    (check_ties names the ties)."""
    return _layers_and_ties(model)[0]


def _layers_and_ties(model: nn.Module) -> tuple[dict, dict[str, tuple[str, object]]]:
    """weight_layers, with each tied name's own layer (module or slot) next to its holder's name."""
    found, ties, holder = {}, {}, {}
    for name, m in model.named_modules():
        if isinstance(m, PRUNABLE):
            candidates = {name: m}
        else:
            candidates = {**sequence_slots(name, m), **parameter_slots(name, m)}
        for layer_name, layer in candidates.items():
            key = id(layer.weight)
            if key in holder:
                ties[layer_name] = (holder[key], layer)
            else:
                holder[key] = layer_name
                found[layer_name] = layer
    return found, ties


def check_ties(model: nn.Module) -> dict[str, str]:
    """The tied names, {name: the layer holding its weight} (an output layer tied to the embedding, as
    GPT-2 does); UserError for a tie the file cannot store once: a tied Linear or Conv whose bias is not
    its holder's (a file layer holds one bias, which every fc or conv op reading it adds), or a tied
    recurrent or attention matrix (their ops name their matrices themselves)."""
    found, ties = _layers_and_ties(model)
    for name, (holder, layer) in ties.items():
        if isinstance(layer, ParameterSlot):
            continue  # forward() reads it by the holder's name
        if isinstance(layer, WeightSlot) and not isinstance(layer.module, nn.Embedding):
            raise UserError(f"{name}: its weight is tied to {holder}; the file cannot tie a recurrent or "
                            "attention matrix: untie the weights")
        if not isinstance(layer, WeightSlot) and layer.bias is not found[holder].bias:
            raise UserError(f"{name}: its weight is tied to {holder} but not its bias; the file stores a tied "
                            f"weight once, with one bias: give both the same bias (or none) or untie the weights")
    return {name: holder for name, (holder, _) in ties.items()}
