"""The one training loop every stage uses: baseline training, prune+retrain, centroid fine-tuning.

Deterministic for a given seed, checkpointed atomically at every epoch end, resumable to exactly the
state an uninterrupted run reaches. Later stages plug in through `TrainHook` (keep masks applied,
rewrite gradients).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from . import atomic
from .errors import UserError
from .recipes.schema import Table

SCHEDULES = ("constant", "step", "cosine")
OPTIMIZERS = ("sgd", "adam")
# An upper bound that no real run reaches (LeNet-300-100 takes 30 epochs); larger values are typing mistakes.
MAX_EPOCHS = 10_000


@dataclass
class TrainConfig(Table):
    """Hyper-parameters of one training run: a recipe's [train] table (and [prune.retrain], [quantize.finetune]).

    `TrainConfig.from_dict(table, where)` refuses unknown keys and wrong types (see recipes.schema).
    """

    TABLE = "train"

    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    step_size: int = 10
    gamma: float = 0.1
    seed: int = 0

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"optimizer = {self.optimizer!r}: expected one of {', '.join(map(repr, OPTIMIZERS))}")
        if self.schedule not in SCHEDULES:
            raise UserError(f"schedule = {self.schedule!r}: expected one of {', '.join(map(repr, SCHEDULES))}")
        if self.epochs < 0 or self.batch_size < 1 or not self.lr > 0:
            raise UserError(f"need epochs >= 0, batch_size >= 1, lr > 0; got {self.epochs}, "
                            f"{self.batch_size}, {self.lr}")
        if self.epochs > MAX_EPOCHS:
            raise UserError(f"epochs = {self.epochs}: at most {MAX_EPOCHS:,} (the built-in recipes train 20-30)")
        for name in ("lr", "momentum", "weight_decay", "gamma"):
            if not math.isfinite(getattr(self, name)):
                raise UserError(f"{name} = {getattr(self, name)}: must be a finite number")


class TrainHook:
    """Extension points of the loop; the default methods do nothing."""

    def after_backward(self, model: nn.Module) -> None:
        """Called after loss.backward(), before the optimizer step: adjust gradients here."""

    def after_step(self, model: nn.Module) -> None:
        """Called after each optimizer step: re-apply constraints (masks, shared weights) here."""

    def on_epoch_end(self, epoch: int, model: nn.Module, metrics: dict) -> None:
        """Called after each epoch's evaluation, before the checkpoint is written."""


class BatchShard:
    """This process's part of each step; the default (one process) trains on the whole batch.

    Data-parallel training (deepcompress.parallel.data_parallel) gives each process a share of every
    batch instead, arranged so that the averaged gradient is the whole batch's.
    """

    writes = True  # this process shows progress, prints and writes checkpoints

    def select(self, batch: torch.Tensor) -> torch.Tensor:
        """The indices, out of the global batch `batch`, that this process trains on."""
        return batch

    def objective(self, loss: torch.Tensor, out: torch.Tensor, batch_size: int) -> torch.Tensor:
        """What to back-propagate, given the mean `loss` over this process's share of a `batch_size` batch."""
        return loss

    def totals(self, values: list[float]) -> list[float]:
        """An epoch's sums (loss, errors, samples) over all processes."""
        return values


class Diverged(UserError):
    """The training loss became infinite or NaN: the run stopped before saving the broken weights."""


@dataclass
class TrainResult:
    """What a training run produced: per-epoch history, final test error, wall time of this call."""

    history: list[dict] = field(default_factory=list)
    test_error: float = float("nan")
    wall_s: float = 0.0


def make_deterministic(seed: int) -> None:
    """Seed torch's generator and ask for deterministic kernels, so that a run repeats bit for bit on the
    same machine with the same number of threads (a different thread count may sum in another order)."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def learning_rate(cfg: TrainConfig, epoch: int) -> float:
    """Learning rate for (0-based) `epoch` under the configured schedule."""
    if cfg.schedule == "step":
        return cfg.lr * cfg.gamma ** (epoch // max(cfg.step_size, 1))
    if cfg.schedule == "cosine":
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * epoch / max(cfg.epochs, 1)))
    return cfg.lr


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer named by the config over the model's trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


class Objective:
    """What training minimises and how a model is scored. This base class is classification: cross-entropy
    loss, top-1 error. A subclass changes both, e.g. distillation towards a teacher's outputs
    (deepcompress.minilm_distill.CosineDistill), where y holds the teacher's outputs instead of labels."""

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The mean loss of a batch's outputs `out` against its targets `y`."""
        return F.cross_entropy(out, y)

    def errors(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each sample's error, 0 for a perfect one (here 1 for a wrong top-1 class, else 0)."""
        return (out.argmax(1) != y).float()

    @torch.no_grad()
    def error(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000) -> float:
        """The mean per-sample error of `model` on (x, y), in eval mode."""
        was_training = model.training
        model.eval()
        total = 0.0
        for i in range(0, len(y), batch_size):
            total += self.errors(model(x[i : i + batch_size]), y[i : i + batch_size]).sum().item()
        model.train(was_training)
        return total / max(len(y), 1)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000) -> float:
    """Top-1 error of `model` on (x, y), as a fraction."""
    return Objective().error(model, x, y, batch_size)


def _epoch_order(cfg: TrainConfig, epoch: int, n: int) -> torch.Tensor:
    # Order depends only on (seed, epoch), so a resumed run sees exactly the batches it would have seen.
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)


def _run_epoch(model, opt, data, cfg, epoch, hooks, progress, shard, objective: Objective) -> dict:
    model.train()
    order = _epoch_order(cfg, epoch, len(data.train_y))
    total_loss, wrong, seen = 0.0, 0, 0
    bar = tqdm(range(0, len(order), cfg.batch_size), desc=f"epoch {epoch + 1}/{cfg.epochs}",
               disable=None if progress else True, leave=False, unit="batch")
    for start in bar:
        batch = order[start : start + cfg.batch_size]
        idx = shard.select(batch)
        xb, yb = data.train_x[idx], data.train_y[idx]
        opt.zero_grad(set_to_none=True)
        out = model(xb)
        loss = objective.loss(out, yb)
        shard.objective(loss, out, len(batch)).backward()
        for hook in hooks:
            hook.after_backward(model)
        opt.step()
        for hook in hooks:
            hook.after_step(model)
        if len(yb):  # a data-parallel share of the last, short batch can be empty
            value = loss.item()
            if not math.isfinite(value):
                raise Diverged(f"the training loss became {value} in epoch {epoch + 1}, batch "
                               f"{start // cfg.batch_size + 1} (lr {opt.param_groups[0]['lr']:g})")
            total_loss += value * len(yb)
            wrong += objective.errors(out.detach(), yb).sum().item()
            seen += len(yb)
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{1 - wrong / seen:.4f}", refresh=False)
    total_loss, wrong, seen = shard.totals([total_loss, wrong, seen])
    return {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "train_loss": total_loss / max(seen, 1),
            "train_error": wrong / max(seen, 1)}


def _plain(model: nn.Module) -> nn.Module:
    # Checkpoints hold the bare model's keys, so data-parallel and single-process runs share them.
    return model.module if isinstance(model, DistributedDataParallel) else model


def save_checkpoint(path: Path, model, opt, cfg: TrainConfig, epoch: int, history: list[dict]) -> None:
    """Write the full training state atomically (a crash leaves the previous checkpoint intact)."""
    state = {
        "model": _plain(model).state_dict(),
        "optimizer": opt.state_dict(),
        "config": asdict(cfg),
        "epoch": epoch,
        "history": history,
        "rng": torch.get_rng_state(),
    }
    with atomic.atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict:
    """Read a training checkpoint without unpickling arbitrary objects."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"checkpoint {path} not found") from None
    except Exception as exc:  # torch raises several types for corrupt or hostile files
        # torch's messages run to many lines of advice; their first sentence says what went wrong
        cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0]
        raise UserError(f"checkpoint {path} is unreadable or not a deepcompress checkpoint ({cause})") from None


def _restore(path: Path, model, opt, cfg: TrainConfig) -> tuple[int, list[dict]]:
    state = load_checkpoint(path)
    if not isinstance(state, dict) or not {"model", "optimizer", "rng", "epoch", "history"} <= state.keys():
        raise UserError(f"checkpoint {path} is not a training checkpoint of deepcompress (keys missing); "
                        f"remove it to start over")
    if state.get("config") != asdict(cfg):
        raise UserError(f"checkpoint {path} was written with different settings {state.get('config')}; "
                        f"resume with the same options, or start a new output folder")
    try:
        _plain(model).load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise UserError(f"checkpoint {path} does not fit this model: {str(exc).splitlines()[0]}") from None
    torch.set_rng_state(state["rng"])
    return int(state["epoch"]), list(state["history"])


def _diverged(exc: Diverged, checkpoint: Path | None, epochs_done: int) -> Diverged:
    """The divergence message completed with what was kept."""
    if checkpoint is not None and epochs_done and checkpoint.exists():
        kept = f"{checkpoint} (after epoch {epochs_done}) is the last good state and was kept"
    else:
        kept = "no epoch had finished, so nothing was saved"
    return Diverged(f"{exc}: training stopped; {kept}; lower the learning rate (--lr or the recipe's lr)")


def train(model: nn.Module, data, cfg: TrainConfig, checkpoint: str | Path | None = None,
          resume: bool = False, hooks: tuple[TrainHook, ...] = (), progress: bool = True,
          verbose: bool = True, shard: BatchShard | None = None, label: str = "",
          objective: Objective | None = None) -> TrainResult:
    """Train `model` on `data` (a deepcompress.data.Dataset) and return its history and test error.

    With `checkpoint`, the state is saved there after every epoch; with `resume` and an existing
    checkpoint, training continues from it and ends in the same state as an uninterrupted run.
    `progress` shows a per-batch bar on a terminal; `verbose` prints one line per epoch. `shard` makes
    this process one of several data-parallel ones (only a shard that `writes` prints and checkpoints).
    `label` starts every printed line (e.g. the compression stage). A loss that becomes infinite or NaN
    stops the run with `Diverged`, leaving the checkpoint of the last finished epoch as it was.
    `objective` is what is minimised and reported as error (default: classification, `Objective`).
    """
    start = time.perf_counter()
    shard = shard or BatchShard()
    objective = objective or Objective()
    progress, verbose = progress and shard.writes, verbose and shard.writes
    opt = make_optimizer(model, cfg)
    first_epoch, history = 0, []
    checkpoint = Path(checkpoint) if checkpoint else None
    if resume and checkpoint is not None and checkpoint.exists():
        first_epoch, history = _restore(checkpoint, model, opt, cfg)
    prefix = f"[{label}] " if label else ""
    if verbose and first_epoch < cfg.epochs and cfg.batch_size > len(data.train_y):
        print(f"{prefix}warning: batch size {cfg.batch_size:,} exceeds the {len(data.train_y):,} training samples; "
              f"each epoch is one batch of all of them", file=sys.stderr, flush=True)
    for epoch in range(first_epoch, cfg.epochs):
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, epoch)
        try:
            metrics = _run_epoch(model, opt, data, cfg, epoch, hooks, progress, shard, objective)
        except Diverged as exc:
            raise _diverged(exc, checkpoint, epoch) from None
        metrics["test_error"] = objective.error(model, data.test_x, data.test_y)
        for hook in hooks:
            hook.on_epoch_end(epoch, model, metrics)
        history.append(metrics)
        if verbose:
            tqdm.write(f"{prefix}epoch {epoch + 1}/{cfg.epochs}  loss {metrics['train_loss']:.4f}  "
                       f"train err {metrics['train_error']:.4f}  test err {metrics['test_error']:.4f}", file=sys.stderr)
            sys.stderr.flush()
        if checkpoint is not None and shard.writes:
            save_checkpoint(checkpoint, model, opt, cfg, epoch + 1, history)
    test_error = history[-1]["test_error"] if history else objective.error(model, data.test_x, data.test_y)
    return TrainResult(history, test_error, time.perf_counter() - start)
