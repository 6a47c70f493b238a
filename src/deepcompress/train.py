"""The one training loop every stage uses: baseline training, prune+retrain, centroid fine-tuning.

Deterministic for a given seed, checkpointed atomically at every epoch end, resumable to exactly the
state an uninterrupted run reaches. Later stages plug in through `TrainHook` (keep masks applied,
rewrite gradients).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .batches import Batches, as_batches
from .errors import UserError
from .fingerprint import loss_fingerprint
from .recipes.schema import Table
from .train_checkpoints import load_checkpoint, load_weights, restore, save_checkpoint  # noqa: F401 (re-exported)

SCHEDULES = ("constant", "step", "cosine")
IGNORE_INDEX = -100  # F.cross_entropy's default: a class id that marks a position to skip (padding)
METRICS = ("error", "loss")
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
        """An epoch's sums (loss, errors, samples, scored samples) over all processes."""
        return values


class Diverged(UserError):
    """The training loss became infinite or NaN: the run stopped before saving the broken weights."""


@dataclass
class TrainResult:
    """What a training run produced: per-epoch history, final test score, wall time of this call.

    `test_error` is the top-1 error (NaN when the run was scored by its loss); `test_loss` the mean test
    loss (NaN when scored by the error)."""

    history: list[dict] = field(default_factory=list)
    test_error: float = float("nan")
    wall_s: float = 0.0
    test_loss: float = field(default=float("nan"), kw_only=True)  # keyword-only: subclasses add positional fields


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
    """What training minimises and how the test set is scored. This base class is classification:
    cross-entropy loss, top-1 error (`metric` "error"). `objective_of(loss, metric)` wraps a user's loss
    function; a subclass can change both, e.g. distillation towards a teacher's outputs
    (deepcompress.minilm_distill.CosineDistill), where y holds the teacher's outputs instead of labels."""

    metric = "error"

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The mean loss of a batch's outputs `out` against its targets `y`."""
        return F.cross_entropy(out, y)

    def errors(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each sample's error, 0 for a perfect one: here its fraction of wrong top-1 classes (one per sample,
        or per position of a sequence). See top1_wrong for the target shapes taken."""
        return top1_wrong(out, y)

    @property
    def key(self) -> str:
        """The name the measured number goes by in histories and reports: test_error or test_loss."""
        return f"test_{self.metric}"

    def label(self, value: float) -> str:
        """`value` as a reader sees it: "test error 1.23%" or "test loss 0.4567"."""
        return f"test error {100 * value:.2f}%" if self.metric == "error" else f"test loss {value:.4f}"

    def error(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000) -> float:
        """The mean per-sample score of `model` on (x, y), in eval mode."""
        return score(model, (x, y), self, batch_size)

    def settings(self) -> dict:
        """What, besides the model and the data, changes what training with this objective computes; a
        compression run resumes only with the same settings (none here)."""
        return {}

    def data_targets(self, y: torch.Tensor) -> torch.Tensor:
        """The part of training targets `y` that a resumable run fingerprints: here all of it (SoftTargets
        given its teacher leaves out what the teacher computed, and hashes the teacher instead)."""
        return y


def top1_wrong(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per sample, the fraction of positions whose top-1 class is wrong. The classes are out's axis 1, as
    for F.cross_entropy: y holds class ids of out's shape less that axis, or scores (one-hot rows) of out's
    own shape, whose top-1 class is the target; or, for a sequence model's (N, T, V) logits, class ids
    (N, T) on the last axis. UserError for any other y, for a single output (no classes to rank) and for
    (N, T, T) logits, where ids (N, T) could mean either axis. Positions labelled IGNORE_INDEX (-100,
    padding, which F.cross_entropy skips too) are not counted."""
    if out.dim() < 2 or out.shape[1] < 2:
        raise _bad_targets(out, y, "the outputs have no class axis of two or more (axis 1)")
    on_axis_1 = y.shape == out.shape[:1] + out.shape[2:]
    on_last = out.dim() > 2 and y.shape == out.shape[:-1]
    if y.shape == out.shape and y.is_floating_point():
        return _wrong(out.argmax(1) != y.argmax(1))
    if y.is_floating_point() or not (on_axis_1 or on_last):
        raise _bad_targets(out, y, "expected integer class ids of shape "
                           f"{tuple(out.shape[:1] + out.shape[2:])} or scores of shape {tuple(out.shape)}")
    if on_axis_1 and on_last:
        raise _bad_targets(out, y, "the classes could be axis 1 or the last axis")
    return _wrong(out.argmax(1) != y if on_axis_1 else out.argmax(-1) != y, y != IGNORE_INDEX)


def _wrong(wrong: torch.Tensor, counted: torch.Tensor | None = None) -> torch.Tensor:
    """Per sample, the wrong fraction of its `counted` positions (all by default; NaN where none counts)."""
    wrong = wrong.reshape(len(wrong), -1)
    counted = torch.ones_like(wrong) if counted is None else counted.reshape(len(wrong), -1)
    return (wrong & counted).sum(1) / counted.sum(1)


def error_sum(errors: torch.Tensor) -> tuple[float, int]:
    """The sum of per-sample errors and how many samples were scored (a sample of padding alone, NaN, is
    not: it would count as right)."""
    scored = ~errors.isnan()
    return errors[scored].sum().item(), int(scored.sum())


def _bad_targets(out: torch.Tensor, y: torch.Tensor, why: str) -> UserError:
    return UserError(f"top-1 error: targets {str(y.dtype).removeprefix('torch.')} {tuple(y.shape)} do not fit "
                     f"outputs {tuple(out.shape)}: {why}; for other targets pass metric=\"loss\"")


class LossObjective(Objective):
    """A user's loss function `fn(outputs, targets)` (a batch mean), scored by `metric`: "error" (top-1)
    or "loss" (the mean loss per test sample)."""

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], metric: str):
        self.fn, self.metric = fn, metric

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The user's loss of the batch."""
        return self.fn(out, y)

    def settings(self) -> dict:
        """The loss function's name and a hash of its code and settings: a run resumes only with the same."""
        return loss_fingerprint(self.fn)


def objective_of(loss=None, metric: str | None = None) -> Objective:
    """The Objective of `loss` (None: cross-entropy) scored by `metric` (None: "error" for the default loss,
    "loss" for any other, since the top-1 error means nothing to, say, a regression)."""
    metric = metric or ("error" if loss is None else "loss")
    if metric not in METRICS:
        raise UserError(f"metric = {metric!r}: expected one of {', '.join(map(repr, METRICS))}")
    if loss is not None and not callable(loss):
        raise UserError(f"loss: expected a callable loss(outputs, targets), got {type(loss).__name__}")
    return Objective() if loss is None and metric == "error" else LossObjective(loss or F.cross_entropy, metric)


@torch.no_grad()
def score(model: nn.Module, data, obj: Objective | None = None, batch_size: int = 2000) -> float:
    """`model`'s test score on `data` (see batches.as_batches; an (x, y) pair is one test set): its mean
    per-sample error (`metric` "error") or mean loss per sample ("loss")."""
    obj = obj or Objective()
    was_training = model.training
    model.eval()
    total, seen = 0.0, 0
    pairs = _chunks(*data, batch_size) if _tensor_pair(data) else as_batches(data).test(batch_size)
    for x, y in pairs:
        out = model(x)
        if obj.metric == "error":
            errors, scored = error_sum(obj.errors(out, y))
            total, seen = total + errors, seen + scored
        else:
            total, seen = total + obj.loss(out, y).item() * len(y), seen + len(y)
    model.train(was_training)
    return total / max(seen, 1)


def _tensor_pair(data) -> bool:
    return isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data)


def _chunks(x: torch.Tensor, y: torch.Tensor, batch_size: int):
    for i in range(0, len(y), batch_size):
        yield x[i : i + batch_size], y[i : i + batch_size]


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000) -> float:
    """Top-1 error of `model` on (x, y), as a fraction."""
    return Objective().error(model, x, y, batch_size)


def _run_epoch(model, opt, batches: Batches, cfg, epoch, hooks, progress, shard, obj: Objective) -> dict:
    model.train()
    total_loss, wrong, seen, scored = 0.0, 0.0, 0, 0
    bar = tqdm(batches.train_epoch(epoch, cfg.batch_size, cfg.seed), total=batches.steps_per_epoch(cfg.batch_size),
               desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=None if progress else True, leave=False, unit="batch")
    for step, (xb, yb) in enumerate(bar, 1):
        batch_size = len(yb)
        idx = shard.select(torch.arange(batch_size))
        if len(idx) != batch_size:  # a data-parallel share of the batch
            xb, yb = xb[idx], yb[idx]
        opt.zero_grad(set_to_none=True)
        out = model(xb)
        loss = obj.loss(out, yb)
        shard.objective(loss, out, batch_size).backward()
        for hook in hooks:
            hook.after_backward(model)
        opt.step()
        for hook in hooks:
            hook.after_step(model)
        if len(yb):  # a data-parallel share of the last, short batch can be empty
            value = loss.item()
            if not math.isfinite(value):
                raise Diverged(f"the training loss became {value} in epoch {epoch + 1}, batch "
                               f"{step} (lr {opt.param_groups[0]['lr']:g})")
            total_loss += value * len(yb)
            if obj.metric == "error":
                errors, count = error_sum(obj.errors(out.detach(), yb))
                wrong, scored = wrong + errors, scored + count
            seen += len(yb)
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", refresh=False)
    total_loss, wrong, seen, scored = shard.totals([total_loss, wrong, seen, scored])
    metrics = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "train_loss": total_loss / max(seen, 1)}
    if obj.metric == "error":
        metrics["train_error"] = wrong / max(scored, 1)
    return metrics


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
          objective: Objective | None = None, loss=None, metric: str | None = None) -> TrainResult:
    """Train `model` on `data` and return its history and test score.

    `data` is a deepcompress.data.Dataset (batched here by `cfg.batch_size`, shuffled by `cfg.seed`), or a
    (train_loader, test_loader) pair of torch DataLoaders (read as they are: their batch size and sampler
    rule). `objective` (an Objective) is what is minimised and how the test set is scored; or give
    `loss(outputs, targets)`, any callable returning the batch's mean loss (default cross-entropy), and
    `metric`, "error" (top-1, the default with cross-entropy) or "loss" (the default with any other loss).
    With `checkpoint`, the state is saved there after every epoch; with `resume` and an existing
    checkpoint, training continues from it and ends in the same state as an uninterrupted run.
    `progress` shows a per-batch bar on a terminal; `verbose` prints one line per epoch. `shard` makes
    this process one of several data-parallel ones (only a shard that `writes` prints and checkpoints).
    `label` starts every printed line (e.g. the compression stage). A loss that becomes infinite or NaN
    stops the run with `Diverged`, leaving the checkpoint of the last finished epoch as it was.
    """
    start = time.perf_counter()
    if objective is not None and (loss is not None or metric is not None):
        raise UserError("give either objective or loss/metric, not both")
    obj = objective or objective_of(loss, metric)
    batches = as_batches(data)
    shard = shard or BatchShard()
    progress, verbose = progress and shard.writes, verbose and shard.writes
    opt = make_optimizer(model, cfg)
    first_epoch, history = 0, []
    checkpoint = Path(checkpoint) if checkpoint else None
    if resume and checkpoint is not None and checkpoint.exists():
        first_epoch, history = restore(checkpoint, model, opt, cfg)
    prefix = f"[{label}] " if label else ""
    # DataLoaders batch themselves; a Dataset is batched here by cfg.batch_size
    if verbose and first_epoch < cfg.epochs and hasattr(data, "train_y") and cfg.batch_size > len(data.train_y):
        print(f"{prefix}warning: batch size {cfg.batch_size:,} exceeds the {len(data.train_y):,} training samples; "
              f"each epoch is one batch of all of them", file=sys.stderr, flush=True)
    for epoch in range(first_epoch, cfg.epochs):
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, epoch)
        try:
            metrics = _run_epoch(model, opt, batches, cfg, epoch, hooks, progress, shard, obj)
        except Diverged as exc:
            raise _diverged(exc, checkpoint, epoch) from None
        metrics[obj.key] = score(model, batches, obj)
        for hook in hooks:
            hook.on_epoch_end(epoch, model, metrics)
        history.append(metrics)
        if verbose:
            train_err = f"  train err {metrics['train_error']:.4f}" if "train_error" in metrics else ""
            tqdm.write(f"{prefix}epoch {epoch + 1}/{cfg.epochs}  loss {metrics['train_loss']:.4f}{train_err}  "
                       f"{obj.key.replace('_', ' ')} {metrics[obj.key]:.4f}", file=sys.stderr)
            sys.stderr.flush()
        if checkpoint is not None and shard.writes:
            save_checkpoint(checkpoint, model, opt, cfg, epoch + 1, history)
    final = history[-1][obj.key] if history else score(model, batches, obj)
    result = TrainResult(history, wall_s=time.perf_counter() - start)
    setattr(result, obj.key, final)
    return result
