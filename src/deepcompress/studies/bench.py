"""What the studies experiment on: the data sets, trained baselines and compressed files, in quick or full mode.

Quick mode (tests): the first QUICK_TRAIN training images and QUICK_TEST test images; the committed fixture
files tests/data/MODEL-mnist.dcz as compressed models, their decoded weights as the trained MNIST baselines
(`baseline`), and, where a study needs an unpruned model (`dense`), the model trained for QUICK_EPOCHS on
the quick training images.
Full mode (benchmarks): all 60,000 / 10,000 images; the baseline is RUNS/MODEL-DATA/model.pt (what
`deepcompress train` writes) or is trained with the model's recipe and saved there; the compressed file is
RUNS/compress-MODEL-DATA/model.dcz (what `deepcompress compress` writes) or is made with the built-in
recipe and saved there.
"""

from __future__ import annotations

import copy
import functools
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from .. import atomic
from ..errors import UserError

QUICK_TRAIN = 4000
QUICK_TEST = 2000
QUICK_EPOCHS = {"lenet-300-100": 3, "lenet-5": 1}
FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "data"


def log(message: str) -> None:
    """A progress line on stderr."""
    print(message, file=sys.stderr, flush=True)


@dataclass
class Bench:
    """Data, baselines and compressed files for the studies, cached for the life of one command."""

    quick: bool
    runs: Path = Path("runs")
    _data: dict = field(default_factory=dict)
    _models: dict = field(default_factory=dict)

    def data(self, name: str = "mnist"):
        """Data set `name` as torch tensors (quick mode: the first QUICK_TRAIN / QUICK_TEST images)."""
        if name not in self._data:
            from ..data import Dataset

            ds = _load(name)
            if self.quick:
                ds = Dataset(name, ds.train_x[:QUICK_TRAIN], ds.train_y[:QUICK_TRAIN], ds.test_x[:QUICK_TEST],
                             ds.test_y[:QUICK_TEST])
            self._data[name] = ds
        return self._data[name]

    def train_config(self, model: str, dataset: str = "mnist", **overrides):
        """The model's recipe [train] table (quick mode: QUICK_EPOCHS), with `overrides` on top."""
        from ..compress.recipe import read_recipe

        cfg = read_recipe(model, None).for_dataset(dataset).train
        if self.quick:
            cfg = replace(cfg, epochs=QUICK_EPOCHS[model])
        return replace(cfg, **overrides)

    def fit(self, model, dataset: str, cfg, hooks=(), train_images: int | None = None) -> float:
        """Train `model` in place on `dataset` (its first `train_images` training images, default all) with
        `cfg` and training hooks; returns its test error."""
        from ..data import Dataset
        from ..train import train

        ds = self.data(dataset)
        if train_images is not None:
            ds = Dataset(ds.name, ds.train_x[:train_images], ds.train_y[:train_images], ds.test_x, ds.test_y)
        return train(model, ds, cfg, hooks=tuple(hooks), progress=False, verbose=False).test_error

    def error(self, model, dataset: str = "mnist") -> float:
        """Top-1 test error of `model` on `dataset`'s test images (as this mode loads them)."""
        from ..train import evaluate

        ds = self.data(dataset)
        return evaluate(model, ds.test_x, ds.test_y)

    def baseline(self, model: str, dataset: str = "mnist"):
        """A trained `model` on `dataset` (a fresh copy each call): full mode the recipe's baseline, quick mode
        the fixture file's decoded weights (MNIST; another data set: `dense`)."""
        if self.quick and dataset == "mnist":
            return self.file_model(model, dataset)
        return self.dense(model, dataset)

    def file_model(self, model: str, dataset: str = "mnist"):
        """The built-in `model` holding the decoded weights of `compressed(model, dataset)` (a fresh copy)."""
        return self._cached(("file", model, dataset), lambda: self._from_file(model, dataset))

    def dense(self, model: str, dataset: str = "mnist"):
        """A trained, unpruned `model` on `dataset` (a fresh copy each call; quick: a short training)."""
        make = self._quick_dense if self.quick else self._full_baseline
        return self._cached(("dense", model, dataset), lambda: make(model, dataset))

    def variant(self, key: str, build, dataset: str, cfg, hooks=lambda net: ()):
        """A model trained like a baseline but built by `build()` and trained with `cfg` and `hooks(net)`
        (e.g. L1 regularisation, batch normalisation); full mode keeps it as RUNS/KEY-DATASET/model.pt."""
        return self._cached(("variant", key, dataset), lambda: self._train_variant(key, build, dataset, cfg, hooks))

    def _train_variant(self, key: str, build, dataset: str, cfg, hooks):
        import torch

        from ..train import load_checkpoint

        torch.manual_seed(cfg.seed)
        net = build()
        path = self.runs / f"{key}-{dataset}" / "model.pt"
        if not self.quick and path.exists():
            net.load_state_dict(load_checkpoint(path))
            return net
        if not self.quick:
            log(f"training {key} on {dataset} ({cfg.epochs} epochs) into {path}")
        self.fit(net, dataset, cfg, hooks(net))
        if not self.quick:
            with atomic.atomic_path(path) as tmp:
                torch.save(net.state_dict(), tmp)
        return net

    def _cached(self, key, make):
        if key not in self._models:
            self._models[key] = make()
        return copy.deepcopy(self._models[key])

    def _from_file(self, model: str, dataset: str):
        from ..compress import load_into
        from ..models import build_model

        net = build_model(model)
        load_into(net, self.compressed(model, dataset))
        return net

    def _quick_dense(self, model: str, dataset: str):
        import torch

        from ..models import build_model

        torch.manual_seed(0)
        net = build_model(model)
        self.fit(net, dataset, self.train_config(model, dataset))
        return net

    def _full_baseline(self, model: str, dataset: str):
        import torch

        from ..models import build_model
        from ..train import load_checkpoint

        path = self.runs / f"{model}-{dataset}" / "model.pt"
        net = build_model(model)
        if path.exists():
            net.load_state_dict(load_checkpoint(path))
            return net
        cfg = self.train_config(model, dataset)
        log(f"training the {model} baseline on {dataset} ({cfg.epochs} epochs) into {path}")
        torch.manual_seed(cfg.seed)
        self.fit(net, dataset, cfg)
        with atomic.atomic_path(path) as tmp:
            torch.save(net.state_dict(), tmp)
        return net

    def compressed(self, model: str, dataset: str = "mnist") -> Path:
        """A .dcz file of `model` on `dataset` (quick: the committed fixture, MNIST only)."""
        if self.quick:
            path = FIXTURES / f"{model}-{dataset}.dcz"
            if not path.is_file():
                raise UserError(f"quick mode reads the committed fixture {path}, which is not there (quick mode "
                                f"needs a source checkout; fixtures exist for MNIST only)")
            return path
        path = self.runs / f"compress-{model}-{dataset}" / "model.dcz"
        if not path.exists():
            from ..compress import compress_model
            from ..compress.recipe import read_recipe

            log(f"compressing {model} on {dataset} with its built-in recipe into {path.parent}")
            meta = {"model": model, "dataset": dataset, "input_shape": [1, 28, 28]}
            compress_model(self.baseline(model, dataset), self.data(dataset), read_recipe(model, None), path.parent,
                           meta=meta, progress=False, command=f"deepcompress compress --model {model} --data {dataset}",
                           overwrite=True)  # an interrupted run's stages are redone
        return path


@functools.lru_cache(maxsize=None)
def _load(name: str):
    """Data set `name` as tensors, read once per process (MNIST's pickle takes seconds)."""
    from ..data_torch import load_dataset

    return load_dataset(name)
