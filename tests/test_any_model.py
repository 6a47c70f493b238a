"""Models the package did not define: the forward pass captured with torch.fx into the file, run by the CPU
runtime and compared with PyTorch on the same (decoded) weights; everything the file cannot describe is
refused with one line naming the module."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepcompress import format as dcz
from deepcompress.compress.capture import Unsupported
from deepcompress.compress.export import architecture_ops
from deepcompress.hardware.model_sim import simulate_model
from deepcompress.runtime import load

from conftest import shared_layers

REL_TOL = 1e-5




def round_trip(model: nn.Module, x: torch.Tensor, tmp_path, seed: int = 0):
    """Write the model (weights shared, forward pass captured) and return (runtime output, torch output, path)."""
    model.eval()
    layers = shared_layers(model, np.random.default_rng(seed))
    meta = {"input_shape": list(x.shape[1:]), "ops": architecture_ops(model, x[:1])}
    path = tmp_path / "model.dcz"
    dcz.write(path, layers, meta)
    with torch.no_grad():
        expected = model(x).numpy()
    return load(path)(x.numpy()), expected, path


def rel_error(got, ref) -> float:
    """Norm-wise relative error."""
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))


class Residual(nn.Module):
    """Conv-BN-ReLU, a residual block, global average pooling: BatchNorm kept as an affine op."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding="same"), nn.BatchNorm2d(8), nn.ReLU(),
                                   nn.Conv2d(8, 8, 3, padding=1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        x = self.stem(x)
        x = F.relu(x + self.block(x))
        return self.head(torch.flatten(self.pool(x), 1))


class Separable(nn.Module):
    """MobileNet-style: depthwise (groups = channels) then pointwise convolutions, ReLU6, dilation, even
    kernels with "same" padding (asymmetric), padded ceil-mode average pooling."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 4, stride=2, padding="valid")
        self.dw = nn.Conv2d(6, 6, 3, padding=2, dilation=2, groups=6)
        self.pw = nn.Conv2d(6, 12, 1)
        self.even = nn.Conv2d(12, 4, 2, padding="same")
        self.pool = nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
        self.fc = nn.Linear(4 * 7 * 7, 10)

    def forward(self, x):
        x = F.relu6(self.conv(x))
        x = F.relu6(self.pw(F.relu6(self.dw(x))))
        x = self.pool(self.even(x))
        return self.fc(x.view(x.size(0), -1))


class Gates(nn.Module):
    """Every activation, a squeeze-and-excitation multiply, concatenation, permute/reshape, LayerNorm, softmax."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.pool = nn.MaxPool2d(3, stride=3, padding=1)
        self.se = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(8)
        self.fc1 = nn.Linear(8, 8)
        self.fc2 = nn.Linear(16, 5)
        self.act = nn.ModuleList([nn.Sigmoid(), nn.Tanh(), nn.GELU(), nn.GELU("tanh"), nn.SiLU(), nn.LeakyReLU(0.2)])

    def forward(self, x):
        x = self.pool(self.conv(x))                                     # (4, 2, 2) after a ceil-free padded pool
        gate = torch.sigmoid(self.se(F.adaptive_avg_pool2d(x, 1).flatten(1)))
        x = x * gate.reshape(-1, 4, 1, 1)
        x = F.max_pool2d(torch.cat([x, F.relu(x)], dim=1), 2)           # (8, 1, 1)
        x = self.norm(x.permute(0, 2, 3, 1).reshape(x.shape[0], 8))
        h = self.fc1(x)
        for act in self.act:
            h = act(h)
        return F.softmax(self.fc2(torch.cat([h, x], 1)), dim=-1)


@pytest.mark.parametrize("model, shape", [(Residual, (1, 12, 12)), (Separable, (1, 28, 28)), (Gates, (3, 9, 9))])
def test_captured_model_runs_like_torch(tmp_path, model, shape):
    torch.manual_seed(0)
    net = model()
    for m in net.modules():  # non-trivial running statistics, as after training
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.uniform_(-0.2, 0.2)
    x = torch.rand(5, *shape)
    got, expected, path = round_trip(net, x, tmp_path)
    assert got.shape == expected.shape
    assert rel_error(got, expected) < REL_TOL
    for arch in ("eie", "diannao", "cpu", "gpu"):  # every weight layer is costed or listed as skipped
        total = simulate_model(path, arch)[-1]
        assert total["layers_run"] + total["layers_skipped"] == len(dcz.read(path)[0])


def test_the_silent_cases_of_the_issue_now_match_torch(tmp_path):
    net = nn.Sequential(nn.Conv2d(1, 4, 5), nn.MaxPool2d(3, stride=3, padding=1), nn.Conv2d(4, 3, 3, padding="same"),
                        nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
    x = torch.rand(8, 1, 28, 28)
    got, expected, _ = round_trip(net, x, tmp_path)
    assert rel_error(got, expected) < REL_TOL
    assert (got.argmax(1) == expected.argmax(1)).all()


class Chunked(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 8)

    def forward(self, x):
        a, b = self.fc(x).chunk(2, 1)
        return a * torch.sigmoid(b)


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x) if x.sum() > 0 else x


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x, y):
        return self.fc(x) + y


class Exp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.exp(self.fc(x))


@pytest.mark.parametrize("model, shape, message", [
    (nn.Sequential(nn.Linear(4, 4), nn.LSTM(4, 4)), (4,), r"^1: LSTM .*not supported"),
    (nn.Sequential(nn.EmbeddingBag(10, 4)), "tokens", r"^0: EmbeddingBag .*not supported"),
    (nn.Sequential(nn.Conv3d(1, 2, 3)), (1, 4, 4, 4), r"^0: Conv3d .*not supported"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2, dilation=2)), (1, 9, 9), r"^1: MaxPool2d\(dilation=2"),
    (nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect")), (1, 5, 5), "padding_mode='reflect'"),
    (Branchy(), (4,), "cannot capture the forward pass with torch.fx"),
    (Chunked(), (4,), r"forward\(\) chunk: chunk\(\) returning 2 tensors is not supported; the file has no op "
                      "that splits"),
    (TwoInputs(), None, "takes 2 inputs"),
    (Exp(), (4,), r"forward\(\) exp: 'exp' in forward\(\) is not supported"),
])
def test_what_the_file_cannot_describe_is_refused_naming_it(model, shape, message):
    x = torch.randint(0, 10, (2, 3)) if shape == "tokens" else torch.rand(2, *(shape or (4,)))
    with pytest.raises(Unsupported, match=message) as info:
        architecture_ops(model, x)
    assert "weights_only=True" in str(info.value) and "\n" not in str(info.value)


def test_a_model_that_fails_on_the_example_says_so():
    with pytest.raises(Exception, match=r"failed on the example input of shape \(2, 5\)") as info:
        architecture_ops(nn.Sequential(nn.Linear(4, 4)), torch.rand(2, 5))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("model, shape", [(Residual, (1, 12, 12)), (Separable, (1, 28, 28)), (Gates, (3, 9, 9))])
def test_decompressed_module_reproduces_the_runtime(tmp_path, model, shape):
    from deepcompress import decompress

    torch.manual_seed(1)
    x = torch.rand(4, *shape)
    got, expected, path = round_trip(model(), x, tmp_path)
    with torch.no_grad():
        back = decompress(path)(x).numpy()
    assert rel_error(back, got) < REL_TOL and rel_error(back, expected) < REL_TOL


class Lambda(nn.Module):
    """A linear layer then `fn(h)`: small models for the corner cases a review found."""

    def __init__(self, fn, out: int = 16):
        super().__init__()
        self.fc, self.fn = nn.Linear(8, out), fn

    def forward(self, x):
        return self.fn(self.fc(x))


@pytest.mark.parametrize("fn", [
    lambda h: torch.relu(h.reshape(-1, 4, 4)).reshape(-1, 16) + h,   # a view read twice: no in-place relu
    lambda h: torch.relu(torch.flatten(h, 1)) + torch.flatten(h, 1),
    lambda h: torch.relu(h.reshape(-1, 1, 16).permute(0, 2, 1)).permute(0, 2, 1).reshape(-1, 16) + h,
    lambda h: h + h,
    lambda h: h * torch.sigmoid(h),
])
def test_values_read_through_views_are_not_overwritten(tmp_path, fn):
    got, expected, _ = round_trip(Lambda(fn), torch.rand(3, 8) - 0.5, tmp_path)
    assert rel_error(got, expected) < REL_TOL


class InPlaceResidual(nn.Module):
    """torchvision's BasicBlock pattern: ReLU(inplace=True) in a chain, then out += identity."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.relu = nn.Linear(8, 8), nn.Linear(8, 8), nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.fc1(x))
        out = self.fc2(out)
        out += x
        return self.relu(out)


def test_in_place_forms_that_keep_their_meaning_are_captured(tmp_path):
    got, expected, _ = round_trip(InPlaceResidual(), torch.rand(3, 8) - 0.5, tmp_path)
    assert rel_error(got, expected) < REL_TOL


@pytest.mark.parametrize("fn, message", [
    (lambda h: h.view(-1, 2), "does not keep the batch"),
    (lambda h: torch.add(h, h, alpha=2), "keyword arguments .alpha."),
    (lambda h: h + h.sum(), r"sum_1: an operation whose output is a single number"),
    (lambda h: F.relu(h, inplace=True) + h, "in-place operation whose input is used again"),
])
def test_what_would_compute_differently_is_refused(fn, message):
    with pytest.raises(Unsupported, match=message):
        architecture_ops(Lambda(fn), torch.rand(1, 8))


def test_batchnorm1d_on_a_sequence_is_not_folded_into_the_linear_layer():
    from deepcompress.compress.fold import fold_batchnorm

    model = nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4)).eval()
    model[1].running_mean.uniform_(-1, 1)
    assert fold_batchnorm(model, torch.rand(2, 4, 8)) == []  # BatchNorm1d of (N, 4, 4) normalises axis 1
    assert fold_batchnorm(model, torch.rand(2, 8)) == [("0", "1")]


def test_a_model_failing_on_the_example_prints_no_torch_traceback(capfd):
    with pytest.raises(Exception, match="failed on the example input"):
        architecture_ops(nn.Sequential(nn.Flatten(), nn.Linear(4, 4)), torch.rand(2, 5))
    assert "Traceback" not in capfd.readouterr().err  # torch.fx's ShapeProp prints one when a node fails


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
