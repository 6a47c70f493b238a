"""Pooling, upsampling and normalisation modules (and their functional forms) as the file's op records, or
refused naming the module: the layer half of capture_ops.py."""

from __future__ import annotations

import torch
import torch.fx
from torch import nn

from ..format import graph
from .capture_base import VALUE, number_value, refuse

INSTANCE_NORMS = (nn.InstanceNorm1d, nn.InstanceNorm2d)


def pool_op(name: str, m):
    """MaxPool2d (no dilation or indices) or AvgPool2d (no divisor_override) as the file's pooling op."""
    if isinstance(m, nn.MaxPool2d):
        if graph.pair_of(m.dilation) != (1, 1) or m.return_indices:
            refuse(name, f"MaxPool2d(dilation={m.dilation}, return_indices={m.return_indices})")
        cls, extra = graph.MaxPool, {}
    else:
        if m.divisor_override:
            refuse(name, f"AvgPool2d(divisor_override={m.divisor_override})")
        cls, extra = graph.AvgPool, {"count_include_pad": m.count_include_pad}
    return cls(graph.pair_of(m.kernel_size), graph.pair_of(m.stride or m.kernel_size), graph.pair_of(m.padding),
               m.ceil_mode, **extra)


def adaptive_op(name: str, m: nn.AdaptiveAvgPool2d, in_hw):
    """AdaptiveAvgPool2d on (H, W) maps `in_hw` as the file's adaptive average pooling to its output size."""
    size = m.output_size if isinstance(m.output_size, (tuple, list)) else (m.output_size, m.output_size)
    return graph.AdaptiveAvgPool(tuple(in_hw[i] if s is None else int(s) for i, s in enumerate(size)))


def global_max_op(name: str, m: nn.AdaptiveMaxPool2d, in_hw):
    """AdaptiveMaxPool2d to a 1 x 1 output as the file's amax over height and width; other sizes refused."""
    size = m.output_size if isinstance(m.output_size, (tuple, list)) else (m.output_size, m.output_size)
    if m.return_indices or tuple(in_hw[i] if s is None else int(s) for i, s in enumerate(size)) != (1, 1):
        refuse(name, f"AdaptiveMaxPool2d(output_size={m.output_size}, return_indices={m.return_indices})",
               "only global max pooling (output size 1, no indices) is supported")
    return graph.Amax((-2, -1), True)


def upsample_op(where: str, label: str, mode: str, size, scale_factor, in_shape: tuple):
    """Upsampling (nn.Upsample, F.interpolate: `label`) in "nearest" mode by whole factors of a (C, H, W)
    sample ("nearest-exact" picks the same pixels at whole factors); else refused."""
    if mode not in ("nearest", "nearest-exact") or len(in_shape) != 3:
        refuse(where, f"{label}(mode={mode!r}) of a sample of shape {tuple(in_shape)}",
               "the file upsamples (C, H, W) maps in 'nearest' mode by whole factors")
    if size is not None:
        size = graph.pair_of(size)
        scale = tuple(o // i if o % i == 0 else 0 for o, i in zip(size, in_shape[1:]))
    else:
        factors = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * 2
        scale = tuple(int(f) if float(f) == int(f) and f >= 1 else 0 for f in factors)
    if 0 in scale:
        refuse(where, f"{label}(size={size}, scale_factor={scale_factor}) of {tuple(in_shape)}",
               "upsample by whole factors")
    return graph.Upsample(scale)


INTERPOLATE_ARGS = ("size", "scale_factor", "mode", "align_corners", "recompute_scale_factor", "antialias")


def interpolate_op(node: torch.fx.Node, where: str, in_shape: tuple):
    """F.interpolate as an upsample op; a size read from another tensor's shape (a U-Net's skip
    connection: size=skip.shape[2:]) is taken from the example."""
    args = {**dict(zip(INTERPOLATE_ARGS, node.args[1:])), **node.kwargs}
    if args.get("antialias"):
        refuse(where, "interpolate(antialias=True)", "upsample in 'nearest' mode")
    size = args.get("size")
    if isinstance(size, torch.fx.Node):
        size = size.meta.get(VALUE)
    elif isinstance(size, (tuple, list)):
        size = [int(number_value(v, where)) for v in size]
    return upsample_op(where, "interpolate", args.get("mode", "nearest"), size, args.get("scale_factor"), in_shape)


def one_d_pool_op(name: str, m: nn.Module):
    """AdaptiveAvgPool1d(1) / AdaptiveMaxPool1d(1) as the mean / amax over the last axis; other sizes refused."""
    size = m.output_size[0] if isinstance(m.output_size, (tuple, list)) else m.output_size
    if size != 1 or getattr(m, "return_indices", False):
        refuse(name, f"{type(m).__name__}(output_size={m.output_size})", "only global pooling (output size 1, no "
               "indices) is supported")
    return (graph.Mean if isinstance(m, nn.AdaptiveAvgPool1d) else graph.Amax)((-1,), True)


def affine_op(name: str, m: nn.modules.batchnorm._BatchNorm):
    """A BatchNorm in inference mode as a per-channel affine op."""
    if m.running_mean is None:
        refuse(name, "BatchNorm without running statistics (track_running_stats=False)")
    scale = (m.weight if m.affine else 1.0) / torch.sqrt(m.running_var + m.eps)
    shift = (m.bias if m.affine else 0.0) - m.running_mean * scale
    return graph.Affine(tuple(scale.detach().tolist()), tuple(shift.detach().tolist()))


def norm_op(name: str, m: nn.Module, in_shape: tuple):
    """GroupNorm, or InstanceNorm1d/2d (a group per channel of the input: without affine parameters
    PyTorch ignores num_features; with running statistics a per-channel affine, as BatchNorm in inference
    mode)."""
    if isinstance(m, nn.GroupNorm):
        groups, channels, affine = m.num_groups, m.num_channels, m.affine
    elif len(in_shape) != m._get_no_batch_dim():  # PyTorch reads one dimension fewer as one unbatched sample
        refuse(name, f"{type(m).__name__} on a sample of shape {tuple(in_shape)}",
               f"give it a batch of {m._get_no_batch_dim() + 1}-d inputs")
    elif m.track_running_stats:
        return affine_op(name, m)
    else:
        groups = channels = in_shape[0]
        affine = m.affine
    weight = m.weight.detach().tolist() if affine else [1.0] * channels
    bias = m.bias.detach().tolist() if affine else [0.0] * channels
    return graph.GroupNorm(groups, tuple(weight), tuple(bias), float(m.eps))


def layernorm_op(name: str, m: nn.LayerNorm) -> graph.LayerNorm:
    """A LayerNorm over the last axis as the file's op; others refused."""
    if len(m.normalized_shape) != 1:
        refuse(name, f"LayerNorm over {tuple(m.normalized_shape)}", "normalise over the last dimension only")
    n = m.normalized_shape[0]
    weight = m.weight.detach().tolist() if m.weight is not None else [1.0] * n
    bias = m.bias.detach().tolist() if m.bias is not None else [0.0] * n
    return graph.LayerNorm(tuple(weight), tuple(bias), float(m.eps))
