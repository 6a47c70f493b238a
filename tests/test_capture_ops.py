"""The capture's newer op mappings, each run from the file and through decompress against PyTorch, and what
they refuse: global max pooling (amax), hardswish / hardsigmoid / log_softmax, ELU / softplus / mish /
PReLU, group and instance normalisation, nearest upsampling, multi-tensor calls, dtypes, and zero padding merged into the
convolution that reads it."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepcompress import format as dcz
from deepcompress.compress.capture import Unsupported
from deepcompress.compress.export import architecture_ops

from conftest import REL_TOL, Lambda, rel_error, round_trip


class TextCNN(nn.Module):
    """Kim's sentence CNN on embedded words (N, D, T): Conv1d over time, global max pooling (amax), a classifier."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv1d(6, 5, 3, padding=1), nn.Linear(5, 3)

    def forward(self, x):
        return self.fc(torch.amax(F.relu(self.conv(x)), dim=2))


class GlobalMax(nn.Module):
    """Channel attention as CBAM computes it: global max and average pooling of a feature map."""

    def __init__(self, functional: bool):
        super().__init__()
        self.conv, self.fc, self.functional = nn.Conv2d(2, 4, 3), nn.Linear(4, 4), functional
        self.pool = nn.AdaptiveMaxPool2d(1)

    def forward(self, x):
        h = self.conv(x)
        peak = F.adaptive_max_pool2d(h, 1) if self.functional else self.pool(h)
        gate = torch.sigmoid(self.fc(peak.flatten(1)) + self.fc(h.mean((2, 3))))
        return h.amax((-2, -1), keepdim=True).flatten(1) * gate


@pytest.mark.parametrize("model, x", [
    (TextCNN(), torch.rand(3, 6, 7) - 0.5),
    (GlobalMax(False), torch.rand(3, 2, 6, 5) - 0.5),
    (GlobalMax(True), torch.rand(3, 2, 6, 5) - 0.5),
])
def test_global_max_pooling_runs_from_the_file_and_decompresses(tmp_path, model, x):
    from deepcompress import decompress

    got, expected, path = round_trip(model, x, tmp_path)
    assert rel_error(got, expected) < REL_TOL
    assert "amax" in [op["op"] for op in dcz.read(path)[1]["ops"]]
    with torch.no_grad():
        assert rel_error(decompress(path)(x).numpy(), expected) < REL_TOL


@pytest.mark.parametrize("fn, message", [
    (lambda h: torch.amax(h), r"forward\(\) amax: an operation whose output is a single number"),
    (lambda h: h.sum(), r"forward\(\) sum_1: an operation whose output is a single number"),
    (lambda h: torch.amax(h, dim=0), "does not keep the batch"),
    (lambda h: F.adaptive_max_pool2d(h.reshape(-1, 1, 4, 4), 2).flatten(1), r"only global max pooling"),
])
def test_max_pooling_the_file_cannot_express_is_refused(fn, message):
    with pytest.raises(Unsupported, match=message):
        architecture_ops(Lambda(fn), torch.rand(1, 8))


def test_max_over_a_dimension_is_refused_pointing_to_amax_and_an_unused_chunk_is_ignored():
    with pytest.raises(Unsupported, match=r"forward\(\) max_1: max\(\) returning 2 tensors .*use x\.amax\(dim\)"):
        architecture_ops(Lambda(lambda h: torch.max(h.reshape(-1, 4, 4), 1)[0].flatten(1)), torch.rand(1, 8))
    ops = architecture_ops(Lambda(lambda h: (h.chunk(2, 1), torch.relu(h))[1]), torch.rand(1, 8))
    assert [op["op"] for op in ops] == ["fc", "relu"]


class MobileTail(nn.Module):
    """MobileNetV3's activations (hardswish, a hardsigmoid gate) and the PyTorch MNIST example's log_softmax."""

    def __init__(self, functional: bool):
        super().__init__()
        self.fc1, self.fc2, self.functional = nn.Linear(8, 16), nn.Linear(16, 16), functional
        self.hs, self.hg, self.out = nn.Hardswish(), nn.Hardsigmoid(), nn.LogSoftmax(dim=1)

    def forward(self, x):
        if self.functional:
            h = F.hardswish(4 * self.fc1(x))
            return F.log_softmax(h * F.hardsigmoid(self.fc2(h)), dim=-1)
        h = self.hs(4 * self.fc1(x))
        return self.out(h * self.hg(self.fc2(h)))


@pytest.mark.parametrize("functional", [False, True])
def test_hardswish_hardsigmoid_and_log_softmax_run_from_the_file(tmp_path, functional):
    from deepcompress import decompress

    x = torch.rand(5, 8) * 4 - 2  # inputs on both sides of the -3 / 3 corners after the 4x scale
    got, expected, path = round_trip(MobileTail(functional), x, tmp_path)
    assert rel_error(got, expected) < REL_TOL
    assert {"hardswish", "hardsigmoid", "log_softmax"} <= {op["op"] for op in dcz.read(path)[1]["ops"]}
    with torch.no_grad():
        assert rel_error(decompress(path)(x).numpy(), expected) < REL_TOL


@pytest.mark.parametrize("fn, message", [
    (lambda h: F.log_softmax(h, dim=1, dtype=torch.float16), r"log_softmax with dtype=torch\.float16 is not supported"),
    (lambda h: torch.softmax(h, 1, torch.float64), r"softmax with dtype=torch\.float64 is not supported"),
    (lambda h: F.adaptive_max_pool2d(h.reshape(-1, 1, 4, 4), 1, True)[0].flatten(1), "pooling indices are not"),
])
def test_what_the_file_would_compute_in_another_dtype_or_with_indices_is_refused(fn, message):
    with pytest.raises(Unsupported, match=message):
        architecture_ops(Lambda(fn), torch.rand(1, 8))


def test_softmax_in_float32_given_explicitly_is_captured():
    ops = architecture_ops(Lambda(lambda h: F.softmax(h, dim=1, dtype=torch.float32)), torch.rand(1, 8))
    assert [op["op"] for op in ops] == ["fc", "softmax"]


class PaddedConvs(nn.Module):
    """TF-style "same" padding as EfficientNet ports write it: ZeroPad2d / F.pad before a stride-2 conv."""

    def __init__(self):
        super().__init__()
        self.pad, self.conv = nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(2, 3, 3, stride=2)
        self.conv2, self.conv1d = nn.Conv2d(3, 3, 3, padding=1, groups=3), nn.Conv1d(3, 2, 3)

    def forward(self, x):
        h = F.relu(self.conv(self.pad(x)))
        h = self.conv2(F.pad(h, (1, 2, 0, 1)))  # added to the conv's own padding
        return self.conv1d(F.pad(h.flatten(2), (2, 0))).flatten(1)


def test_zero_padding_before_a_convolution_is_merged_into_its_padding(tmp_path):
    from deepcompress import decompress

    x = torch.rand(3, 2, 9, 8) - 0.5
    got, expected, path = round_trip(PaddedConvs(), x, tmp_path)
    assert rel_error(got, expected) < REL_TOL
    ops = dcz.read(path)[1]["ops"]
    assert [op["op"] for op in ops if op["op"] in ("conv", "conv1d")] == ["conv", "conv", "conv1d"]
    assert [op["padding"] for op in ops if op["op"] in ("conv", "conv1d")] == [[0, 1, 0, 1], [1, 2, 2, 3], [2, 0]]
    with torch.no_grad():
        assert rel_error(decompress(path)(x).numpy(), expected) < REL_TOL


@pytest.mark.parametrize("fn, message", [
    (lambda h: F.pad(h, (1, 1)) * 2, r"zero padding \[1, 1\] read by mul .*merges zero padding into the Conv1d"),
    (lambda h: F.pad(h, (1, 1), value=1.0), r"F\.pad with mode='constant', value=1\.0"),
    (lambda h: F.pad(h.reshape(-1, 1, 4, 4), (0, 0, -1, 0)).flatten(1), r"zero padding \[0, 0, -1, 0\]"),
])
def test_padding_the_file_cannot_merge_is_refused(fn, message):
    with pytest.raises(Unsupported, match=message):
        architecture_ops(Lambda(fn), torch.rand(1, 8))


class ConvAround(nn.Module):
    """Conv, the module under test, conv (2-D, or 1-D with `one_d`), then an optional pooling."""

    def __init__(self, mid: nn.Module, pool: nn.Module | None = None, one_d: bool = False):
        super().__init__()
        conv = nn.Conv1d if one_d else nn.Conv2d
        self.c1, self.mid, self.c2, self.pool = conv(3, 8, 3, padding=1), mid, conv(8, 4, 3), pool or nn.Identity()

    def forward(self, x):
        return self.pool(self.c2(self.mid(self.c1(x)))).flatten(1)


def randomised(m: nn.Module) -> nn.Module:
    """m with its per-channel parameters drawn away from their defaults (so a mix-up of channels shows)."""
    with torch.no_grad():
        for p in m.parameters():
            p.uniform_(-0.5, 1.5)
    return m


def _stats(m: nn.InstanceNorm2d) -> nn.InstanceNorm2d:
    m.running_mean.uniform_(-1, 1)
    m.running_var.uniform_(0.5, 2)
    return m


@pytest.mark.parametrize("mid, pool, one_d, op", [
    (nn.ELU(0.7), None, False, "elu"),
    (nn.Softplus(2.0, 3.0), None, False, "softplus"),  # both sides of the threshold
    (nn.Mish(), None, False, "mish"),
    (randomised(nn.PReLU(8)), None, False, "prelu"),
    (randomised(nn.PReLU()), None, True, "prelu"),
    (randomised(nn.GroupNorm(2, 8)), None, False, "group_norm"),
    (randomised(nn.GroupNorm(1, 8)), None, True, "group_norm"),
    (nn.InstanceNorm2d(8), None, False, "group_norm"),
    (randomised(nn.InstanceNorm1d(8, affine=True)), None, True, "group_norm"),
    (_stats(nn.InstanceNorm2d(8, track_running_stats=True)), None, False, "affine"),
    (nn.InstanceNorm1d(5), None, True, "group_norm"),  # PyTorch ignores num_features without affine
    (nn.ReLU(), nn.AdaptiveAvgPool1d(1), True, "mean"),
    (nn.ReLU(), nn.AdaptiveMaxPool1d(1), True, "amax"),
])
def test_more_activations_norms_and_pools_run_from_the_file(tmp_path, mid, pool, one_d, op):
    from deepcompress import decompress
    from deepcompress.runtime import load

    x = torch.randn(4, 3, 9) * 2 if one_d else torch.randn(4, 3, 7, 6) * 2
    got, expected, path = round_trip(ConvAround(mid, pool, one_d), x, tmp_path)
    assert rel_error(got, expected) < REL_TOL
    assert op in [o["op"] for o in dcz.read(path)[1]["ops"]]
    assert rel_error(load(path, precision="int8")(x.numpy()), expected) < REL_TOL  # convolutions stay fp32
    with torch.no_grad():
        assert rel_error(decompress(path)(x).numpy(), expected) < REL_TOL


@pytest.mark.parametrize("fn, op", [(lambda h: F.elu(h, 0.5), "elu"), (randomised(nn.GroupNorm(4, 16)), "group_norm"), (F.softplus, "softplus"), (F.mish, "mish"),
                                    (lambda h: F.adaptive_max_pool1d(h.reshape(-1, 2, 8), 1).flatten(1), "amax")])
def test_the_functional_forms_are_captured_alike(tmp_path, fn, op):
    x = torch.rand(3, 8) * 8 - 4
    got, expected, path = round_trip(Lambda(fn), x, tmp_path)
    assert rel_error(got, expected) < REL_TOL
    assert op in [o["op"] for o in dcz.read(path)[1]["ops"]]


def test_instance_norm_on_a_sample_it_would_read_as_unbatched_is_refused():
    with pytest.raises(Unsupported, match=r"fn: InstanceNorm1d on a sample of shape \(16,\) .*batch of 3-d inputs"):
        architecture_ops(Lambda(nn.InstanceNorm1d(16)), torch.rand(1, 8))


def test_pooling_1d_to_another_size_is_refused_and_unflatten_is_a_reshape():
    with pytest.raises(Unsupported, match=r"fn\.1: AdaptiveAvgPool1d\(output_size=2\) is not supported; only global"):
        architecture_ops(Lambda(nn.Sequential(nn.Unflatten(1, (2, 8)), nn.AdaptiveAvgPool1d(2))), torch.rand(1, 8))
    ops = architecture_ops(Lambda(nn.Sequential(nn.Unflatten(1, (2, 8)), nn.AdaptiveAvgPool1d(1))), torch.rand(1, 8))
    assert [op["op"] for op in ops] == ["fc", "reshape", "mean"]


class UpsampleBetween(nn.Module):
    """A conv, nearest upsampling (a module, or F.interpolate in `fn`), a conv: a U-Net / FPN decoder step."""

    def __init__(self, up: nn.Module | None = None, fn=None):
        super().__init__()
        self.c1, self.up, self.c2, self.fn = nn.Conv2d(2, 3, 3), up or nn.Identity(), nn.Conv2d(3, 2, 3), fn

    def forward(self, x):
        h = self.c1(x)
        return self.c2(self.fn(h) if self.fn else self.up(h)).flatten(1)


class UNetStep(nn.Module):
    """A U-Net decoder step: a strided conv, upsampled to the size of the skip connection, concatenated."""

    def __init__(self, size_of):
        super().__init__()
        self.down, self.merge, self.size_of = nn.Conv2d(2, 3, 3, 2, 1), nn.Conv2d(5, 2, 3), size_of

    def forward(self, x):
        up = F.interpolate(self.down(x), size=self.size_of(x, x))
        return self.merge(torch.cat([x, up], 1)).flatten(1)


@pytest.mark.parametrize("model, scale", [
    (UpsampleBetween(nn.Upsample(scale_factor=2)), [2, 2]),
    (UpsampleBetween(nn.Upsample(scale_factor=(3, 2.0))), [3, 2]),
    (UpsampleBetween(nn.Upsample(size=(10, 12))), [2, 2]),
    (UpsampleBetween(nn.Upsample(scale_factor=3, mode="nearest-exact")), [3, 3]),
    (UpsampleBetween(fn=lambda h: F.interpolate(h, size=(15, 18), mode="nearest")), [3, 3]),
    (UpsampleBetween(fn=lambda h: F.interpolate(h, None, 2, "nearest", None, None, False)), [2, 2]),
    (UNetStep(lambda h, skip: skip.shape[2:]), [2, 2]),  # the size of the skip connection
    (UNetStep(lambda h, skip: (skip.size(2), skip.size(3))), [2, 2]),
])
def test_nearest_upsampling_by_whole_factors_runs_from_the_file(tmp_path, model, scale):
    from deepcompress import decompress

    x = torch.randn(3, 2, 8, 8) if isinstance(model, UNetStep) else torch.randn(3, 2, 7, 8)
    got, expected, path = round_trip(model, x, tmp_path)
    assert rel_error(got, expected) < REL_TOL
    assert [op.get("scale") for op in dcz.read(path)[1]["ops"] if op["op"] == "upsample"] == [scale]
    with torch.no_grad():
        assert rel_error(decompress(path)(x).numpy(), expected) < REL_TOL


@pytest.mark.parametrize("model, message", [
    (UpsampleBetween(nn.Upsample(scale_factor=1.5)), r"up: Upsample\(size=None, scale_factor=1\.5\) .*whole factors"),
    (UpsampleBetween(nn.Upsample(scale_factor=2, mode="bilinear")), r"up: Upsample\(mode='bilinear'\)"),
    (UpsampleBetween(fn=lambda h: F.interpolate(h, scale_factor=2, mode="bilinear", antialias=True)),
     r"forward\(\) interpolate: interpolate\(antialias=True\) is not supported"),
])
def test_other_upsampling_is_refused(model, message):
    with pytest.raises(Unsupported, match=message):
        architecture_ops(model, torch.randn(1, 2, 7, 8))
