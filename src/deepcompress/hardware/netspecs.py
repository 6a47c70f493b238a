"""Layer shapes for the dense-array and roofline models: FC and conv layers as shapes only, plus AlexNet
and VGG-16 (ImageNet) as lists of them.

AlexNet is the Caffe reference net (227 x 227 input, conv2/4/5 in two groups, 61M weights); VGG-16 is
configuration D (224 x 224, 3 x 3 convolutions, 138M weights). FC weight densities are EIE's Table III
(eie_tables.py); conv layers are given dense (density 1), since only shapes matter here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..errors import UserError
from ..format.op_records import pair_of, padding4, pool_out
from .eie_tables import benchmark


@dataclass(frozen=True)
class LayerShape:
    """One layer: `in_channels` -> `out_channels` over an `in_hw` input with a `kernel`, `stride`,
    `padding`, `groups` and `dilation`. An FC layer has in_hw = kernel = (1, 1): in_channels inputs,
    out_channels outputs. `stride` and `dilation` are one int or (height, width); `padding` one int,
    (height, width) or (top, bottom, left, right)."""

    name: str
    kind: str
    in_channels: int
    out_channels: int
    in_hw: tuple[int, int] = (1, 1)
    kernel: tuple[int, int] = (1, 1)
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int, int, int] = 0
    groups: int = 1
    weight_density: float = 1.0
    dilation: int | tuple[int, int] = 1

    def __post_init__(self):
        if self.kind not in ("fc", "conv"):
            raise UserError(f"layer {self.name}: kind must be 'fc' or 'conv', got {self.kind!r}")
        if min(self.in_channels, self.out_channels, *self.in_hw, *self.kernel, *self.strides, *self.dilations,
               self.groups) < 1:
            raise UserError(f"layer {self.name}: sizes, stride, dilation and groups must be positive")
        if min(self.paddings) < 0:
            raise UserError(f"layer {self.name}: padding must not be negative, got {self.padding}")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise UserError(f"layer {self.name}: channels must divide into {self.groups} groups")
        if min(self.out_hw) < 1:
            raise UserError(f"layer {self.name}: kernel {self.kernel} does not fit input {self.in_hw}")
        if not 0.0 <= self.weight_density <= 1.0:
            raise UserError(f"layer {self.name}: weight density must lie in [0, 1]")

    @property
    def strides(self) -> tuple[int, int]:
        """Stride (height, width)."""
        return pair_of(self.stride)

    @property
    def dilations(self) -> tuple[int, int]:
        """Dilation (height, width)."""
        return pair_of(self.dilation)

    @property
    def paddings(self) -> tuple[int, int, int, int]:
        """Zero padding (top, bottom, left, right); a pair is (height, width), as in the file's ops."""
        return padding4(self.padding)

    @property
    def out_hw(self) -> tuple[int, int]:
        """Output height and width."""
        top, bottom, left, right = self.paddings
        return tuple(pool_out(n, k, s, lo, hi, d) for n, k, s, lo, hi, d in
                     zip(self.in_hw, self.kernel, self.strides, (top, left), (bottom, right), self.dilations))

    @property
    def positions(self) -> int:
        """Output positions S (1 for FC): how often each weight is used per image."""
        return math.prod(self.out_hw)

    @property
    def weights(self) -> int:
        """Weights, zeros included."""
        return self.out_channels * (self.in_channels // self.groups) * math.prod(self.kernel)

    @property
    def nonzero_weights(self) -> int:
        """Expected nonzero weights at `weight_density`."""
        return round(self.weights * self.weight_density)

    @property
    def macs(self) -> int:
        """Multiply-accumulates per image with dense weights."""
        return self.weights * self.positions

    @property
    def input_values(self) -> int:
        """Input activations per image."""
        return self.in_channels * math.prod(self.in_hw)

    @property
    def output_values(self) -> int:
        """Output activations per image."""
        return self.out_channels * self.positions


def fc(name: str, inputs: int, outputs: int, weight_density: float = 1.0) -> LayerShape:
    """A fully connected layer of `inputs` x `outputs`."""
    return LayerShape(name, "fc", inputs, outputs, weight_density=weight_density)


def conv(name: str, cin: int, cout: int, hw: int, k: int, stride: int = 1, pad: int = 0, groups: int = 1) -> LayerShape:
    """A square convolution: `cin` x hw x hw input, `cout` maps, k x k kernel."""
    return LayerShape(name, "conv", cin, cout, (hw, hw), (k, k), stride, pad, groups)


def benchmark_fc(name: str) -> LayerShape:
    """EIE's benchmark layer `name` (Table III) as an FC shape at its weight density."""
    b = benchmark(name)
    return fc(b.name, b.inputs, b.outputs, b.weight_density)


def _density(name: str) -> float:
    """Weight density of EIE's benchmark layer `name` (Table III)."""
    return benchmark(name).weight_density


def _vgg16() -> tuple[LayerShape, ...]:
    layers, cin, hw = [], 3, 224
    for block, (cout, reps) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)), start=1):
        for r in range(1, reps + 1):
            layers.append(conv(f"conv{block}_{r}", cin, cout, hw, 3, 1, 1))
            cin = cout
        hw //= 2  # 2 x 2 max pooling after each block
    layers += [fc("fc6", 512 * 7 * 7, 4096, _density("VGG-6")), fc("fc7", 4096, 4096, _density("VGG-7")),
               fc("fc8", 4096, 1000, _density("VGG-8"))]
    return tuple(layers)


ALEXNET: tuple[LayerShape, ...] = (
    conv("conv1", 3, 96, 227, 11, stride=4),
    conv("conv2", 96, 256, 27, 5, pad=2, groups=2),
    conv("conv3", 256, 384, 13, 3, pad=1),
    conv("conv4", 384, 384, 13, 3, pad=1, groups=2),
    conv("conv5", 384, 256, 13, 3, pad=1, groups=2),
    fc("fc6", 256 * 6 * 6, 4096, _density("Alex-6")),
    fc("fc7", 4096, 4096, _density("Alex-7")),
    fc("fc8", 4096, 1000, _density("Alex-8")),
)
VGG16: tuple[LayerShape, ...] = _vgg16()
NETWORKS: dict[str, tuple[LayerShape, ...]] = {"alexnet": ALEXNET, "vgg16": VGG16}


def network(name: str) -> tuple[LayerShape, ...]:
    """The layer shapes of `name` ('alexnet' or 'vgg16')."""
    try:
        return NETWORKS[name.lower().replace("-", "")]
    except KeyError:
        raise UserError(f"no network {name!r}; known: {', '.join(NETWORKS)}") from None


def dense(layer: LayerShape) -> LayerShape:
    """The same layer with every weight kept."""
    return replace(layer, weight_density=1.0)
