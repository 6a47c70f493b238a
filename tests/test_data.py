"""Data loaders: checksums, truncation, IDX parsing, the restricted unpickler, the real MNIST split."""

from __future__ import annotations

import gzip
import os
import pickle

import numpy as np
import pytest
import torch

from conftest import idx_bytes, write_idx_folder
from deepcompress import data
from deepcompress.data import DataError, load_arrays, parse_idx, restricted_loads
from deepcompress.data_torch import load_dataset


class RunsCode:
    """Unpickling this would run a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_unpickler_refuses_code_execution(tmp_path):
    marker = tmp_path / "pwned"
    blob = pickle.dumps(RunsCode(marker), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="only numpy arrays"):
        restricted_loads(blob)
    assert not marker.exists()


def test_unpickler_refuses_object_arrays():
    blob = pickle.dumps(np.array([1, "x"], dtype=object), protocol=2)
    with pytest.raises(pickle.UnpicklingError):
        restricted_loads(blob)


@pytest.mark.parametrize("protocol", [2, 4])
def test_unpickler_rebuilds_numeric_arrays_exactly(protocol):
    arrays = (np.arange(12, dtype=np.float32).reshape(3, 4), np.array([3, 1, 4], dtype=np.int64))
    got = restricted_loads(pickle.dumps(arrays, protocol=protocol))
    for a, b in zip(arrays, got):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_checksum_mismatch_names_file_and_both_hashes(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPCOMPRESS_DATA", str(tmp_path))
    bad = tmp_path / "mnist" / data.MNIST_PKL
    bad.parent.mkdir()
    bad.write_bytes(gzip.compress(pickle.dumps((1, 2, 3))))
    with pytest.raises(DataError) as info:
        load_arrays("mnist")
    msg = str(info.value)
    assert str(bad) in msg and data.MNIST_PKL_SHA256 in msg and data.sha256_bytes(bad.read_bytes()) in msg


def test_missing_mnist_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPCOMPRESS_DATA", str(tmp_path))
    with pytest.raises(DataError, match="deepcompress data fetch mnist"):
        load_arrays("mnist")


def test_idx_folder_round_trip(tmp_path):
    arrays = write_idx_folder(tmp_path, n_train=12, n_test=5)
    ds = load_arrays("mnist", folder=tmp_path)
    assert ds.train_x.shape == (12, 1, 28, 28) and ds.test_x.shape == (5, 1, 28, 28)
    expected = arrays["train-images-idx3-ubyte"].astype(np.float32) / 255
    assert np.allclose(ds.train_x[:, 0], expected, atol=1e-7)
    assert np.array_equal(ds.test_y, arrays["t10k-labels-idx1-ubyte"])
    assert ds.train_x.dtype == np.float32 and ds.test_y.dtype == np.int64


def test_tensors_are_the_arrays(tmp_path):
    write_idx_folder(tmp_path, n_train=12, n_test=5)
    arrays = load_arrays("mnist", folder=tmp_path, validation=True)
    tensors = load_dataset("mnist", folder=tmp_path, validation=True)
    assert tensors.name == arrays.name == "mnist"
    for key in ("train_x", "train_y", "test_x", "test_y", "valid_x", "valid_y"):
        got, want = getattr(tensors, key), getattr(arrays, key)
        assert isinstance(got, torch.Tensor) and np.array_equal(got.numpy(), want), key
        assert got.numpy().dtype == want.dtype and got.shape == want.shape, key


def test_load_dataset_still_importable_from_data():
    """Code written before the split imports load_dataset from deepcompress.data; it gets the tensor loader."""
    from deepcompress.data import load_dataset as from_data

    assert from_data is load_dataset
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        data.nothing


@pytest.mark.parametrize("cut", [0, 3, 10, 100, -1])
def test_truncated_idx_is_reported(tmp_path, cut):
    blob = idx_bytes(np.zeros((4, 28, 28), np.uint8))
    with pytest.raises(DataError, match="IDX"):
        parse_idx(blob[:cut], "train-images")


def test_truncated_gzip_in_folder_is_reported(tmp_path):
    write_idx_folder(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte"):
        load_arrays("mnist", folder=tmp_path)


def test_known_idx_checksum_is_enforced(tmp_path):
    write_idx_folder(tmp_path)
    with pytest.raises(DataError, match="checksum mismatch"):
        load_arrays("fashion-mnist", folder=tmp_path)


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown data set"):
        load_arrays("cifar")


def _installed(name):
    try:
        return load_arrays(name)
    except DataError as exc:
        pytest.skip(f"{name} not installed here: {exc}")


def test_real_mnist_official_splits():
    ds = _installed("mnist")
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert float(ds.train_x.min()) == 0.0 and float(ds.train_x.max()) < 1.0
    # The first images of the official test and training sets are a 7 and a 5.
    assert int(ds.test_y[0]) == 7 and int(ds.train_y[0]) == 5
    assert np.bincount(ds.test_y).tolist()[:2] == [980, 1135]
    held = load_arrays("mnist", validation=True)
    assert held.train_x.shape[0] == 50000 and held.valid_x.shape[0] == 10000


def test_real_fashion_mnist_official_splits():
    ds = _installed("fashion-mnist")
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert np.bincount(ds.test_y).tolist() == [1000] * 10


def test_validation_split_of_a_small_training_set_keeps_five_sixths(tmp_path):
    arrays = write_idx_folder(tmp_path, n_train=12, n_test=5)
    ds = load_arrays("mnist", folder=tmp_path, validation=True)
    assert ds.train_x.shape[0] == 10 and ds.valid_x.shape[0] == 2
    assert np.array_equal(ds.valid_y, arrays["train-labels-idx1-ubyte"][10:])


def test_validation_split_refuses_a_set_too_small_to_split(tmp_path):
    write_idx_folder(tmp_path, n_train=5, n_test=5)
    with pytest.raises(DataError, match="5 images is too small"):
        load_arrays("mnist", folder=tmp_path, validation=True)
    assert data.validation_size(60_000) == 10_000
