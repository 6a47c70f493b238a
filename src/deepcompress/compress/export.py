"""Between a PyTorch model and the .dcz file: layers out (encode), weights back in (decode), and the
forward pass as the format's typed op records (deepcompress.format.graph) so a runtime can run the file
without the Python class."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from .. import format as dcz
from ..errors import UserError
from ..format import graph
from .quantize import SharedWeights

KIND = {nn.Linear: "fc", nn.Conv2d: "conv"}


IDENTITY = "identity"  # a module that does nothing at inference (dropout): no op in the file


def _module_op(name: str, module: nn.Module) -> graph.Op | str | None:
    if isinstance(module, nn.Linear):
        return graph.Fc(layer=name)
    if isinstance(module, nn.Conv2d):
        if (module.groups != 1 or module.dilation != (1, 1) or module.padding_mode != "zeros"
                or isinstance(module.padding, str)):
            return None
        return graph.Conv(layer=name, stride=tuple(module.stride), padding=tuple(module.padding))
    if isinstance(module, nn.ReLU):
        return graph.Relu()
    if isinstance(module, nn.MaxPool2d):
        if module.padding not in (0, (0, 0)) or module.dilation not in (1, (1, 1)) or module.ceil_mode:
            return None
        kernel = graph.pair_of(module.kernel_size)
        return graph.MaxPool(kernel, graph.pair_of(module.stride or module.kernel_size))
    if isinstance(module, (nn.Dropout, nn.Identity)):
        return IDENTITY
    if isinstance(module, nn.Flatten):
        return graph.Flatten()
    return None


def _call_op(node: torch.fx.Node) -> graph.Op | None:
    if node.op == "call_method" and node.target in ("flatten", "view", "reshape"):
        return graph.Flatten()
    if node.op == "call_function" and node.target in (torch.flatten,):
        return graph.Flatten()
    if node.op == "call_function" and node.target in (F.relu, torch.relu):
        return graph.Relu()
    return None


def architecture_ops(model: nn.Module) -> list[dict] | None:
    """The model's forward pass as a chain of ops (fc, conv, relu, maxpool, flatten) in the file's JSON
    form, or None if the model is not a simple chain of supported ops (the file then stores weights only)."""
    try:
        traced = torch.fx.symbolic_trace(model).graph
    except Exception:  # fx cannot trace data-dependent control flow; that model simply has no ops list
        return None
    modules = dict(model.named_modules())
    ops = []
    for node in traced.nodes:
        if node.op in ("placeholder", "output"):
            continue
        op = _module_op(node.target, modules[node.target]) if node.op == "call_module" else _call_op(node)
        if op is None:
            return None
        if op != IDENTITY:
            ops.append(op)
    return graph.emit_ops(ops)


def smallest_encoding(layer: dcz.QuantizedLayer) -> dcz.QuantizedLayer:
    """The same layer with the relative-index width (1..8 bits) that makes its encoding smallest."""
    candidates = [dataclasses.replace(layer, gap_bits=bits) for bits in range(1, 9)]
    return min(candidates, key=lambda c: len(dcz.encode([c], {})))


def check_values(values) -> str:
    """The recipe's [encode] `values` setting checked: "f32" or "f16" (how codebooks and biases are stored)."""
    if not isinstance(values, str) or values not in dcz.VALUE_TYPES:
        raise UserError(f"recipe [encode] values = {values!r}: expected one of "
                        f"{', '.join(map(repr, dcz.VALUE_TYPES))}")
    return values


def quantized_layers(model: nn.Module, shared: SharedWeights, gap_bits: dict[str, int | str],
                     index_bits: dict[str, int], values: str = "f32") -> list[dcz.QuantizedLayer]:
    """The model's weight-shared layers as file records, built from weight sharing's labels (each
    surviving weight's cluster) and codebooks directly.

    A gap width of "auto" picks, per layer, the width whose encoding is smallest. `values` "f16" stores
    codebooks and biases rounded to float16 (the file then differs from the model by that rounding);
    a value beyond float16's range is a UserError.
    """
    layers = []
    for name, module in shared.modules.items():
        bias = module.bias.detach().numpy() if module.bias is not None else None
        auto = gap_bits[name] == "auto"
        code = shared.codes[name]
        try:
            layer = dcz.QuantizedLayer.from_labels(
                name, KIND[type(module)], code.labels.numpy(), code.codebook.numpy(),
                bias=bias, index_bits=index_bits[name], gap_bits=5 if auto else int(gap_bits[name]),
                value_dtype=check_values(values))
        except dcz.LayerError as err:
            raise UserError(f"cannot encode with [encode] values = {values!r}: {err}") from None
        layers.append(smallest_encoding(layer) if auto else layer)
    return layers


def write_model(path: str | Path, model: nn.Module, shared: SharedWeights, gap_bits: dict[str, int],
                index_bits: dict[str, int], meta: dict, values: str = "f32") -> int:
    """Encode the quantized model to a .dcz file at `path`; returns its size in bytes."""
    meta = {**meta, "ops": architecture_ops(model)}
    return dcz.write(path, quantized_layers(model, shared, gap_bits, index_bits, values), meta)


@torch.no_grad()
def load_into(model: nn.Module, path: str | Path) -> dict:
    """Overwrite `model`'s layers with the weights decoded from the file; returns the file's meta."""
    layers, meta = dcz.read(path)
    modules = dict(model.named_modules())
    for layer in layers:
        module = modules.get(layer.name)
        if module is None or tuple(module.weight.shape) != layer.shape:
            got = None if module is None else tuple(module.weight.shape)
            raise UserError(f"{path}: layer {layer.name} has shape {layer.shape}, the model has {got}")
        module.weight.copy_(torch.from_numpy(layer.to_dense()))
        if layer.bias is not None:
            module.bias.copy_(torch.from_numpy(layer.bias))
    return meta
