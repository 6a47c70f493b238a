"""Preparing a user's model for compression: BatchNorm folded into the convolution or linear layer before
it (so weight sharing quantizes the weights the file will hold), and torch.nn.utils.prune's
reparametrisation made permanent (so the weights compression sees are the masked ones)."""

from __future__ import annotations

import torch
import torch.fx
from torch.fx.passes.shape_prop import ShapeProp
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils import prune

from .capture_trace import trace_forward


def apply_torch_prune(model: nn.Module) -> list[str]:
    """Make every torch.nn.utils.prune reparametrisation permanent (weight = weight_orig * weight_mask, and
    so for any parameter: an LSTM's weight_ih_l0, an attention's in_proj_weight); returns the names of the
    parameters it changed."""
    done = []
    for name, module in model.named_modules():
        hooks = [h for h in module._forward_pre_hooks.values() if isinstance(h, prune.BasePruningMethod)]
        for param in dict.fromkeys(h._tensor_name for h in hooks):
            prune.remove(module, param)
            done.append(f"{name}.{param}" if name else param)
    return done


def _calls(graph: torch.fx.Graph) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            counts[node.target] = counts.get(node.target, 0) + 1
    return counts


def foldable_pairs(model: nn.Module, example: torch.Tensor | None = None) -> list[tuple[str, str]]:
    """(layer, batchnorm) names where a Conv2d or Linear whose weight no other module shares feeds only a
    BatchNorm in inference mode, each called once; a Linear only when its output is (batch, features) on
    `example` (BatchNorm1d of a 3-D tensor normalises another axis), so without an example only
    convolutions fold. Empty when torch.fx
    cannot trace the model (capture then says why)."""
    try:  # traced as capture traces it: with forward()'s defaults, so on the branch the model runs
        traced = trace_forward(model, None if example is None else torch.as_tensor(example))
    except Exception:  # an untraceable model is refused, with fx's reason, when its forward pass is captured
        return []
    graph = traced.graph
    if example is not None:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            ShapeProp(traced).propagate(torch.as_tensor(example))
        model.train(was_training)
    modules, calls = dict(model.named_modules()), _calls(graph)
    weights = [id(m.weight) for m in modules.values() if isinstance(getattr(m, "weight", None), torch.Tensor)]
    tied = {w for w in weights if weights.count(w) > 1}  # folding would change every layer sharing it
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], _BatchNorm):
            continue
        src = node.args[0]
        if (isinstance(src, torch.fx.Node) and src.op == "call_module"
                and isinstance(modules[src.target], (nn.Conv2d, nn.Linear)) and len(src.users) == 1
                and id(modules[src.target].weight) not in tied
                and calls[src.target] == 1 and calls[node.target] == 1
                and modules[node.target].running_mean is not None and _folds_along_features(src, modules)):
            pairs.append((src.target, node.target))
    return pairs


def _folds_along_features(node: torch.fx.Node, modules: dict) -> bool:
    """Whether a BatchNorm after this layer's output normalises the layer's output channels."""
    if isinstance(modules[node.target], nn.Conv2d):
        return True
    meta = node.meta.get("tensor_meta")
    return meta is not None and len(meta.shape) == 2


@torch.no_grad()
def fold_batchnorm(model: nn.Module, example: torch.Tensor | None = None) -> list[tuple[str, str]]:
    """Fold every foldable BatchNorm (inference statistics) into the layer before it and replace it by
    nn.Identity; returns the (layer, batchnorm) pairs folded (see foldable_pairs for `example`). Pruned
    weights stay exactly zero."""
    pairs = foldable_pairs(model, example)
    for layer_name, bn_name in pairs:
        layer, bn = model.get_submodule(layer_name), model.get_submodule(bn_name)
        scale = (bn.weight if bn.affine else torch.ones_like(bn.running_var)) / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
        layer.weight.mul_(scale.reshape(-1, *[1] * (layer.weight.dim() - 1)))
        bias = layer.bias if layer.bias is not None else torch.zeros_like(bn.running_mean)
        new_bias = (bias - bn.running_mean) * scale + shift
        if layer.bias is None:
            layer.bias = nn.Parameter(new_bias)
        else:
            layer.bias.copy_(new_bias)
        parent, _, attr = bn_name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, nn.Identity())
    return pairs
