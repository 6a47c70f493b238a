"""Shared fixtures: small synthetic data sets in the shape of MNIST, IDX writers, the committed real .dcz
files (tests/data, made by tests/fixtures/make_lenet_dcz.py), and Python run with torch blocked."""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from deepcompress import format as dcz
from deepcompress.compress.export import architecture_ops, file_shape
from deepcompress.runtime import load
from deepcompress.data import Dataset, load_arrays
from fixtures.make_lenet_dcz import TRAIN_IMAGES, fixture_paths

FIXTURE_MODELS = tuple(TRAIN_IMAGES)
# The package's modules built on torch: training code, the tensor data loader, decompress (to_torch).
TORCH_MODULES = ("deepcompress.train", "deepcompress.train_checkpoints", "deepcompress.compress", "deepcompress.parallel",
                 "deepcompress.models",
                 "deepcompress.data_torch", "deepcompress.to_torch")
# Prepended to code run by `without_torch`: any import of torch (or torch.*) raises ImportError.
BLOCK_TORCH = "import sys; sys.modules['torch'] = None\n"
# A line of such code: `heavy` lists torch and the TORCH_MODULES imported so far (the blocked torch
# sits in sys.modules as None).
LIST_HEAVY = (f"heavy = sorted(n for n, m in sys.modules.items() if m is not None and (n.split('.')[0] == 'torch' "
              f"or n in {TORCH_MODULES!r} or n.startswith({tuple(m + '.' for m in TORCH_MODULES)!r})))\n")


def idx_bytes(array: np.ndarray) -> bytes:
    """Serialise a uint8 array as an IDX file."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_folder(folder, n_train=12, n_test=5, seed=0, gz=True):
    """Write the four MNIST-style IDX files with random content; return the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for stem, arr in arrays.items():
        blob = idx_bytes(arr)
        (folder / (stem + (".gz" if gz else ""))).write_bytes(gzip.compress(blob) if gz else blob)
    return arrays


def separable_dataset(n_train=512, n_test=128, seed=0) -> Dataset:
    """A learnable 10-class problem of 28x28 images: class k has a bright block at a known place."""
    gen = torch.Generator().manual_seed(seed)

    def make(n):
        y = torch.randint(0, 10, (n,), generator=gen)
        x = 0.2 * torch.rand(n, 1, 28, 28, generator=gen)
        for k in range(10):
            r, c = divmod(k, 4)
            x[y == k, 0, 2 + 7 * r : 7 + 7 * r, 2 + 7 * c : 7 + 7 * c] += 0.8
        return x, y

    tx, ty = make(n_train)
    sx, sy = make(n_test)
    return Dataset("synthetic", tx, ty, sx, sy)


@pytest.fixture
def tiny_data() -> Dataset:
    """A small learnable data set in MNIST's shape."""
    return separable_dataset()


def fixture_file(model: str) -> tuple[Path, dict]:
    """The committed .dcz file of `model` (see FIXTURE_MODELS) and its sidecar: what making it measured."""
    path, sidecar = fixture_paths(model)
    return path, json.loads(sidecar.read_text())


@pytest.fixture(scope="session")
def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    """The MNIST test images (10000, 1, 28, 28) and labels as numpy arrays."""
    ds = load_arrays("mnist")
    return ds.test_x, ds.test_y


@pytest.fixture
def keep_torch_threads():
    """Restores torch's thread count after a test that runs `deepcompress run` in this process (it sets it)."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def without_torch(code: str, *args: str) -> subprocess.CompletedProcess:
    """Run Python `code` (with sys.argv[1:] = args) in a fresh interpreter where torch cannot be imported;
    fails the test, showing stderr, if it exits non-zero."""
    proc = subprocess.run([sys.executable, "-c", BLOCK_TORCH + code, *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc


def shared_layers(model: nn.Module, rng, k: int = 16, density: float = 0.6) -> list[dcz.QuantizedLayer]:
    """Prune and weight-share every Linear/Conv1d/Conv2d of `model` in place (random mask, k levels over
    the weights' range) and return the matching file layers."""
    layers = []
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                w = m.weight.numpy()
                codebook = np.linspace(w.min(), w.max(), k).astype(np.float32)
                labels = np.abs(w[..., None] - codebook).argmin(-1)
                labels = np.where(rng.random(w.shape) < density, labels, -1)
                m.weight.copy_(torch.from_numpy(np.where(labels >= 0, codebook[labels], 0).astype(np.float32)))
                bias = None if m.bias is None else m.bias.numpy().copy()
                kind = "fc" if isinstance(m, nn.Linear) else "conv"
                layers.append(dcz.QuantizedLayer.from_labels(name, kind, labels.reshape(file_shape(m)), codebook,
                                                             bias=bias))
    return layers


@pytest.fixture(scope="module")
def one_thread():
    """Small forward passes on a shared 2-core machine are far faster on one thread (use with
    `pytestmark = pytest.mark.usefixtures("one_thread")`)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


REL_TOL = 1e-5  # runtime vs torch on the same decoded weights


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


class Lambda(nn.Module):
    """A linear layer then `fn(h)`: small models for the corner cases a review found."""

    def __init__(self, fn, out: int = 16):
        super().__init__()
        self.fc, self.fn = nn.Linear(8, out), fn

    def forward(self, x):
        return self.fn(self.fc(x))


def write_pruned(model: nn.Module, path, example: torch.Tensor, variable_axes: tuple = ()) -> nn.Module:
    """`model` (eval mode) with every layer pruned to 50% and weight-shared to 4 bits in place, written to
    `path` by write_model with its forward pass captured on `example`; returns the model."""
    from deepcompress.compress.export import write_model
    from deepcompress.compress.prune import Masks, TargetSparsity
    from deepcompress.compress.quantize import SharedWeights

    model.eval()
    masks = Masks(model)
    masks.prune({name: TargetSparsity(0.5) for name in masks.modules})
    shared = SharedWeights(model, masks, {name: 4 for name in masks.modules})
    write_model(path, model, shared, dict.fromkeys(masks.modules, "auto"), shared.bits(), {"model": "test"},
                example_input=example, variable_axes=variable_axes)
    return model


def assert_runs_like_torch(model: nn.Module, path, inputs, tol: float = 1e-5) -> None:
    """The CPU runtime and decompress() of the file at `path` compute what `model` computes on each input
    (norm-wise relative error below `tol`)."""
    from deepcompress import decompress
    from deepcompress.runtime import load

    runtime, back = load(path), decompress(path)
    for x in inputs:
        with torch.no_grad():
            expected, again = model(x).numpy(), back(x).numpy()
        for got in (runtime(x.numpy()), again):
            assert np.linalg.norm(got - expected) <= tol * max(np.linalg.norm(expected), 1e-30)
