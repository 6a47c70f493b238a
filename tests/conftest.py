"""Shared fixtures: small synthetic data sets in the shape of MNIST, and IDX writers."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from deepcompress.data import Dataset


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
