"""The offline data sets as torch tensors, for training code (deepcompress.data reads them as numpy)."""

from __future__ import annotations

from pathlib import Path

import torch

from .data import Dataset, load_arrays


def load_dataset(name: str, folder: str | Path | None = None, validation: bool = False) -> Dataset:
    """`deepcompress.data.load_arrays(name, folder, validation)` with every array a torch tensor sharing its
    memory: images (N, 1, 28, 28) float32 in [0, 1], labels (N,) int64."""
    ds = load_arrays(name, folder, validation)
    tensors = {k: None if v is None else torch.from_numpy(v) for k, v in vars(ds).items() if k != "name"}
    return Dataset(name, **tensors)
