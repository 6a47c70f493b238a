"""Between a PyTorch model and the .dcz file: layers out (encode), weights back in (decode), and the
forward pass as the format's typed op records (deepcompress.format.graph) so a runtime can run the file
without the Python class."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from .. import format as dcz
from ..errors import UserError
from ..format import graph
from .capture import capture
from .prune import prunable_layers
from .quantize import SharedWeights
from .slots import ParameterSlot

KIND = {nn.Linear: "fc", nn.Conv2d: "conv", nn.Conv1d: "conv"}


def file_shape(module: nn.Module) -> tuple:
    """The shape a layer's weights have in the file: a Conv1d's (out, in, k) is stored as the conv layer
    (out, in, 1, k), a parameter used directly as a 2-D matrix (slots.ParameterSlot); other layers keep
    theirs."""
    if isinstance(module, ParameterSlot):
        return module.file_shape
    shape = tuple(module.weight.shape)
    return (*shape[:2], 1, shape[2]) if isinstance(module, nn.Conv1d) else shape


def architecture_ops(model: nn.Module, example_input: torch.Tensor, variable_axes: tuple = ()) -> list[dict]:
    """The model's forward pass on inputs like `example_input` (batch first; `variable_axes` of it may
    have other lengths) as the file's "ops" JSON; a UserError naming the first module the file cannot
    describe."""
    return graph.emit_ops(capture(model, example_input, variable_axes))


def smallest_encoding(layer: dcz.QuantizedLayer) -> dcz.QuantizedLayer:
    """The same layer with the relative-index width (1..8 bits) that makes its encoding smallest."""
    if layer.nnz == layer.size:
        return dataclasses.replace(layer, gap_bits=1)  # every position stored: the file has no gap stream
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
                name, KIND.get(type(module), "fc"), code.labels.numpy().reshape(file_shape(module)),
                code.codebook.numpy(),
                bias=bias, index_bits=index_bits[name], gap_bits=5 if auto else int(gap_bits[name]),
                value_dtype=check_values(values))
        except dcz.LayerError as err:
            raise UserError(f"cannot encode with [encode] values = {values!r}: {err}") from None
        layers.append(smallest_encoding(layer) if auto else layer)
    return layers


def example_of(meta: dict, example_input: torch.Tensor | None) -> torch.Tensor:
    """The example input (batch first) that fixes the file's input_shape: the one given, else a zero
    batch of meta["input_shape"]; a UserError when there is neither."""
    if example_input is not None:
        return torch.as_tensor(example_input)
    shape = meta.get("input_shape")
    if not isinstance(shape, (list, tuple)) or not shape:
        raise UserError("the file's forward pass needs the model's input shape: pass example_input (a batch "
                        "of one or more inputs) or weights_only=True")
    return torch.zeros(1, *shape, dtype=torch.int64 if meta.get("input_dtype") == "int64" else torch.float32)


def write_model(path: str | Path, model: nn.Module, shared: SharedWeights, gap_bits: dict[str, int],
                index_bits: dict[str, int], meta: dict, values: str = "f32", *,
                example_input: torch.Tensor | None = None, weights_only: bool = False,
                variable_axes: tuple = ()) -> int:
    """Encode the quantized model to a .dcz file at `path` with its forward pass (captured on
    `example_input`, or on zeros of meta["input_shape"]; `variable_axes` of the example, the batch being
    0, may have other lengths when the file is run); returns its size in bytes. With weights_only the
    file has no forward pass."""
    meta = {k: v for k, v in meta.items() if k != "variable_axes"}
    if weights_only:
        meta = {k: v for k, v in meta.items() if k != "ops"}
    else:
        example = example_of(meta, example_input)
        meta = {**meta, "input_shape": list(example.shape[1:]),
                "ops": architecture_ops(model, example, variable_axes)}
        if variable_axes:
            meta["variable_axes"] = sorted(a - 1 for a in variable_axes)  # per sample, as input_shape
        if not torch.is_floating_point(example):  # token ids (an embedding reads them)
            meta["input_dtype"] = "int64"
    return dcz.write(path, quantized_layers(model, shared, gap_bits, index_bits, values), meta)


@torch.no_grad()
def load_into(model: nn.Module, path: str | Path) -> dict:
    """Overwrite `model`'s layers with the weights decoded from the file; returns the file's meta."""
    layers, meta = dcz.read(path)
    modules = {**dict(model.named_modules()), **prunable_layers(model)}
    for layer in layers:
        module = modules.get(layer.name)
        if module is None or file_shape(module) != layer.shape:
            got = None if module is None else file_shape(module)
            raise UserError(f"{path}: layer {layer.name} has shape {layer.shape}, the model has {got}")
        module.weight.copy_(torch.from_numpy(layer.to_dense()).reshape(module.weight.shape))
        if layer.bias is not None:
            module.bias.copy_(torch.from_numpy(layer.bias))
    return meta
