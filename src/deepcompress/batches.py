"""The training data as the training loop reads it: a deepcompress Dataset of tensors, or a user's torch
DataLoaders (one for training, one for testing), behind one interface.

A Dataset is batched by the loop itself (`TrainConfig.batch_size`, a seeded shuffle per epoch, so a resumed
run sees the same batches); DataLoaders are read as they are (their own batch size, sampler and
transforms), and the loop only restores torch's global random state on resume, which a shuffling
DataLoader without its own generator draws from.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from torch.utils.data import DataLoader

from .data import Dataset
from .errors import UserError

Batch = tuple[torch.Tensor, torch.Tensor]


class Batches:
    """Where a training run's train and test batches come from (see `as_batches`)."""

    name: str | None = None

    def train_epoch(self, epoch: int, batch_size: int, seed: int) -> Iterator[Batch]:
        """The training batches of (0-based) `epoch`."""
        raise NotImplementedError

    def steps_per_epoch(self, batch_size: int) -> int:
        """How many training batches one epoch has."""
        raise NotImplementedError

    def test(self, batch_size: int = 2000) -> Iterator[Batch]:
        """The test set in batches."""
        raise NotImplementedError

    def sample(self, n: int) -> torch.Tensor:
        """The first (up to) `n` test inputs: an example input for capturing the forward pass."""
        xs, have = [], 0
        for x, _ in self.test(n):
            xs.append(x[: n - have])
            have += len(xs[-1])
            if have >= n:
                break
        if not xs:
            raise UserError("the test data is empty")
        return torch.cat(xs)


class TensorBatches(Batches):
    """A deepcompress Dataset (tensors), shuffled per epoch by (seed, epoch) and batched here."""

    def __init__(self, data: Dataset):
        self.data, self.name = _tensors(data), data.name

    def train_epoch(self, epoch: int, batch_size: int, seed: int) -> Iterator[Batch]:
        # Order depends only on (seed, epoch), so a resumed run sees exactly the batches it would have seen.
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.data.train_y), generator=gen)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            yield self.data.train_x[idx], self.data.train_y[idx]

    def steps_per_epoch(self, batch_size: int) -> int:
        return -(-len(self.data.train_y) // batch_size)

    def test(self, batch_size: int = 2000) -> Iterator[Batch]:
        x, y = self.data.test_x, self.data.test_y
        for i in range(0, len(y), batch_size):
            yield x[i : i + batch_size], y[i : i + batch_size]

    def sample(self, n: int) -> torch.Tensor:
        return self.data.test_x[:n]


def _tensors(data: Dataset) -> Dataset:
    """`data` with numpy arrays (deepcompress.data.load_arrays) turned into tensors sharing their memory."""
    fields = {k: torch.from_numpy(v) if hasattr(v, "__array_interface__") else v
              for k, v in vars(data).items() if k != "name"}
    return Dataset(data.name, **fields)


class LoaderBatches(Batches):
    """A user's torch DataLoaders; each batch is (inputs, targets) as the loader yields it."""

    def __init__(self, train: DataLoader, test: DataLoader, name: str | None = None):
        for role, loader in (("train", train), ("test", test)):
            if not isinstance(loader, DataLoader):
                raise UserError(f"data: the {role} loader is a {type(loader).__name__}, expected a "
                                f"torch.utils.data.DataLoader")
        self.train, self.test_loader, self.name = train, test, name

    def train_epoch(self, epoch: int, batch_size: int, seed: int) -> Iterator[Batch]:
        for batch in self.train:
            yield _pair(batch, "train")

    def steps_per_epoch(self, batch_size: int) -> int:
        return len(self.train)

    def test(self, batch_size: int = 2000) -> Iterator[Batch]:
        for batch in self.test_loader:
            yield _pair(batch, "test")


def _pair(batch, role: str) -> Batch:
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise UserError(f"data: the {role} loader yields {type(batch).__name__} batches; each batch must be "
                        f"(inputs, targets), e.g. a DataLoader over a TensorDataset(x, y)")
    return batch[0], batch[1]


def as_batches(data) -> Batches:
    """The training loop's view of `data`: a deepcompress Dataset (tensors), a (train, test) pair of torch
    DataLoaders, a mapping with "train" and "test" DataLoaders (and optionally "name"), or Batches."""
    if isinstance(data, Batches):
        return data
    if isinstance(data, Dataset):
        return TensorBatches(data)
    if isinstance(data, Mapping) and "train" in data and "test" in data:
        return LoaderBatches(data["train"], data["test"], data.get("name"))
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return LoaderBatches(*data)
    if isinstance(data, DataLoader):
        raise UserError("data: one DataLoader is not enough; pass (train_loader, test_loader) so that the "
                        "test score is measured on data the model was not trained on")
    raise UserError(f"data: expected a deepcompress Dataset or (train_loader, test_loader), got "
                    f"{type(data).__name__}")
