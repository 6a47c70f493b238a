"""Models the package did not define: the forward pass captured with torch.fx into the file, run by the CPU
runtime and compared with PyTorch on the same (decoded) weights; everything the file cannot describe is
refused with one line naming the module."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepcompress import format as dcz
from deepcompress.compress.capture import Unsupported
from deepcompress.compress.export import architecture_ops
from deepcompress.hardware.model_sim import simulate_model

from conftest import REL_TOL, Lambda, rel_error, round_trip


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


class TopK(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 8)

    def forward(self, x):
        values, _ = self.fc(x).topk(2, 1)
        return values


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
    (TopK(), (4,), r"forward\(\) topk: topk\(\) returning 2 tensors is not supported; the file has no op for it"),
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
    (lambda h: F.relu(h, inplace=True) + h, r"in-place operation whose input \(or a view of it\) is used again"),
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
